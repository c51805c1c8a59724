"""What one client's load does to another's (issue 33), on one server with two keys.

- flood: key A holds 300 connections without ``init`` from the address every client shares,
  reconnecting as the server drops them (another process); key B's 3 s request (real speech),
  connect to ``flush_done``, against the same request on the idle server. Floor: within 3 s.
- overload: key A uploads dense speech as fast as it goes in 8 sessions (another process); key B's
  3 s request against idle. Floor: within 3x.
- live: twice the live streams ``/healthz`` says the server can hold ask at once (``realtime``
  init), each 20 s of real speech at real time in 100 ms chunks. The refused ones' answer time
  (floor: 100 ms); the admitted ones' ``flush`` to ``flush_done`` against one stream alone; and
  the CPU a live audio second costs over a bulk one, which the admission assumes
  (the engine's ``live_cost``).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from bench import baselines, corpus, human_corpus
from bench._common import CpuMeter, Result, log, median, percentile, ratio
from bench._context import Context

NAME = "fairness"
KEYS = ("fairness-key-a-0000000000000", "fairness-key-b-0000000000000")
FLOOD = 300
REQUEST_CLIP = "pocketsphinx/librivox-0930"  # 3.3 s of a LibriVox reader
LIVE_CLIPS = ["mfa/acoustic-corpus", "asterisk/priv-callee-options", "mfa/cold-corpus", "asterisk/demo-congrats"]
LIVE_S = 20.0
UPLOADERS = 8
TARGET_FLOOD_S = 3.0
TARGET_OVERLOAD = 3.0
TARGET_REFUSAL_MS = 100.0


def _url(server: Any, key: str) -> str:
    from voxbeam import protocol

    return f"{server.url}{protocol.STT_PATH}?token={quote(key, safe='')}"


async def request(url: str, pcm: bytes, *, realtime: bool | None = None, pace: bool = False) -> dict[str, Any]:
    """One STT request over a new connection: its timings (s), first reply and finals' text."""
    from websockets.asyncio.client import connect

    from voxbeam import protocol

    began = time.monotonic()
    async with connect(url, max_size=2**24) as ws:
        init = protocol.SttInit(realtime=realtime)
        sent = time.monotonic()
        await ws.send(protocol.serialize(init))
        reply = protocol.parse_server_message(await ws.recv())
        answered = time.monotonic() - sent
        if not isinstance(reply, protocol.SttReady):
            return {"reply": reply, "answer_s": answered}
        finals, flushed, done = await baselines.stream_and_flush(ws, pcm, pace)
    return {"reply": reply, "answer_s": answered, "total_s": done - began, "flush_s": done - flushed,
            "text": " ".join(finals)}  # fmt: skip


