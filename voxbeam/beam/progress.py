"""Live progress of a local run, and its stop request, shared between the DoFns and the CLI.

Beam metrics are only visible when a pipeline ends; a local (in-process) run can do better.
The CLI also stops a local run through its tracker (Ctrl-C): ``request_stop`` makes the DoFns
hand out no more records and cancels those still in flight after a grace period, so the
pipeline ends normally and writes what was done. On a remote runner no tracker is registered
on the workers: updates are dropped and nothing stops.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

_REGISTRY: dict[str, Progress] = {}
_LOCK = threading.Lock()


@dataclass
class Progress:
    total: int
    done: int = 0
    failed: int = 0
    audio_ms: int = 0
    characters: int = 0
    started: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    stopping: threading.Event = field(default_factory=threading.Event, repr=False)
    _cancelling: bool = field(default=False, repr=False)
    _in_flight: set[concurrent.futures.Future[Any]] = field(default_factory=set, repr=False)

    def add(self, *, ok: bool, audio_ms: int = 0, characters: int = 0) -> None:
        with self.lock:
            self.done += 1
            self.failed += 0 if ok else 1
            self.audio_ms += audio_ms
            self.characters += characters

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
        with self.lock:
            done, total, failed, audio_ms, chars = self.done, self.total, self.failed, self.audio_ms, self.characters
        elapsed = max(1e-6, time.monotonic() - self.started)
        parts = [f"{done}/{total} done"]
        if failed:
            parts.append(f"{failed} failed")
        if audio_ms:
            parts.append(f"{audio_ms / 3_600_000:.3f} h audio")
            parts.append(f"{audio_ms / 1000 / elapsed:.1f}x real time")
        if chars:
            parts.append(f"{chars / elapsed:.0f} chars/s")
        if 0 < done < total:
            parts.append(f"ETA {_fmt((total - done) * elapsed / done)}")
        parts.append(f"elapsed {_fmt(elapsed)}")
        return ", ".join(parts)


def _fmt(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def register(key: str, total: int) -> Progress:
    with _LOCK:
        _REGISTRY[key] = Progress(total=total)
        return _REGISTRY[key]


def unregister(key: str) -> None:
    with _LOCK:
        _REGISTRY.pop(key, None)


def lookup(key: str | None) -> Progress | None:
    if key is None:
        return None
    with _LOCK:
        return _REGISTRY.get(key)
