"""The baselines every figure is divided by, measured in the same run on the same material.

1. ``EnginePool("stt")``: pocketsphinx called directly in a pool of worker processes (decoders
   created once per process; each file is one ``process_raw`` call with the whole utterance).
2. ``EnginePool("tts")``: eSpeak NG called directly the same way.
3. ``naive_client``: what the spec's examples suggest: one file at a time, a new WebSocket
   connection per file, 100 ms chunks paced in real time, ``flush`` and wait for ``flush_done``.
4. ``AckServer`` + ``raw_transport``: the same base64 JSON audio frames over a local WebSocket to
   a server that only parses them and acknowledges every N frames: the transport with no engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing as mp
import multiprocessing.pool
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench import corpus

# ---------------------------------------------------------------------------
# Baselines 1 and 2: the engines called directly in a process pool

_DECODER: Any = None


def _init_stt() -> None:
    global _DECODER
    from voxbeam.server.engines.pocketsphinx import new_decoder

    # The server's decoder configuration (model, search settings), so the ratio measures the server.
    _DECODER = new_decoder()


def _init_tts() -> None:
    corpus.synth("Ready.")


def _ready(delay: float) -> int:
    time.sleep(delay)
    return os.getpid()


def _stt_task(path: str) -> tuple[float, str, float, float]:
    """Recognise one WAV file: (audio seconds, hypothesis, CPU seconds, wall seconds)."""
    c0, t0 = time.process_time(), time.monotonic()
    pcm = corpus.read_wav(path)
    _DECODER.start_utt()
    _DECODER.process_raw(pcm, False, True)
    _DECODER.end_utt()
    hyp = _DECODER.hyp()
    return len(pcm) / 2 / corpus.STT_RATE, hyp.hypstr if hyp else "", time.process_time() - c0, time.monotonic() - t0


def _tts_task(args: tuple[str, str, int]) -> tuple[float, str, float, float]:
    """Synthesize one text: (audio seconds, "", CPU seconds, wall seconds)."""
    text, voice, wpm = args
    c0, t0 = time.process_time(), time.monotonic()
    pcm, rate = corpus.synth(text, voice, wpm)
    return len(pcm) / 2 / rate, "", time.process_time() - c0, time.monotonic() - t0


@dataclass
class PoolRun:
    """One pass of a pool over a list of tasks."""

    wall: float
    cpu: float
    units: float  # audio seconds (STT input or TTS output)
    outputs: list[str]
    task_walls: list[float] = field(default_factory=list)
    task_units: list[float] = field(default_factory=list)


class EnginePool:
    """``processes`` spawned workers with their engine loaded once, ready before timing starts."""

    def __init__(self, kind: str, processes: int) -> None:
        self.kind = kind
        self.processes = processes
        self._pool: multiprocessing.pool.Pool | None = None

    def __enter__(self) -> EnginePool:
        ctx = mp.get_context("spawn")
        init = _init_stt if self.kind == "stt" else _init_tts
        self._pool = ctx.Pool(self.processes, initializer=init)
        # Wait until every process has run its initializer (each answers a task once it has).
        pids: set[int] = set()
        deadline = time.monotonic() + 120
        while len(pids) < self.processes and time.monotonic() < deadline:
            pids.update(self._pool.map(_ready, [0.2] * self.processes, chunksize=1))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()

    def run(self, tasks: Sequence[Any], in_flight: int | None = None) -> PoolRun:
        """Run every task with at most ``in_flight`` outstanding (default: one per process)."""
        assert self._pool is not None
        fn = _stt_task if self.kind == "stt" else _tts_task
        limit = threading.Semaphore(max(1, in_flight or self.processes))
        results: list[Any] = [None] * len(tasks)
        done = threading.Event()
        remaining = [len(tasks)]
        lock = threading.Lock()
        errors: list[BaseException] = []

        def finished(i: int, value: Any) -> None:
            results[i] = value
            limit.release()
            with lock:
                remaining[0] -= 1
                if remaining[0] == 0:
                    done.set()

        def failed(exc: BaseException) -> None:
            errors.append(exc)
            limit.release()
            done.set()

        def on_done(i: int) -> Callable[[Any], None]:
            return lambda value: finished(i, value)

        t0 = time.monotonic()
        for i, task in enumerate(tasks):
            limit.acquire()
            if errors:
                break
            self._pool.apply_async(fn, (task,), callback=on_done(i), error_callback=failed)
        if tasks:
            done.wait()
        wall = time.monotonic() - t0
        if errors:
            raise errors[0]
        return PoolRun(
            wall=wall,
            cpu=sum(r[2] for r in results),
            units=sum(r[0] for r in results),
            outputs=[r[1] for r in results],
            task_walls=[r[3] for r in results],
            task_units=[r[0] for r in results],
        )


# ---------------------------------------------------------------------------
# Baseline 3: the naive client of the spec's examples


@dataclass
class NaiveRun:
    wall: float
    units: float
    outputs: list[str]
    connections: int
    flush_latencies: list[float]


async def _naive_one(url: str, pcm: bytes, pace: bool) -> tuple[str, float]:
    from websockets.asyncio.client import connect

    from voxbeam import protocol

    finals: list[str] = []
    async with connect(url, max_size=2**24) as ws:
        await ws.send(protocol.serialize(protocol.SttInit(enable_timestamps=True)))
        ready = protocol.parse_server_message(await ws.recv())
        if not isinstance(ready, protocol.SttReady):
            raise RuntimeError(f"naive client: expected ready, got {ready!r}")

        async def reader() -> float:
            async for frame in ws:
                msg = protocol.parse_server_message(frame)
                if isinstance(msg, protocol.Transcript) and msg.is_final:
                    finals.append(msg.text)
                elif isinstance(msg, protocol.FlushDone):
                    return time.monotonic()
                elif isinstance(msg, protocol.Error):
                    raise RuntimeError(f"naive client: {msg.code} {msg.error}")
            raise RuntimeError("naive client: connection closed before flush_done")

        task = asyncio.create_task(reader())
        t0 = time.monotonic()
        for i, chunk in enumerate(corpus.chunks(pcm, 100)):
            if pace:
                delay = t0 + i * 0.1 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await ws.send(protocol.serialize(protocol.Audio(chunk)))
        if pace:  # the last chunk is "recorded" 100 ms after it starts
            await asyncio.sleep(max(0.0, t0 + len(pcm) / 2 / corpus.STT_RATE - time.monotonic()))
        flushed = time.monotonic()
        await ws.send(protocol.serialize(protocol.Command("flush")))
        done_at = await task
    return " ".join(finals), done_at - flushed


def naive_client(url: str, api_key: str, files: Sequence[corpus.AudioFile], pace: bool = True) -> NaiveRun:
    """Transcribe ``files`` one after another, each over its own new connection (``?token=``)."""
    from urllib.parse import quote

    from voxbeam import protocol

    full = f"{url.rstrip('/')}{protocol.STT_PATH}?token={quote(api_key, safe='')}"
    outputs: list[str] = []
    flushes: list[float] = []

    async def main() -> None:
        for f in files:
            text, flush = await _naive_one(full, corpus.read_wav(f.path), pace)
            outputs.append(text)
            flushes.append(flush)

    t0 = time.monotonic()
    asyncio.run(main())
    return NaiveRun(time.monotonic() - t0, sum(f.seconds for f in files), outputs, len(files), flushes)


# ---------------------------------------------------------------------------
# Baseline 4: the transport alone

ACK_EVERY = 10


async def _ack_handler(ws: Any) -> None:
    """Parses every frame as the real server must; acks every ACK_EVERY audio frames.

    On the STT path it also speaks enough protocol (ready, flush -> empty final + flush_done)
    for the real client to run against it.
    """
    from voxbeam import protocol

    path = ws.request.path.split("?", 1)[0]
    speak = path == protocol.STT_PATH
    frames = 0
    request_id = protocol.new_request_id()
    async for frame in ws:
        msg = protocol.parse_client_message(frame, "stt")
        if isinstance(msg, protocol.Audio):
            frames += 1
            if not speak and frames % ACK_EVERY == 0:
                await ws.send(f'{{"type":"ack","n":{frames}}}')
        elif isinstance(msg, protocol.SttInit):
            ready = protocol.SttReady(request_id, msg.language, msg.format, msg.sample_rate)
            await ws.send(protocol.serialize(ready))
        elif isinstance(msg, protocol.Command):
            if speak:
                final = protocol.Transcript(request_id, "", True, confidence=0.0, words=())
                await ws.send(protocol.serialize(final))
                await ws.send(protocol.serialize(protocol.FlushDone(request_id)))
                request_id = protocol.new_request_id()
            else:
                await ws.send(f'{{"type":"done","n":{frames}}}')
        elif isinstance(msg, protocol.Ping):
            await ws.send(protocol.serialize(protocol.Pong()))


def _ack_server_main(port_out: Any, stop: Any) -> None:
    from websockets.asyncio.server import serve

    async def main() -> None:
        async with serve(_ack_handler, "127.0.0.1", 0, max_size=2**24, compression=None) as server:
            port_out.put(next(iter(server.sockets)).getsockname()[1])
            while not stop.is_set():
                await asyncio.sleep(0.1)

    asyncio.run(main())


class AckServer:
    """The transport-only server in its own process (as the real server is), on a free port."""

    def __enter__(self) -> AckServer:
        ctx = mp.get_context("spawn")
        self._stop = ctx.Event()
        q = ctx.Queue()
        self._proc = ctx.Process(target=_ack_server_main, args=(q, self._stop), daemon=True)
        self._proc.start()
        self.port = int(q.get(timeout=60))
        self.url = f"ws://127.0.0.1:{self.port}"
        assert self._proc.pid is not None
        self.pid: int = self._proc.pid
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._proc.join(5)
        if self._proc.is_alive():
            self._proc.kill()


async def _raw_stream(url: str, frames: list[str]) -> None:
    from websockets.asyncio.client import connect

    async with connect(url + "/raw", max_size=2**24, compression=None) as ws:
        await ws.send('{"type":"init","format":"pcm","sample_rate":16000}')
        await ws.recv()
        for f in frames:
            await ws.send(f)
        await ws.send('{"type":"command","command":"flush"}')
        async for reply in ws:
            if json.loads(reply).get("type") == "done":
                return


def raw_transport(url: str, pcm_per_stream: Sequence[bytes], chunk_ms: int = 100) -> tuple[float, float]:
    """Send each PCM over its own connection concurrently, as base64 JSON frames encoded beforehand.

    Returns (wall seconds, CPU seconds of this process), both for the sending only.
    """
    from voxbeam import protocol

    cache: dict[int, list[str]] = {}  # streams often share one PCM: encode it once
    for p in pcm_per_stream:
        if id(p) not in cache:
            cache[id(p)] = [protocol.serialize(protocol.Audio(c)) for c in corpus.chunks(p, chunk_ms)]
    encoded = [cache[id(p)] for p in pcm_per_stream]

    async def main() -> None:
        await asyncio.gather(*(_raw_stream(url, frames) for frames in encoded))

    c0, t0 = time.process_time(), time.monotonic()
    asyncio.run(main())
    return time.monotonic() - t0, time.process_time() - c0


@contextlib.contextmanager
def cpu_of_self() -> Iterator[list[float]]:
    """CPU seconds this process spends inside the block (all threads) in ``box[0]``."""
    box = [0.0]
    c0 = time.process_time()
    try:
        yield box
    finally:
        box[0] = time.process_time() - c0