def _flood(url: str, stop: Any, counts: Any) -> None:
    """Another process: keep ``FLOOD`` connections of key A open without init, reconnecting."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    async def main() -> None:
        held: list[Any] = []
        while not stop.is_set():
            held = [ws for ws in held if ws.state.name == "OPEN"]
            for _ in range(FLOOD - len(held)):
                try:
                    held.append(await connect(url))
                    counts[0] += 1
                except InvalidStatus:
                    counts[1] += 1
            await asyncio.sleep(0.05)
        for ws in held:
            await ws.close()

    asyncio.run(main())


def _overload(url: str, pcm: bytes, stop: Any, counts: Any) -> None:
    """Another process: ``UPLOADERS`` sessions of key A sending ``pcm`` as fast as it goes, again and again."""

    async def uploader() -> None:
        while not stop.is_set():
            try:
                out = await request(url, pcm, realtime=False)
            except Exception:  # a dropped upload is the uploader's loss; the bench counts it
                counts[2] += 1
                continue
            counts[0 if "total_s" in out else 1] += 1
            if "total_s" not in out:
                await asyncio.sleep(1.0)  # refused: SERVER_BUSY's "retry later"

    async def main() -> None:
        await asyncio.gather(*(uploader() for _ in range(UPLOADERS)))

    asyncio.run(main())


class Beside:
    """A load run in another process (so its client CPU is not the measured client's) while a block runs."""

    def __init__(self, target: Any, *args: Any) -> None:
        ctx = mp.get_context("spawn")
        self.stop = ctx.Event()
        self.counts = ctx.Array("l", 3)
        self.proc = ctx.Process(target=target, args=(*args, self.stop, self.counts), daemon=True)

    def __enter__(self) -> Beside:
        self.proc.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.proc.join(120)
        if self.proc.is_alive():
            self.proc.kill()


def _requests(url: str, pcm: bytes, n: int, gap: float = 1.0) -> list[dict[str, Any]]:
    async def main() -> list[dict[str, Any]]:
        out = []
        for _ in range(n):
            out.append(await request(url, pcm))
            await asyncio.sleep(gap)
        return out

    return asyncio.run(main())


def _flooded(ctx: Context, res: Result, server: Any, pcm: bytes, idle: float) -> None:
    log(f"fairness: key A holds {FLOOD} connections without init; key B asks")
    with Beside(_flood, _url(server, KEYS[0])) as flood:
        time.sleep(3.0)  # the flood at full size, and a deadline's worth of drops and reconnects
        runs = _requests(_url(server, KEYS[1]), pcm, 3 if ctx.quick else 6)
    worst = max(r["total_s"] for r in runs)
    res.measure("flood_request_s", worst, "s", f"key B's 3 s request (connect to flush_done), worst of {len(runs)}")
    res.measure("flood_admitted", flood.counts[0], "connections", "key A's connections let in (dropped at 3 s)")
    res.measure("flood_refused", flood.counts[1], "connections", "key A's connections refused (HTTP 429)")
    res.compare("flood_request", "key B's request while key A floods, worst (s)", worst, TARGET_FLOOD_S, "<=",
                subject="flood_request_s", unit="s")  # fmt: skip
    res.compare("flood_vs_idle", "key B's request while key A floods over idle", ratio(worst, idle), None, "<=",
                subject="flood_request_s", baseline="idle_request_s")  # fmt: skip
    if not all(r["text"] for r in runs):
        res.errors.append("flood: key B's request came back without a transcript")


def _overloaded(ctx: Context, res: Result, server: Any, pcm: bytes, idle: float) -> None:
    upload, _ = corpus.dense_pcm(60.0, seed=7)
    log(f"fairness: key A uploads 60 s files in {UPLOADERS} sessions as fast as it goes; key B asks")
    meter = CpuMeter([server.pid]).start()
    with Beside(_overload, _url(server, KEYS[0]), upload) as load:
        deadline = time.monotonic() + 120
        while server.health()["decode_backlog_s"] < 60 and time.monotonic() < deadline:
            time.sleep(0.5)
        backlog = server.health()["decode_backlog_s"]
        runs = _requests(_url(server, KEYS[1]), pcm, 3 if ctx.quick else 6, gap=3.0)
    busy = meter.stop() / meter.wall
    worst = max(r["total_s"] for r in runs)
    res.measure("overload_backlog_s", backlog, "s", "key A's audio queued for decoding when key B asked")
    res.measure("overload_request_s", worst, "s", f"key B's 3 s request under the overload, worst of {len(runs)}")
    res.measure("overload_server_cores", busy, "cores", "server CPU during the overload")
    res.measure("overload_uploads", load.counts[0], "files", "key A's 60 s uploads finished meanwhile")
    res.measure("overload_refused", load.counts[1], "sessions", "key A's sessions told they would wait too long")
    res.compare("overload_vs_idle", "key B's 3 s request under key A's fast-upload overload over idle, worst",
                ratio(worst, idle), TARGET_OVERLOAD, "<=", subject="overload_request_s",
                baseline="idle_request_s")  # fmt: skip


def _bulk_cpu_per_s(server: Any) -> float:
    """Server CPU seconds per audio second transcribed in bulk (two 30 s files at once)."""
    pcm, _ = corpus.dense_pcm(30.0, seed=11)
    url = _url(server, KEYS[1])

    async def main() -> None:
        await asyncio.gather(*(request(url, pcm, realtime=False) for _ in range(2)))

    meter = CpuMeter([server.pid]).start()
    asyncio.run(main())
    return meter.stop() / (2 * 30.0)


def _live(ctx: Context, res: Result, server: Any, streams: Sequence[bytes]) -> None:
    from voxbeam import protocol
    from voxbeam.server.engines import stt_engine

    url = _url(server, KEYS[1])
    alone = asyncio.run(request(url, streams[0], realtime=True, pace=True))["flush_s"]
    capacity = int(server.health()["live_capacity"])
    asked = 2 * capacity
    log(f"fairness: {asked} live streams ask at once; the server says it holds {capacity}")

    async def main() -> list[dict[str, Any]]:
        return await asyncio.gather(
            *(request(url, streams[i % len(streams)], realtime=True, pace=True) for i in range(asked))
        )

    meter = CpuMeter([server.pid]).start()
    runs = asyncio.run(main())
    cpu = meter.stop()
    admitted = [r for r in runs if "flush_s" in r]
    refused = [r for r in runs if isinstance(r["reply"], protocol.Error)]
    if len(admitted) + len(refused) != asked or not all(r["reply"].code == "SERVER_BUSY" for r in refused):
        res.errors.append(f"live: {len(admitted)} admitted and {len(refused)} refused of {asked}")
    flush = [r["flush_s"] * 1000 for r in admitted]
    refusal = [r["answer_s"] * 1000 for r in refused]
    res.measure("live_capacity", capacity, "streams", "live streams /healthz says the server holds")
    res.measure("live_admitted", len(admitted), "streams", f"admitted of {asked} asking at once")
    res.measure("live_flush_p95_ms", percentile(flush, 95), "ms", "admitted streams: flush to flush_done p95")
    res.measure("live_alone_flush_ms", alone * 1000, "ms", "one stream alone: flush to flush_done")
    res.measure("live_refusal_max_ms", max(refusal, default=0.0), "ms", "refused streams: init to SERVER_BUSY, max")
    res.compare("live_refusal", "refused live streams: init to SERVER_BUSY, max (ms)", max(refusal, default=0.0),
                TARGET_REFUSAL_MS, "<=", subject="live_refusal_max_ms", unit="ms")  # fmt: skip
    res.compare("live_flush_vs_alone", "admitted streams' flush to flush_done p95 over one stream alone",
                ratio(percentile(flush, 95), alone * 1000), None, "<=", subject="live_flush_p95_ms",
                baseline="live_alone_flush_ms")  # fmt: skip
    live_cpu_per_s = cpu / max(1, len(admitted)) / (len(streams[0]) / 2 / corpus.STT_RATE)
    bulk = _bulk_cpu_per_s(server)
    res.measure("live_cost", ratio(live_cpu_per_s, bulk), "x", "CPU per live audio second over per bulk one")
    assumed = stt_engine("whisper").live_cost
    res.notes.append(f"live cost measured {ratio(live_cpu_per_s, bulk):.2f}; the admission assumes {assumed}")


def run(ctx: Context) -> Result:
    from voxbeam.server.launcher import LocalServer

    res = Result(NAME, ctx.quick)
    clips = {c.id: c for c in human_corpus.load("full")}
    pcm = corpus.read_wav(clips[REQUEST_CLIP].path)
    size = int(LIVE_S * corpus.STT_RATE) * 2
    streams = [corpus.read_wav(clips[name].path)[:size] for name in LIVE_CLIPS]
    server = LocalServer(api_keys=list(KEYS), workers=ctx.workers, log_path=str(ctx.results_dir / "fairness.log"))
    server.start()
    res.config = {"workers": ctx.workers, "request_clip": REQUEST_CLIP, "live_clips": LIVE_CLIPS}
    try:
        deadline = time.monotonic() + 60  # the server measures its speed in the background at start
        while server.health().get("live_capacity") is None and time.monotonic() < deadline:
            time.sleep(0.5)
        _requests(_url(server, KEYS[1]), pcm, 1)  # warm-up
        idle = median(r["total_s"] for r in _requests(_url(server, KEYS[1]), pcm, 3))
        res.measure("idle_request_s", idle, "s", "key B's 3 s request on the idle server (connect to flush_done)")
        _flooded(ctx, res, server, pcm, idle)
        _drained(server)
        _overloaded(ctx, res, server, pcm, idle)
        _drained(server)
        _live(ctx, res, server, streams)
    finally:
        server.stop()
    return res


def _drained(server: Any, timeout: float = 180.0) -> None:
    """Until the server's queued decoding is done (what the last step's client left behind)."""
    deadline = time.monotonic() + timeout
    while server.health().get("decode_backlog_s", 0) > 0 and time.monotonic() < deadline:
        time.sleep(0.5)
