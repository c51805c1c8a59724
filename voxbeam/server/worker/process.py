"""The server's end of the pipe to one engine worker process: spawn, call, stream, cancel, restart.

Each worker is a spawned process with a duplex Pipe. Two threads per worker keep the event
loop free of blocking pipe I/O: a sender (a large ``send`` blocks while the worker is busy)
and a reader that resolves asyncio futures. A reader that sees EOF means the worker died:
its pending calls fail with ``WorkerDied`` and its watchers are told.

The worker runs its calls one at a time, in the order they reach it. So that one client cannot
starve the others, calls wait here in a fair queue (live first, then key by key, then session
by session; ``fair.py``) and only ``WINDOW`` of them are sent ahead of the worker's replies.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import itertools
import logging
import multiprocessing
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from voxbeam.server.errors import EngineError, WorkerDied
from voxbeam.server.worker import CANCEL, DONE, ERROR, FAILED, READY, WorkerSpec
from voxbeam.server.worker.child import worker_main
from voxbeam.server.worker.fair import FairQueue, Lane

log = logging.getLogger("voxbeam.server.workers")

# Calls sent to a worker ahead of its replies: enough that it never waits for the next one (and can
# see a cancellation coming), few enough that a newcomer's call is next after them, not after a backlog.
WINDOW = 4

# Told of every call as it is sent: (op, its future, the worker's slot); /metrics times them.
Observer = Callable[[str, "asyncio.Future[Any]", int], object]


class Worker:
    """One worker process slot (restarts reuse the slot with a new process)."""

    def __init__(
        self,
        slot: int,
        spec: WorkerSpec,
        log_level: int,
        loop: asyncio.AbstractEventLoop,
        on_death: Callable[[Worker], None],
        observe: Observer | None = None,
    ) -> None:
        self.slot = slot
        self._spec = spec
        self._log_level = log_level
        self._loop = loop
        self._on_death = on_death
        self._observe = observe
        self._ctx = multiprocessing.get_context("spawn")
        self.process: Any = None
        self.pid: int | None = None
        self.alive = False
        self.generation = 0
        self.sessions = 0  # STT sessions pinned here (load balancing)
        self.utterances = 0  # TTS utterances being rendered here, piece by piece
        self.retiring = False  # over its memory ceiling: takes no new work, replaced once drained
        self.rss = 0  # resident bytes when last looked
        # The batch of deferred decoding in hand, if any: (when it was sent, its windows).
        self.decoding: tuple[float, int] | None = None
        self.calls = collections.Counter[str]()  # requests sent, by op, over every process in this slot
        # The STT models its process has been asked to use (the default from the start, tiers on first use).
        self.models: set[str] = set()
        self.watchers: set[Callable[[], None]] = set()
        self._pending: dict[int, asyncio.Future[Any]] = {}
        # Cancelled calls the worker has not answered yet (it may be running one): still load.
        self._cancelled: set[int] = set()
        self._numbers = itertools.count(1)
        self._outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # Sessions' calls wait here for their turn; ``_sent``: those the process has and has not answered.
        self._queue: FairQueue[tuple[Any, ...]] = FairQueue()
        self._waiting: set[int] = set()
        self._sent: set[int] = set()
        self.ready: asyncio.Future[None] = loop.create_future()

    def __repr__(self) -> str:
        return f"<Worker {self.slot} pid={self.pid} alive={self.alive} sessions={self.sessions}>"

    @property
    def load(self) -> int:
        """Pinned sessions plus calls in flight (an utterance's calls count as they are made)."""
        return self.sessions + self.pending

    @property
    def busy(self) -> bool:
        """Whether anything is under way here that a replacement would cut short."""
        return bool(self.pending or self.sessions or self.utterances)

    @contextlib.contextmanager
    def rendering(self) -> Iterator[None]:
        """An utterance in progress here: a replacement lets it finish (within its grace)."""
        generation = self.generation
        self.utterances += 1
        try:
            yield
        finally:
            if self.generation == generation:  # a restart has reset the count
                self.utterances -= 1

    @property
    def pending(self) -> int:
        """Calls sent and not yet answered (cancelled ones too, until the worker says it skipped them)."""
        return len(self._pending) + len(self._cancelled)

    def start(self) -> None:
        self.generation += 1
        self.ready = self._loop.create_future()
        self._pending = {}
        self._cancelled = set()
        self._queue.clear()
        self._waiting = set()
        self._sent = set()
        self.decoding = None
        self.models = {self._spec.stt.model.name}
        self._outbox = queue.SimpleQueue()
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=worker_main,
            args=(child, self.slot, self._spec, self._log_level),
            name=f"voxbeam-worker-{self.slot}",
            daemon=True,
        )
        proc.start()
        # Close our copy of the child's end, or its death would never show as EOF here.
        child.close()
        self.process = proc
        self.pid = proc.pid
        gen = self.generation
        threading.Thread(target=self._read, args=(parent, gen), name=f"worker-{self.slot}-reader", daemon=True).start()
        threading.Thread(
            target=self._send, args=(parent, self._outbox), name=f"worker-{self.slot}-sender", daemon=True
        ).start()

    # -- threads ------------------------------------------------------------------------

    def _send(self, conn: Any, outbox: queue.SimpleQueue[Any]) -> None:
        while True:
            msg = outbox.get()
            try:
                conn.send(msg)
            except (OSError, ValueError):
                return  # the reader sees the death
            if msg is None:
                return

    def _read(self, conn: Any, gen: int) -> None:
        try:
            while True:
                msg = conn.recv()
                self._post(self._on_message, gen, msg)
        except (EOFError, OSError):
            pass
        except Exception:  # an unpicklable reply must not leave the slot dead but "alive"
            log.exception("worker %s: bad message", self.slot)
        finally:
            conn.close()
            self._post(self._on_eof, gen)

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            self._loop.call_soon_threadsafe(fn, *args)

    # -- loop side ----------------------------------------------------------------------

    def _on_message(self, gen: int, msg: Any) -> None:
        if gen != self.generation:
            return
        kind = msg[0]
        if kind == READY:
            self.alive = True
            if not self.ready.done():
                self.ready.set_result(None)
            return
        if kind == FAILED:
            if not self.ready.done():
                self.ready.set_exception(RuntimeError(f"worker {self.slot} failed to load its engines: {msg[1]}"))
            return
        number = msg[1]
        self._cancelled.discard(number)
        if number in self._sent:
            self._sent.discard(number)
            self._pump()
        fut = self._pending.pop(number, None)
        if fut is None or fut.done():
            return
        if kind == DONE:
            fut.set_result(msg[2])
        elif kind == ERROR:
            fut.set_exception(EngineError(msg[2], msg[3]))

    def _on_eof(self, gen: int) -> None:
        if gen != self.generation:
            return
        was_alive = self.alive
        self._lost(f"worker {self.slot} (pid {self.pid}) died")
        if not self.ready.done():
            self.ready.set_exception(RuntimeError(f"worker {self.slot} exited while loading its engines"))
        if was_alive:
            self._on_death(self)

    def _lost(self, why: str) -> None:
        """The process is gone (or going): every call owed fails, every session pinned here is told."""
        self.alive = False
        pending, self._pending = self._pending, {}
        self._cancelled = set()
        self._queue.clear()
        self._waiting = set()
        self._sent = set()
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(WorkerDied(why))
        watchers, self.watchers = self.watchers, set()
        for watcher in watchers:
            watcher()

    def call(self, op: str, *args: Any, lane: Lane | None = None) -> asyncio.Future[Any]:
        """Make a request; the future resolves with the reply or fails with WorkerDied/EngineError.

        With a ``lane`` the request waits its turn in the fair queue; without one it goes at once
        (deferred decoding, which the worker runs in a thread of its own beside its calls).
        Cancelling the future drops it if it has not been sent, else tells the worker, which skips
        it if it has not started it.
        """
        fut: asyncio.Future[Any] = self._loop.create_future()
        if not self.alive:
            fut.set_exception(WorkerDied(f"worker {self.slot} is not running"))
            return fut
        number = next(self._numbers)
        self._pending[number] = fut
        self.calls[op] += 1
        self._submit((number, op, args, time.monotonic()), lane)
        fut.add_done_callback(functools.partial(self._settled, number))
        if self._observe is not None:
            self._observe(op, fut, self.slot)
        return fut

    def _settled(self, number: int, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled():
            self._cancel(number)
        else:
            # Read here: a session cancelled in the same turn its worker died never reads its calls'
            # WorkerDied (the watchers tell it instead), and asyncio would log each as never retrieved.
            fut.exception()

    def _cancel(self, number: int) -> None:
        if self._pending.pop(number, None) is None or not self.alive:
            return
        if number in self._waiting:  # never sent: the pump drops it (it is no longer pending)
            self._waiting.discard(number)
            return
        self._cancelled.add(number)
        self._outbox.put((CANCEL, number))

    def cast(self, op: str, *args: Any, lane: Lane | None = None) -> None:
        """A request without a reply (after the lane's calls before it, in their turn)."""
        if self.alive:
            self.calls[op] += 1
            self._submit((None, op, args, time.monotonic()), lane)

    def _submit(self, msg: tuple[Any, ...], lane: Lane | None) -> None:
        if lane is None:
            self._outbox.put(msg)
            return
        if msg[0] is not None:
            self._waiting.add(msg[0])
        self._queue.put(msg, lane)
        self._pump()

    def _pump(self) -> None:
        """Send queued calls in their turn while fewer than WINDOW are unanswered (casts need no answer)."""
        while len(self._sent) < WINDOW:
            msg = self._queue.take(skip=lambda m: m[0] is not None and m[0] not in self._pending)
            if msg is None:
                return
            if msg[0] is not None:
                self._waiting.discard(msg[0])
                self._sent.add(msg[0])
            self._outbox.put(msg)

    def retire(self) -> None:
        """Let go of the process (it is about to be stopped): what it owes fails, its sessions are told."""
        self.generation += 1  # its EOF is expected now, not a death
        self._lost(f"worker {self.slot} (pid {self.pid}) was replaced to give its memory back")

    def stop(self, timeout: float) -> None:
        """Ask the process to exit, then terminate or kill it (blocking; run in a thread)."""
        self.alive = False
        self.generation += 1  # its EOF is expected now, not a death
        self._outbox.put(None)
        proc = self.process
        if proc is None:
            return
        proc.join(timeout)
        if proc.is_alive():
            proc.terminate()
            proc.join(2)
        if proc.is_alive():
            proc.kill()
            proc.join(2)
