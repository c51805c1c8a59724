"""Live progress of a local run and its stop request, shared between the DoFns and the CLI, across processes.

Beam metrics are only visible when a pipeline ends; a local run can do better. The job process
``register``s a tracker under a key and passes the key to its DoFns. A DoFn calls
``lookup(key)``: in the job's own process (the FnApiRunner in memory) that is the tracker
itself; in another process on the same machine (the DirectRunner's ``multi_processing`` mode,
one SDK worker process per ``direct_num_workers``) it is a stand-in that sends each ``add`` as
one datagram to a Unix socket the job's tracker owns, named after the key in a per-user
directory under the temporary directory. On a remote runner there is no such socket on the
workers, ``lookup`` returns None, and nothing is sent.

The CLI also stops an in-process run through its tracker (Ctrl-C): ``request_stop`` makes the
DoFns hand out no more records and cancels those still in flight after a grace period, so the
pipeline ends normally and writes what was done.

Nothing here can hold up a job: the job process reads datagrams on a daemon thread (and
``line()`` reads whatever is queued before it counts, so a final line counts every record
reported before it), a worker's send gives up after a short timeout, and every socket error
drops the update instead of raising.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from voxbeam.beam.stream_status import StreamStats

_LOG = logging.getLogger(__name__)
_REGISTRY: dict[str, Progress] = {}
_REMOTES: dict[str, Progress] = {}
_LOCK = threading.Lock()
# A worker waits at most this long for room in the job's socket queue before dropping an update.
SEND_TIMEOUT_S = 0.5
_MAX_DATAGRAM = 512
_MAX_SUN_PATH = 100  # sockaddr_un holds 104-108 bytes depending on the platform


@dataclass
class Progress:
    total: int
    done: int = 0
    failed: int = 0
    audio_ms: int = 0
    characters: int = 0
    started: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # Where updates also go (a worker's stand-in sends them to the job), and what to read before
    # a line is made (the job's tracker takes in the datagrams queued so far).
    _send: Callable[[bool, int, int], None] | None = field(default=None, repr=False)
    _receive: Callable[[], None] | None = field(default=None, repr=False)
    # Clients' ``retry_in``: seconds to the next probe while the service is unavailable, else None.
    _service: set[Callable[[], float | None]] = field(default_factory=set, repr=False)

    def watch_service(self, retry_in: Callable[[], float | None]) -> None:
        """Show "service unavailable, retrying in N s" while ``retry_in()`` says so (bound methods of one
        client compare equal, so DoFn instances sharing a client add it once)."""
        with self.lock:
            self._service.add(retry_in)

    def service_retry_in(self) -> float | None:
        """Seconds until the next probe while every watched client finds the service unavailable."""
        with self.lock:
            watched = list(self._service)
        waits = [fn() for fn in watched]
        if not waits or any(w is None for w in waits):
            return None
        return min(w for w in waits if w is not None)

    stopping: threading.Event = field(default_factory=threading.Event, repr=False)
    # A streaming run's figures (its total is not known: ``total`` stays 0).
    stream: StreamStats | None = field(default=None, repr=False)
    _cancelling: bool = field(default=False, repr=False)
    _in_flight: set[concurrent.futures.Future[Any]] = field(default_factory=set, repr=False)

    def add(self, *, ok: bool, audio_ms: int = 0, characters: int = 0) -> None:
        with self.lock:
            self.done += 1
            self.failed += 0 if ok else 1
            self.audio_ms += audio_ms
            self.characters += characters
        if self._send is not None:
            self._send(ok, audio_ms, characters)

    @property
    def not_started(self) -> int:
        """Records not done (never handed out, or cancelled by a stop): a rerun still has them to do."""
        with self.lock:
            return self.total - self.done

    def request_stop(self, grace: float) -> None:
        """Hand out no more records; cancel those still running after ``grace`` seconds."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        timer = threading.Timer(grace, self.cancel_in_flight)
        timer.daemon = True
        timer.start()

    def cancel_in_flight(self) -> None:
        with self.lock:
            self._cancelling = True
            futures = list(self._in_flight)
        for future in futures:
            future.cancel()

    @contextlib.contextmanager
    def in_flight(self, future: concurrent.futures.Future[Any]) -> Iterator[None]:
        """While a record's request runs: a stop's deadline cancels it (``result()`` then raises CancelledError)."""
        with self.lock:
            self._in_flight.add(future)
            cancel = self._cancelling
        if cancel:
            future.cancel()
        try:
            yield
        finally:
            with self.lock:
                self._in_flight.discard(future)

    def line(self) -> str:
        """One status line: files done of total, audio hours, speed, ETA."""
        if self._receive is not None:
            self._receive()
        with self.lock:
            done, total, failed, audio_ms, chars = self.done, self.total, self.failed, self.audio_ms, self.characters
        elapsed = max(1e-6, time.monotonic() - self.started)
        if self.stream is not None:
            return self._stream_line(done, failed, elapsed)
        parts = [f"{done}/{total} done"]
        if failed:
            parts.append(f"{failed} failed")
        if audio_ms:
            parts.append(f"{audio_ms / 3_600_000:.3f} h audio")
            parts.append(f"{audio_ms / 1000 / elapsed:.1f}x real time")
        if chars:
            parts.append(f"{chars / elapsed:.0f} chars/s")
        retry_in = self.service_retry_in()
        if retry_in is not None:
            parts.append(f"service unavailable, retrying in {retry_in:.0f} s")
        elif 0 < done < total:
            parts.append(f"ETA {_fmt((total - done) * elapsed / done)}")
        parts.append(f"elapsed {_fmt(elapsed)}")
        return ", ".join(parts)

    def _stream_line(self, done: int, failed: int, elapsed: float) -> str:
        assert self.stream is not None
        in_flight = max(0, self.stream.pulled - self.stream.dropped() - done)
        parts = [f"{done} done", f"{failed} failed", f"{in_flight} in flight", *self.stream.parts()]
        retry_in = self.service_retry_in()
        if retry_in is not None:
            parts.append(f"service unavailable, retrying in {retry_in:.0f} s")
        if self.stopping.is_set():
            parts.append("stopping: finishing what is in flight")
        parts.append(f"elapsed {_fmt(elapsed)}")
        return ", ".join(parts)


