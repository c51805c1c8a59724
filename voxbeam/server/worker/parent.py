"""The server's end of the pipe to each engine worker: spawn, call, stream, cancel, watch, restart.

Each worker is a spawned process with a duplex Pipe. Two threads per worker keep the event
loop free of blocking pipe I/O: a sender (a large ``send`` blocks while the worker is busy)
and a reader that resolves asyncio futures. A reader that sees EOF means the worker died:
its pending calls fail with ``WorkerDied``, its watchers are told, and it is restarted.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import itertools
import logging
import math
import multiprocessing
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from voxbeam.server.engines.base import Deferred, Recognized
from voxbeam.server.errors import EngineError, WorkerBusy, WorkerDied, WorkerUnavailable
from voxbeam.server.memory import rss
from voxbeam.server.worker import CANCEL, DONE, ERROR, FAILED, READY, WorkerSpec
from voxbeam.server.worker.child import worker_main

log = logging.getLogger("voxbeam.server.workers")

# Windows a worker decodes in one batch at most. Whisper tiny.en, one thread, CPU s per 30 s window
# of dense speech by batch size (measured here once): 1: 2.5, 2: 2.15, 3: 2.03, 4: 1.89, 6: 2.05, 8: 2.14;
# but beam search keeps each window's encoder output once per beam: a batch of four held ~90 MiB more
# per worker than one of three (server at 32-64 bulk sessions: 1.65 GiB vs 1.45 GiB).
MAX_DECODE_BATCH = 3
# The memory watchdog: how often it looks, and how long a worker over its ceiling may finish its work.
MEMORY_POLL_S = 1.0
RETIRE_GRACE_S = 30.0

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
        self.watchers: set[Callable[[], None]] = set()
        self._pending: dict[int, asyncio.Future[Any]] = {}
        # Cancelled calls the worker has not answered yet (it may be running one): still load.
        self._cancelled: set[int] = set()
        self._numbers = itertools.count(1)
        self._outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
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
        self.decoding = None
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
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(WorkerDied(why))
        watchers, self.watchers = self.watchers, set()
        for watcher in watchers:
            watcher()

    def call(self, op: str, *args: Any) -> asyncio.Future[Any]:
        """Send a request; the future resolves with the reply or fails with WorkerDied/EngineError.

        Cancelling the future tells the worker: it skips the call if it has not started it.
        """
        fut: asyncio.Future[Any] = self._loop.create_future()
        if not self.alive:
            fut.set_exception(WorkerDied(f"worker {self.slot} is not running"))
            return fut
        number = next(self._numbers)
        self._pending[number] = fut
        self.calls[op] += 1
        self._outbox.put((number, op, args, time.monotonic()))
        fut.add_done_callback(lambda f: self._cancel(number) if f.cancelled() else None)
        if self._observe is not None:
            self._observe(op, fut, self.slot)
        return fut

    def _cancel(self, number: int) -> None:
        if self._pending.pop(number, None) is not None and self.alive:
            self._cancelled.add(number)
            self._outbox.put((CANCEL, number))

    def cast(self, op: str, *args: Any) -> None:
        """Send a request without waiting for a reply."""
        if self.alive:
            self.calls[op] += 1
            self._outbox.put((None, op, args, time.monotonic()))

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


class WorkerPool:
    """W worker processes; sessions are pinned to the least loaded live one.

    With a memory ceiling, a watchdog looks at every worker's resident memory each
    ``MEMORY_POLL_S``: one over the ceiling takes no new work, gets ``RETIRE_GRACE_S`` to finish
    what it has (sessions pinned to it end with a retryable INTERNAL_ERROR after that), and is
    replaced by a fresh process.
    """

    def __init__(
        self,
        count: int,
        spec: WorkerSpec,
        log_level: int = logging.INFO,
        observe: Observer | None = None,
        *,
        memory_ceiling: int | None = None,
        on_memory: Callable[[int, int], object] | None = None,
        on_replaced: Callable[[str], object] | None = None,
    ) -> None:
        self.count = count
        self.spec = spec
        self._observe = observe
        self.log_level = log_level
        self.workers: list[Worker] = []
        self.restarts = 0
        self.replacements = 0  # workers replaced by the memory watchdog
        self.memory_ceiling = memory_ceiling
        self._on_memory = on_memory
        self._on_replaced = on_replaced
        self._watch: asyncio.Task[None] | None = None
        self._closing = False
        self._restart_tasks: set[asyncio.Task[None]] = set()
        self._changed: asyncio.Event | None = None
        self._queued: collections.deque[tuple[Deferred, asyncio.Future[list[Recognized]]]] = collections.deque()
        self._window_s: float | None = None  # how long a deferred window takes a worker (moving average)

    @property
    def alive(self) -> int:
        return sum(1 for w in self.workers if w.alive)

    def calls(self) -> dict[str, int]:
        """Engine requests sent to the workers since start, by op (stt_open, stt_audio, tts_render ...)."""
        total = collections.Counter[str]()
        for w in self.workers:
            total.update(w.calls)
        return dict(sorted(total.items()))

    async def start(self, timeout: float = 120.0) -> None:
        loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self.workers = [
            Worker(i, self.spec, self.log_level, loop, self._on_death, self._observe) for i in range(self.count)
        ]
        for w in self.workers:
            w.start()
        async with asyncio.timeout(timeout):
            await asyncio.gather(*(w.ready for w in self.workers))
        log.info("%d workers ready (pids %s)", self.count, ", ".join(str(w.pid) for w in self.workers))
        self._watch = loop.create_task(self._watch_memory())

    def usable(self) -> list[Worker]:
        """Live workers that take new work (not one being replaced)."""
        return [w for w in self.workers if w.alive and not w.retiring]

    def pick(self, max_pending: int | None = None) -> Worker:
        """The least loaded live worker; ``WorkerBusy`` when even it has ``max_pending`` calls queued."""
        live = self.usable()
        if not live:
            raise WorkerUnavailable("no engine worker is running")
        best = min(live, key=lambda w: w.load)
        if max_pending is not None and best.pending >= max_pending:
            raise WorkerBusy(f"every engine worker has {max_pending} calls queued")
        return best

    def decode(self, deferred: Sequence[Deferred]) -> list[asyncio.Future[list[Recognized]]]:
        """Deferred decoding, queued for the workers (see ``_dispatch``); a future per item.
        ``WorkerUnavailable`` when no worker runs."""
        if not self.alive:
            raise WorkerUnavailable("no engine worker is running")
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[list[Recognized]]] = [loop.create_future() for _ in deferred]
        self._queued.extend(zip(deferred, futures, strict=True))
        self._dispatch()
        return futures

    def _dispatch(self) -> None:
        """Hand queued decoding to live workers that have none in hand, a batch each.

        A worker pulls its next batch when it is done with the last, so fast files cannot pile
        work on one worker while another idles. Its batch is its fair share of the work queued and
        still in hand (at most ``MAX_DECODE_BATCH``): as big as the backlog allows, since a window
        decoded alone costs ~25 % more CPU than in a batch of three, but split evenly at
        the end of a job, when nothing more is coming and the last batches decide the wall time.
        """
        self._queued = collections.deque(item for item in self._queued if not item[1].done())  # done: cancelled
        live = self.usable()
        if not live:
            return
        now = time.monotonic()
        for worker in sorted((w for w in live if w.decoding is None), key=lambda w: w.pending):
            if not self._queued:
                return
            in_hand = sum(self._windows_left(w, now) for w in live)
            share = math.ceil((len(self._queued) + in_hand) / len(live))
            batch = [self._queued.popleft() for _ in range(max(1, min(share, MAX_DECODE_BATCH, len(self._queued))))]
            worker.decoding = (now, len(batch))
            call = worker.call("stt_decode", [item.work for item, _ in batch])
            call.add_done_callback(functools.partial(self._decoded, worker, worker.generation, batch))
            mine = [fut for _, fut in batch]
            for fut in mine:  # once nobody waits for any of them, the worker may skip the call
                fut.add_done_callback(functools.partial(_cancel_when_all_cancelled, call, mine))

    def _windows_left(self, worker: Worker, now: float) -> float:
        """Windows' worth of decoding ``worker`` has still to do (from the time windows have taken so far)."""
        if worker.decoding is None:
            return 0.0
        sent, windows = worker.decoding
        if self._window_s is None:
            return float(windows)
        return max(0.0, windows - (now - sent) / self._window_s)

    def _decoded(
        self,
        worker: Worker,
        generation: int,
        batch: list[tuple[Deferred, asyncio.Future[list[Recognized]]]],
        call: asyncio.Future[list[list[Recognized]]],
    ) -> None:
        if worker.generation == generation and worker.decoding is not None:  # a restart has already cleared it
            sent, windows = worker.decoding
            worker.decoding = None
            if not call.cancelled() and call.exception() is None:
                took = (time.monotonic() - sent) / windows
                self._window_s = took if self._window_s is None else 0.8 * self._window_s + 0.2 * took
        for n, (_, fut) in enumerate(batch):
            if fut.done():
                continue
            if call.cancelled():
                fut.cancel()
            elif call.exception() is not None:
                fut.set_exception(call.exception())  # type: ignore[arg-type]
            else:
                fut.set_result(call.result()[n])
        self._dispatch()

    async def acquire(self, timeout: float) -> Worker:
        """The least loaded live worker, waiting up to ``timeout`` while workers restart."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.pick()
            except WorkerUnavailable:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closing or self._changed is None:
                    raise
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await self._changed.wait()

    def _on_death(self, worker: Worker) -> None:
        code = worker.process.exitcode if worker.process is not None else None
        log.error("worker %s (pid %s) died (exit code %s)", worker.slot, worker.pid, code)
        if self._closing:
            return
        if self._on_replaced is not None:
            self._on_replaced("died")
        if not self.alive:  # nothing can decode what is queued before a restart
            self._fail_queued()
        task = asyncio.get_running_loop().create_task(self._restart(worker))
        self._restart_tasks.add(task)
        task.add_done_callback(self._restart_tasks.discard)

    async def _watch_memory(self) -> None:
        while not self._closing:
            await asyncio.sleep(MEMORY_POLL_S)
            for w in self.workers:
                if not w.alive or w.pid is None:
                    continue
                w.rss = rss(w.pid) or w.rss
                if self._on_memory is not None:
                    self._on_memory(w.slot, w.rss)
                if self.memory_ceiling is not None and w.rss > self.memory_ceiling and not w.retiring:
                    w.retiring = True
                    task = asyncio.get_running_loop().create_task(self._replace(w))
                    self._restart_tasks.add(task)
                    task.add_done_callback(self._restart_tasks.discard)

    async def _replace(self, worker: Worker) -> None:
        """Drain ``worker`` (no new work; up to RETIRE_GRACE_S for what it has), then replace its process."""
        log.warning(
            "worker %s (pid %s) holds %d MiB, over its ceiling of %d MiB: draining it and starting a new one",
            worker.slot,
            worker.pid,
            worker.rss >> 20,
            (self.memory_ceiling or 0) >> 20,
        )
        # What it has in hand may finish (a render's or a decode's memory is bounded): until the grace ends.
        deadline = time.monotonic() + RETIRE_GRACE_S
        while worker.alive and worker.busy and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if not worker.alive:  # it died meanwhile: the death's own restart takes over
            worker.retiring = False
            return
        worker.retire()
        await asyncio.to_thread(worker.stop, 2.0)
        self.replacements += 1
        if self._on_replaced is not None:
            self._on_replaced("memory")
        if not self.alive:  # nothing can decode what is queued before the new one is up
            self._fail_queued()
        await self._restart(worker, replacing=True)

    def _fail_queued(self) -> None:
        queued, self._queued = self._queued, collections.deque()
        for _, fut in queued:
            if not fut.done():
                fut.set_exception(WorkerUnavailable("no engine worker is running"))

    async def _restart(self, worker: Worker, *, replacing: bool = False) -> None:
        delay = 0.0
        while not self._closing:
            if delay:
                await asyncio.sleep(delay)
            # Reap the dead process off the loop (join can take a moment).
            if worker.process is not None:
                await asyncio.to_thread(worker.process.join, 5)
            worker.sessions = worker.utterances = 0
            worker.start()
            try:
                await worker.ready
            except Exception as exc:
                delay = min(30.0, max(1.0, delay * 2))  # a crash loop must not spin
                log.error("worker %s restart failed: %s; retrying in %.0f s", worker.slot, exc, delay)
                continue
            worker.retiring = False
            if not replacing:
                self.restarts += 1
            log.info("worker %s %s (pid %s)", worker.slot, "replaced" if replacing else "restarted", worker.pid)
            if self._changed is not None:
                self._changed.set()
            self._dispatch()
            return

    async def close(self, timeout: float = 1.0) -> None:
        """Stop every worker: ask, then terminate (queued work of closed sessions is moot)."""
        self._closing = True
        for task in [*self._restart_tasks, *([self._watch] if self._watch else [])]:
            task.cancel()
        await asyncio.gather(*(asyncio.to_thread(w.stop, timeout) for w in self.workers))


def _cancel_when_all_cancelled(call: asyncio.Future[Any], futures: list[asyncio.Future[Any]], _: object) -> None:
    if all(f.cancelled() for f in futures):
        call.cancel()
