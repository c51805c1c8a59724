"""The server's pool of engine workers (``process.Worker``): placement, deferred decoding, restarts, the watchdog.

Sessions are pinned to the least loaded live worker; decoding that bulk streams defer goes to
whichever worker is free, taken from a fair queue (``fair.FairQueue``). A worker that dies is
restarted; one over its memory ceiling is drained and replaced.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from voxbeam.server.engines.base import Deferred, Recognized
from voxbeam.server.errors import ConfigError, WorkerUnavailable
from voxbeam.server.memory import rss
from voxbeam.server.worker import WorkerSpec
from voxbeam.server.worker.fair import FairQueue, Lane
from voxbeam.server.worker.process import Observer, Worker

log = logging.getLogger("voxbeam.server.workers")

# Windows a worker decodes in one batch at most. Whisper tiny.en, one thread, CPU s per 30 s window
# of dense speech by batch size (measured here once): 1: 2.5, 2: 2.15, 3: 2.03, 4: 1.89, 6: 2.05, 8: 2.14;
# but beam search keeps each window's encoder output once per beam: a batch of four held ~90 MiB more
# per worker than one of three (server at 32-64 bulk sessions: 1.65 GiB vs 1.45 GiB).
MAX_DECODE_BATCH = 3
WINDOW_S = 30.0  # the audio a deferred window holds at most (Whisper's), for the backlog a batch in hand is
# The memory watchdog: how often it looks, and how long a worker over its ceiling may finish its work.
MEMORY_POLL_S = 1.0
RETIRE_GRACE_S = 30.0


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
        # Each slot's bulk speed, audio seconds per second, measured by the worker at start (``calibrate``).
        self.rates: dict[int, float] = {}
        self._calibration: asyncio.Task[None] | None = None
        self._closing = False
        self._restart_tasks: set[asyncio.Task[None]] = set()
        self._changed: asyncio.Event | None = None
        # Deferred decoding waiting for a worker, taken key by key and session by session (fair.py).
        self._queued: FairQueue[tuple[Deferred, asyncio.Future[list[Recognized]]]] = FairQueue()
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
        self._check_room_for_tiers()
        self._watch = loop.create_task(self._watch_memory())
        # In the background: the server serves meanwhile (capacity is unknown for the first seconds).
        self._calibration = loop.create_task(self._calibrate())

    def _check_room_for_tiers(self) -> None:
        """``ConfigError`` when a worker, as it holds now, would be over its memory ceiling once it has loaded
        every model tier: the watchdog would replace it each time a session asked for one (a loop in which
        the tier never serves), so the server says so at start instead."""
        extra = sum(m.memory for m in self.spec.stt_tiers)
        if self.memory_ceiling is None or not extra:
            return
        held = max((rss(w.pid) or 0) for w in self.workers if w.pid is not None)
        if held + extra > self.memory_ceiling:
            names = ",".join([self.spec.stt.model.name, *(m.name for m in self.spec.stt_tiers)])
            raise ConfigError(
                f"--stt_model {names}: a worker holds {held >> 20} MiB and would hold about {extra >> 20} MiB more "
                f"with every model loaded, over its memory ceiling of {self.memory_ceiling >> 20} MiB; raise "
                "--memory_limit_mb (or the replica's limit) or --worker_memory_mb, run fewer --workers, or serve "
                "fewer models"
            )

    async def _calibrate(self) -> None:
        replies = await asyncio.gather(*(w.call("calibrate") for w in self.workers), return_exceptions=True)
        for worker, rate in zip(self.workers, replies, strict=True):
            if isinstance(rate, float):
                self.rates[worker.slot] = rate
        log.info("measured speed: %s x real time per worker", ", ".join(f"{r:.1f}" for r in self.rates.values()))

    @property
    def bulk_sessions(self) -> int:
        """Bulk sessions that keep every worker busy: a batch in hand and the next one queued, each."""
        return self.count * MAX_DECODE_BATCH * 2

    @property
    def bulk_rate(self) -> float | None:
        """Audio seconds per second the working workers transcribe in bulk, as measured (None: not yet)."""
        rates = [self.rates[w.slot] for w in self.usable() if w.slot in self.rates]
        return sum(rates) if rates else None

    def backlog_s(self) -> float:
        """Audio seconds of deferred decoding waiting for a worker or in hand."""
        queued = sum(deferred.audio_s for deferred, fut in self._queued if not fut.done())  # done: cancelled
        in_hand = sum(w.decoding[1] for w in self.workers if w.decoding is not None) * WINDOW_S
        return queued + in_hand

    def usable(self) -> list[Worker]:
        """Live workers that take new work (not one being replaced)."""
        return [w for w in self.workers if w.alive and not w.retiring]

    def pick(self) -> Worker:
        """The least loaded live worker (``WorkerUnavailable`` when none runs)."""
        live = self.usable()
        if not live:
            raise WorkerUnavailable("no engine worker is running")
        return min(live, key=lambda w: w.load)

    def decode(self, deferred: Sequence[Deferred], lane: Lane) -> list[asyncio.Future[list[Recognized]]]:
        """``lane``'s deferred decoding, queued for the workers (see ``_dispatch``); a future per item.
        ``WorkerUnavailable`` when no worker runs."""
        if not self.alive:
            raise WorkerUnavailable("no engine worker is running")
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[list[Recognized]]] = [loop.create_future() for _ in deferred]
        for item in zip(deferred, futures, strict=True):
            self._queued.put(item, lane)
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
        self._queued.prune(lambda item: item[1].done())  # done: cancelled
        live = self.usable()
        if not live:
            return
        now = time.monotonic()
        for worker in sorted((w for w in live if w.decoding is None), key=lambda w: w.pending):
            if not self._queued:
                return
            in_hand = sum(self._windows_left(w, now) for w in live)
            share = math.ceil((len(self._queued) + in_hand) / len(live))
            batch = self._queued.take_many(max(1, min(share, MAX_DECODE_BATCH)))
            worker.decoding = (now, len(batch))
            worker.models.update(item.work[0] for item, _ in batch)  # (model, work): see child._opaque
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
        for _, fut in self._queued.clear():
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
        for task in [*self._restart_tasks, *(t for t in (self._watch, self._calibration) if t is not None)]:
            task.cancel()
        await asyncio.gather(*(asyncio.to_thread(w.stop, timeout) for w in self.workers))


def _cancel_when_all_cancelled(call: asyncio.Future[Any], futures: list[asyncio.Future[Any]], _: object) -> None:
    if all(f.cancelled() for f in futures):
        call.cancel()