def _fmt(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


# ---------------------------------------------------------------------------
# The socket between worker processes and the job process


def socket_path(key: str) -> str:
    """Where the job's tracker for ``key`` listens (same for every process of this user)."""
    folder = os.path.join(tempfile.gettempdir(), f"voxbeam-progress-{os.getuid()}")
    return os.path.join(folder, hashlib.sha256(key.encode()).hexdigest()[:24] + ".sock")


def _encode(ok: bool, audio_ms: int, characters: int) -> bytes:
    return json.dumps([1 if ok else 0, int(audio_ms), int(characters)]).encode()


class _Listener:
    """The job side: a bound datagram socket and a daemon thread applying updates to a tracker."""

    def __init__(self, key: str, tracker: Progress) -> None:
        self.path = socket_path(key)
        self.tracker = tracker
        self._closed = threading.Event()
        self._recv_lock = threading.Lock()
        if len(self.path) > _MAX_SUN_PATH:
            raise OSError(f"socket path too long: {self.path}")
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # left by a job that was killed
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.sock.bind(self.path)
        except OSError:
            self.sock.close()
            raise
        self.sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._run, name="voxbeam-progress-listener", daemon=True)
        self._thread.start()

    def _apply(self, data: bytes) -> None:
        try:
            ok, audio_ms, characters = json.loads(data)
        except (ValueError, TypeError):
            return
        with self.tracker.lock:
            self.tracker.done += 1
            self.tracker.failed += 0 if ok else 1
            self.tracker.audio_ms += int(audio_ms)
            self.tracker.characters += int(characters)

    def _run(self) -> None:
        while not self._closed.is_set():
            try:
                with self._recv_lock:
                    data = self.sock.recv(_MAX_DATAGRAM)
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            self._apply(data)

    def drain(self) -> None:
        """Apply every datagram already queued (without waiting for new ones)."""
        if self._closed.is_set():
            return
        with self._recv_lock:
            while True:
                try:
                    data = self.sock.recv(_MAX_DATAGRAM, socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError, TimeoutError):
                    return
                except OSError:
                    return
                self._apply(data)

    def close(self) -> None:
        self.drain()
        self._closed.set()
        self._thread.join(2)
        self.sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


_LISTENERS: dict[str, _Listener] = {}


class _Sender:
    """The worker side: sends each update to the job's socket; drops it on any error."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.settimeout(SEND_TIMEOUT_S)
        self.dropped = 0

    def __call__(self, ok: bool, audio_ms: int, characters: int) -> None:
        try:
            self.sock.sendto(_encode(ok, audio_ms, characters), self.path)
        except OSError:  # the job has finished (no socket), its queue stayed full, ...
            self.dropped += 1


# ---------------------------------------------------------------------------
# Registry


def register(key: str, total: int) -> Progress:
    """A tracker for ``key`` in this (the job's) process, reachable from worker processes."""
    unregister(key)
    tracker = Progress(total=total)
    try:
        listener = _Listener(key, tracker)
    except OSError as exc:  # progress is a nicety: the job runs without other processes' counts
        _LOG.debug("progress from worker processes unavailable: %s", exc)
    else:
        tracker._receive = listener.drain
        with _LOCK:
            _LISTENERS[key] = listener
    with _LOCK:
        _REGISTRY[key] = tracker
    return tracker


def unregister(key: str) -> None:
    with _LOCK:
        _REGISTRY.pop(key, None)
        listener = _LISTENERS.pop(key, None)
    if listener is not None:
        listener.close()


def lookup(key: str | None) -> Progress | None:
    """The tracker for ``key``: the job's own, a stand-in reporting to it, or None."""
    if key is None:
        return None
    with _LOCK:
        found = _REGISTRY.get(key) or _REMOTES.get(key)
    if found is not None:
        return found
    path = socket_path(key)
    if not os.path.exists(path):
        return None  # no job on this machine owns this key (a remote worker)
    with _LOCK:
        if key not in _REMOTES:
            _REMOTES[key] = Progress(total=0, _send=_Sender(path))
        return _REMOTES[key]
