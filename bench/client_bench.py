"""Client benchmark: what the client costs next to the server, and what it leaves on the table.

Three figures, each a ratio against a baseline measured in the same run:

- client CPU per audio-hour / server CPU for the same audio (target <= 0.02): one long file
  streamed through ``SpeechClient`` (audio handed over by a thread, as ``SyncSpeechClient`` does);
  client CPU from this process, server CPU from the LocalServer's process tree (psutil).
- pooled throughput with 8 sessions / what the server sustains (target >= 0.9): the same files
  through ``SpeechClient(pool_size=8)`` and through an ideal client (8 raw connections opened in
  advance, every frame serialised before the clock starts, no checks), audio seconds per second.
- client memory growth over a 2-hour file (target <= 100 MB; quick mode uses 15 minutes):
  peak RSS of this process while the file streams, minus RSS just before.

Standalone: ``python bench/client_bench.py [--quick]`` prints the result as JSON; the suite
runner imports ``run(quick)``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

if __package__ in (None, ""):  # run as a script from a source checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from voxbeam import protocol  # noqa: E402
from voxbeam.client import ClientConfig, SpeechClient, Timeouts  # noqa: E402

RATE = 16000
SENTENCES = (
    "The weather is nice today.",
    "Please call me when you get home.",
    "I would like a cup of coffee.",
    "The meeting starts at nine in the morning.",
    "She opened the window and looked outside.",
    "We need to buy some bread and milk.",
    "The children are playing in the park.",
    "Thank you very much for your help.",
)
TARGETS = {"client_cpu_ratio": 0.02, "pooled_throughput_ratio": 0.9, "long_file_memory_growth_mb": 100.0}


def _silence(seconds: float) -> bytes:
    return b"\0\0" * int(seconds * RATE)


def _server_pid(server: Any) -> int:
    for path in ("pid", "process.pid", "proc.pid", "_proc.pid", "_process.pid"):
        obj = server
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        if isinstance(obj, int):
            return obj
    raise RuntimeError("cannot find the LocalServer's process id")


def _cpu(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            continue
    return total


class _ServerCpu:
    """CPU seconds of the server's process tree (workers included) between start() and stop()."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)

    def _tree(self) -> list[psutil.Process]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return []

    def start(self) -> None:
        self._t0 = _cpu(self._tree())

    def stop(self) -> float:
        return _cpu(self._tree()) - self._t0


def _chunks(pcm: bytes, chunk_ms: int = 200) -> Iterator[bytes]:
    step = RATE * chunk_ms // 1000 * 2
    for i in range(0, len(pcm), step):
        yield pcm[i : i + step]


def _speech_stream(clips: list[bytes], seconds: float, gap: float = 1.0) -> Iterator[bytes]:
    """``seconds`` of speech-like audio: the clips in turn with pauses, generated as it is read."""
    pause = _silence(gap)
    budget = int(seconds * RATE) * 2
    i = 0
    while budget > 0:
        piece = clips[i % len(clips)] + pause
        i += 1
        piece = piece[:budget]
        budget -= len(piece)
        yield from _chunks(piece)


async def _render(config: ClientConfig) -> list[bytes]:
    async with SpeechClient(config) as client:
        results = await asyncio.gather(*(client.synthesize(t, format="pcm", sample_rate=RATE) for t in SENTENCES))
    return [r.audio for r in results]


# ---------------------------------------------------------------------------------------------
# 1. CPU per audio-hour


async def _cpu_ratio(config: ClientConfig, server_pid: int, clips: list[bytes], seconds: float) -> dict[str, float]:
    me = psutil.Process()
    server = _ServerCpu(server_pid)
    async with SpeechClient(config) as client:
        await client.transcribe(clips[0])  # warm: connection, imports, server decoders
        server.start()
        c0 = _cpu([me])
        w0 = time.monotonic()
        result = await client.transcribe(_speech_stream(clips, seconds))
        wall = time.monotonic() - w0
        client_cpu = _cpu([me]) - c0
        server_cpu = server.stop()
    hours = result.audio_duration_ms / 3_600_000
    return {
        "audio_seconds": result.audio_duration_ms / 1000,
        "client_cpu_s": client_cpu,
        "server_cpu_s": server_cpu,
        "client_cpu_s_per_audio_hour": client_cpu / hours,
        "server_cpu_s_per_audio_hour": server_cpu / hours,
        "client_cpu_ratio": client_cpu / server_cpu if server_cpu > 0 else float("nan"),
        "wall_s": wall,
        "words": float(len(result.words)),
    }


# ---------------------------------------------------------------------------------------------
# 2. Pooled throughput against an ideal client


async def _ideal_client(config: ClientConfig, files: list[bytes], connections: int) -> float:
    """Audio seconds per second with no client overhead to speak of: the server's capacity."""
    from websockets.asyncio.client import connect

    chunk = RATE * config.chunk_ms // 1000 * 2
    frames = [
        [protocol.serialize(protocol.Audio(f[i : i + chunk])) for i in range(0, len(f), chunk)]
        + [protocol.serialize(protocol.Command("flush"))]
        for f in files
    ]
    init = protocol.serialize(protocol.SttInit(sample_rate=RATE, enable_timestamps=True))
    headers = {"X-Api-Key": config.resolved_api_key() or ""}
    url = config.endpoints[0] + protocol.STT_PATH
    sockets = [
        await connect(url, additional_headers=headers, compression=None, max_size=None) for _ in range(connections)
    ]
    for ws in sockets:
        await ws.send(init)
        await ws.recv()  # ready
    queue: asyncio.Queue[list[str]] = asyncio.Queue()
    for f in frames:
        queue.put_nowait(f)

    async def worker(ws: Any) -> None:
        while not queue.empty():
            msgs = queue.get_nowait()

            async def send(msgs: list[str] = msgs) -> None:
                for m in msgs:
                    await ws.send(m)

            sender = asyncio.ensure_future(send())
            while True:
                if protocol.parse_server_message(await ws.recv()).type == "flush_done":
                    break
            await sender

    t0 = time.monotonic()
    await asyncio.gather(*(worker(ws) for ws in sockets))
    wall = time.monotonic() - t0
    for ws in sockets:
        await ws.close()
    return sum(len(f) for f in files) / 2 / RATE / wall


async def _pooled_client(config: ClientConfig, files: list[bytes]) -> float:
    async with SpeechClient(config) as client:
        await asyncio.gather(*(client.transcribe(files[i]) for i in range(config.pool_size)))  # open + warm
        t0 = time.monotonic()
        await asyncio.gather(*(client.transcribe(f) for f in files))
        wall = time.monotonic() - t0
    return sum(len(f) for f in files) / 2 / RATE / wall


async def _throughput(config: ClientConfig, clips: list[bytes], n_files: int, rounds: int) -> dict[str, float]:
    files = [
        _silence(0.2) + clips[i % len(clips)] + _silence(0.4) + clips[(i + 3) % len(clips)] for i in range(n_files)
    ]
    ideal, pooled = [], []
    for _ in range(rounds):  # interleaved, best of each: the machine is shared and noisy
        ideal.append(await _ideal_client(config, files, config.pool_size))
        pooled.append(await _pooled_client(config, files))
    return {
        "files": float(n_files),
        "audio_seconds": sum(len(f) for f in files) / 2 / RATE,
        "ideal_audio_s_per_s": max(ideal),
        "pooled_audio_s_per_s": max(pooled),
        "pooled_throughput_ratio": max(pooled) / max(ideal),
    }


# ---------------------------------------------------------------------------------------------
# 3. Memory over a long file


async def _memory(config: ClientConfig, clips: list[bytes], seconds: float) -> dict[str, float]:
    me = psutil.Process()
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            peak[0] = max(peak[0], me.memory_info().rss)

    async with SpeechClient(config) as client:
        await client.transcribe(_speech_stream(clips, 60.0))  # warm up allocators and buffers
        base = me.memory_info().rss
        peak[0] = base
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.monotonic()
        try:
            result = await client.transcribe(_speech_stream(clips, seconds))
        finally:
            stop.set()
            sampler.join()
    return {
        "audio_seconds": result.audio_duration_ms / 1000,
        "segments": float(len(result.request_ids)),
        "words": float(len(result.words)),
        "rss_before_mb": base / 2**20,
        "rss_peak_mb": peak[0] / 2**20,
        "long_file_memory_growth_mb": (peak[0] - base) / 2**20,
        "wall_s": time.monotonic() - t0,
    }


# ---------------------------------------------------------------------------------------------


def run(quick: bool = False) -> dict[str, Any]:
    """Run the three measurements against a LocalServer started here; returns figures and ratios."""
    from voxbeam.server.launcher import LocalServer

    cpu_seconds = 240.0 if quick else 1800.0
    memory_seconds = 900.0 if quick else 7200.0
    n_files, rounds = (48, 1) if quick else (200, 2)
    workers = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    out: dict[str, Any] = {"quick": quick, "server_workers": workers}
    with LocalServer(workers=workers) as server:
        config = ClientConfig(
            endpoints=(server.url,),
            api_key=server.api_key,
            pool_size=8,
            timeouts=Timeouts(record=4 * 3600.0, result=120.0),
        )
        clips = asyncio.run(_render(config))
        out["cpu"] = asyncio.run(_cpu_ratio(config, _server_pid(server), clips, cpu_seconds))
        out["throughput"] = asyncio.run(_throughput(config, clips, n_files, rounds))
        out["memory"] = asyncio.run(_memory(config, clips, memory_seconds))
    out["ratios"] = {
        "client_cpu_ratio": out["cpu"]["client_cpu_ratio"],
        "pooled_throughput_ratio": out["throughput"]["pooled_throughput_ratio"],
        "long_file_memory_growth_mb": out["memory"]["long_file_memory_growth_mb"],
    }
    out["targets"] = dict(TARGETS)
    out["passed"] = {
        "client_cpu_ratio": out["ratios"]["client_cpu_ratio"] <= TARGETS["client_cpu_ratio"],
        "pooled_throughput_ratio": out["ratios"]["pooled_throughput_ratio"] >= TARGETS["pooled_throughput_ratio"],
        "long_file_memory_growth_mb": out["ratios"]["long_file_memory_growth_mb"]
        <= TARGETS["long_file_memory_growth_mb"],
    }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter audio (minutes, not hours)")
    args = parser.parse_args(argv)
    result = run(quick=args.quick)
    print(json.dumps(result, indent=2))
    return 0 if all(result["passed"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
