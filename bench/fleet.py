"""A simulated fleet: hundreds of Beam workers (asyncio clients on the real pool code) against N replicas.

Replicas are stub servers (one process each) that speak the protocol at a fixed speed per session
(a file of ``d`` seconds takes ``d / SPEED`` seconds after its flush) and admit ``capacity`` sessions,
answering SERVER_BUSY (close 1013) past that, as ``voxbeam serve`` does; their ``/healthz`` advertises
``capacity`` and ``replica`` like the real one. Simulated workers are ``SpeechClient``s (the real
pool, retries and backoff), spread over a few client processes, each keeping twice its pool size
of records in flight as the DoFns do. Their pool size comes from the real sizing code
(``voxbeam.client.sizing``) reading the stubs' ``/healthz``.

Figures: throughput with 1, 2 and 4 replicas against linear scaling of the 1-replica run (target
within 15 %), the share of session attempts refused with SERVER_BUSY (target under 5 %), and the
most sessions the clients held or were opening at once, as the clients themselves counted them,
against the share of the fleet's capacity the sizing planned for (target at most 1: nothing in
the stubs caps it, so a pool that opens past its size, or a sizing that asks for more than the
fleet admits, shows here). A run with the unsized default of 8 sessions per worker shows what
sizing prevents. Finally the memory of a real
``voxbeam serve`` replica at 0..64 streaming STT sessions: the numbers in deploy/k8s/.
"""

from __future__ import annotations

import asyncio
import json
import math
import multiprocessing
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from bench import corpus
from bench._common import MemSampler, Result, log, median
from bench._context import Context

NAME = "fleet"
SPEED = 0.25  # audio seconds per second, per session: a slow engine, so waits dominate the clients' CPU
CLIP_S = 1.0
UTILISATION = 0.8
CLIENT_PROCS = 2


@dataclass(frozen=True)
class Shape:
    workers: int
    warmup: float
    duration: float
    replicas: tuple[int, ...] = (1, 2, 4)

    @property
    def capacity(self) -> int:
        # Just above what one session per worker needs at the planned utilisation, so that the
        # formula gives 1, 2, 4 sessions per worker for 1, 2, 4 replicas (no rounding effects).
        return math.ceil(1.03 * self.workers / UTILISATION)


FULL = Shape(workers=200, warmup=8.0, duration=25.0)
QUICK = Shape(workers=40, warmup=4.0, duration=6.0)


# ---------------------------------------------------------------------------
# The stub replica


def _stub_main(capacity: int, conn: Any) -> None:
    """Run one stub replica until its parent closes ``conn``; sends its port first."""
    asyncio.run(_stub(capacity, conn))


async def _stub(capacity: int, conn: Any) -> None:
    from websockets.asyncio.server import serve

    state = {"sessions": 0, "peak": 0, "accepted": 0, "refused": 0, "audio_s": 0.0, "characters": 0}
    # Audio processed inside the measuring window (wall clock, set by the parent): each file counts
    # by the share of its processing time that falls inside, so no file is half in or out.
    window = {"start": math.inf, "end": math.inf, "audio_s": 0.0}

    def processed(seconds: float, began: float, ended: float) -> None:
        state["audio_s"] += seconds
        inside = min(ended, window["end"]) - max(began, window["start"])
        if inside > 0 and ended > began:
            window["audio_s"] += seconds * inside / (ended - began)

    replica = f"{socket.gethostname()}/{os.getpid()}"

    def process_request(connection: Any, request: Any) -> Any:
        if request.path.startswith("/healthz"):
            doc = {
                "status": "ok",
                "capacity": capacity,
                "replica": replica,
                **state,
                "window_audio_s": window["audio_s"],
            }
            return connection.respond(HTTPStatus.OK, json.dumps(doc) + "\n")
        return None

    async def handler(ws: Any) -> None:
        if state["sessions"] >= capacity:
            state["refused"] += 1
            busy = {"type": "error", "error": "the server's session limit is reached", "code": "SERVER_BUSY"}
            await ws.send(json.dumps(busy))
            await ws.close(1013, "SERVER_BUSY")
            return
        state["sessions"] += 1
        state["accepted"] += 1
        state["peak"] = max(state["peak"], state["sessions"])
        stt = "/stt/" in ws.request.path
        try:
            await _stub_session(ws, stt, state, processed)
        except Exception:
            pass  # the client went away
        finally:
            state["sessions"] -= 1

    async with serve(handler, "127.0.0.1", 0, process_request=process_request, ping_interval=None) as server:
        conn.send(server.sockets[0].getsockname()[1])
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, _serve_parent, conn, window)


async def _stub_session(
    ws: Any, stt: bool, state: dict[str, Any], processed: Callable[[float, float, float], None]
) -> None:
    """One admitted session: ready, then audio and flushes (STT) or texts (TTS) at the stub's speed."""
    init = json.loads(await ws.recv())
    rate = int(init.get("sample_rate") or 16000)
    n = 0
    rid = "req_stub0"  # ready names the first recognition session; each flush starts the next
    ready = {"type": "ready", "request_id": rid, "language": "en-US", "format": init.get("format")}
    ready.update({"sample_rate": rate} if stt else {"voice_id": "vl-stub", "sample_rate": rate})
    await ws.send(json.dumps(ready))
    pending = 0
    async for frame in ws:
        msg = json.loads(frame)
        kind = msg.get("type")
        if kind == "audio":
            data = msg.get("data") or ""
            pending += len(data) * 3 // 4 - (2 if data.endswith("==") else 1 if data.endswith("=") else 0)
        elif kind == "command":
            seconds = pending / 2 / rate
            began = time.time()
            await asyncio.sleep(seconds / SPEED)
            processed(seconds, began, time.time())
            final = {"type": "transcript", "request_id": rid, "text": "stub", "is_final": True,
                     "confidence": 1.0, "offset": 0, "duration": int(seconds * 1000), "words": []}  # fmt: skip
            await ws.send(json.dumps(final))
            await ws.send(json.dumps({"type": "flush_done", "request_id": rid}))
            pending = 0
            n += 1
            rid = f"req_stub{n}"
        elif kind == "text" and msg.get("is_final"):
            text = str(msg.get("text", ""))
            await asyncio.sleep(len(text) / (SPEED * 15))  # 15 characters a second of speech
            await ws.send(json.dumps({"type": "audio", "data": "AAAA", "is_final": True}))
            state["characters"] += len(text)
        elif kind == "ping":
            await ws.send('{"type": "pong"}')


def _serve_parent(conn: Any, window: dict[str, float]) -> None:
    """Take the measuring window from the parent; return when it closes the pipe."""
    try:
        while True:
            start, end = conn.recv()
            window["start"], window["end"] = start, end
    except EOFError:
        pass


class Replicas:
    """N stub replica processes on this machine."""

    def __init__(self, n: int, capacity: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.procs = []
        self.conns = []
        self.urls = []
        for _ in range(n):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_stub_main, args=(capacity, child), daemon=True)
            proc.start()
            child.close()
            self.procs.append(proc)
            self.conns.append(parent)
        for conn in self.conns:
            if not conn.poll(60):
                raise RuntimeError("a stub replica did not start")
            self.urls.append(f"ws://127.0.0.1:{conn.recv()}")

    def measure(self, start: float, end: float) -> None:
        for conn in self.conns:
            conn.send((start, end))

    def health(self) -> list[dict[str, Any]]:
        import urllib.request

        out = []
        for url in self.urls:
            with urllib.request.urlopen(url.replace("ws://", "http://") + "/healthz", timeout=10) as resp:
                out.append(json.load(resp))
        return out

    def close(self) -> None:
        for conn in self.conns:
            conn.close()
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()

    def __enter__(self) -> Replicas:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------
# Simulated workers


def _clients_main(urls: list[str], workers: int, spw: int, window: tuple[float, float], conn: Any) -> None:
    conn.send(asyncio.run(_clients(urls, workers, spw, window)))
    conn.close()


async def _clients(urls: list[str], workers: int, spw: int, wall_window: tuple[float, float]) -> dict[str, Any]:
    from voxbeam.client import ClientConfig, SpeechClient

    pcm = b"\x01\x00" * int(CLIP_S * corpus.STT_RATE)
    config = ClientConfig(endpoints=tuple(urls), api_key="bench", pool_size=spw, chunk_ms=int(CLIP_S * 1000))
    clients = [SpeechClient(config) for _ in range(workers)]
    loop = asyncio.get_running_loop()
    offset = loop.time() - time.time()
    window = (wall_window[0] + offset, wall_window[1] + offset)
    done = {"in_window": 0, "all": 0, "failed": 0, "peak_open": 0}
    codes: dict[str, int] = {}

    async def count_open() -> None:
        # Sessions open or opening in this process's pools, sampled: what the clients asked of the fleet.
        while loop.time() < window[1]:
            done["peak_open"] = max(done["peak_open"], sum(c.pool.counts()["open"] for c in clients))
            await asyncio.sleep(0.05)

    async def in_flight(client: SpeechClient) -> None:
        while loop.time() < window[1]:
            try:
                await client.transcribe(pcm, sample_rate=corpus.STT_RATE)
            except Exception as exc:
                done["failed"] += 1
                code = str(getattr(exc, "code", type(exc).__name__))
                codes[code] = codes.get(code, 0) + 1
                continue
            done["all"] += 1
            if window[0] <= loop.time() <= window[1]:
                done["in_window"] += 1

    # As the DoFn does: twice the pool size of records in flight per worker process.
    await asyncio.gather(count_open(), *(in_flight(c) for c in clients for _ in range(2 * spw)))
    stats: dict[str, int] = {}
    for c in clients:
        for k, v in c.stats().items():
            stats[k] = stats.get(k, 0) + v
        await c.aclose()
    return {**done, "codes": codes, "stats": stats}


def simulate(urls: list[str], shape: Shape, spw: int, window: tuple[float, float]) -> dict[str, Any]:
    """Run ``shape.workers`` simulated workers with ``spw`` sessions each; their merged counts."""
    ctx = multiprocessing.get_context("spawn")
    share, extra = divmod(shape.workers, CLIENT_PROCS)
    parts = [share + (1 if i < extra else 0) for i in range(CLIENT_PROCS)]
    procs, conns = [], []
    for n in parts:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_clients_main, args=(urls, n, spw, window, child))
        proc.start()
        child.close()
        procs.append(proc)
        conns.append(parent)
    # Peaks of the client processes are summed: at most what they held at once (they may not coincide).
    merged: dict[str, Any] = {"in_window": 0, "all": 0, "failed": 0, "peak_open": 0, "codes": {}, "stats": {}}
    for conn, proc in zip(conns, procs, strict=True):
        if not conn.poll(shape.warmup + shape.duration + 300):
            raise RuntimeError("simulated workers did not finish")
        part = conn.recv()
        proc.join(30)
        for k in ("in_window", "all", "failed", "peak_open"):
            merged[k] += part[k]
        for key in ("codes", "stats"):
            for k, v in part[key].items():
                merged[key][k] = merged[key].get(k, 0) + v
    return merged


def run_fleet(n: int, shape: Shape, sized: bool = True) -> dict[str, Any]:
    from voxbeam.client.sizing import DEFAULT_SESSIONS_PER_WORKER, advertised_capacity, size

    with Replicas(n, shape.capacity) as fleet:
        caps = advertised_capacity(fleet.urls)
        sizing = size(None if sized else DEFAULT_SESSIONS_PER_WORKER, caps, shape.workers, UTILISATION)
        window = (time.time() + shape.warmup, time.time() + shape.warmup + shape.duration)
        fleet.measure(*window)
        out = simulate(fleet.urls, shape, sizing.sessions_per_worker, window)
        health = fleet.health()
    accepted = sum(h["accepted"] for h in health)
    refused = sum(h["refused"] for h in health)
    out.update(
        replicas=n,
        capacity=shape.capacity,
        sessions_per_worker=sizing.sessions_per_worker,
        fleet_capacity_seen=sizing.capacity,
        throughput=sum(h["window_audio_s"] for h in health) / shape.duration,
        accepted=accepted,
        refused=refused,
        refused_share=refused / max(1, accepted + refused),
        peaks=[h["peak"] for h in health],
        # What the clients held or were opening at once, against what the sizing planned to use.
        client_peak_share=out["peak_open"] / (n * shape.capacity * UTILISATION),
    )
    log(
        f"fleet: {n} replica(s) x {shape.capacity}, {shape.workers} workers x {sizing.sessions_per_worker} sessions"
        f"{'' if sized else ' (unsized)'}: {out['throughput']:.1f} audio s/s, refused {refused}/{accepted + refused}, "
        f"peaks {out['peaks']}, failed {out['failed']}"
    )
    return out


# ---------------------------------------------------------------------------
# Memory of a real replica per session


def replica_memory(counts: list[int], seconds_per_session: float) -> dict[str, Any]:
    """Peak RSS of `voxbeam serve` (front + 2 workers) with N sessions streaming speech at once."""
    from voxbeam.client import ClientConfig, SpeechClient, Timeouts
    from voxbeam.server.launcher import LocalServer

    speech = corpus.utterance(list(corpus.SENTENCES[:6]))
    per = int(seconds_per_session * corpus.STT_RATE) * 2
    pcm = (speech * (per // len(speech) + 1))[:per]
    peaks: dict[int, float] = {}
    with LocalServer(workers=2, max_sessions=max(counts) + 16) as srv:
        assert srv.pid is not None
        time.sleep(1.0)
        with MemSampler([srv.pid], interval=0.5) as idle:
            time.sleep(1.0)
        peaks[0] = idle.peak_rss
        for n in counts:

            async def load(n: int = n) -> None:
                # Every session streams at once, so flushes wait for the whole backlog: long deadlines.
                slow = Timeouts(result=600, record=1200, pool=1200)
                cfg = ClientConfig(endpoints=(srv.url,), api_key=srv.api_key, pool_size=n, timeouts=slow)
                async with SpeechClient(cfg) as client:
                    await asyncio.gather(*(client.transcribe(pcm) for _ in range(n)))

            with MemSampler([srv.pid], interval=0.25) as mem:
                asyncio.run(load())
            peaks[n] = mem.peak_rss
            log(f"fleet: replica memory with {n} streaming sessions: {peaks[n] / 2**20:.0f} MiB")
    xs = [n for n in counts]
    ys = [peaks[n] / 2**20 for n in counts]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var if var else math.nan
    return {"idle_mib": peaks[0] / 2**20, "peaks_mib": {str(k): v / 2**20 for k, v in peaks.items()},
            "mib_per_session": slope}  # fmt: skip


# ---------------------------------------------------------------------------


def run(ctx: Context) -> Result:
    from bench import plots

    shape = QUICK if ctx.quick else FULL
    res = Result(NAME, ctx.quick)
    res.config = _config(shape)
    runs = {n: run_fleet(n, shape) for n in shape.replicas}
    base = runs[shape.replicas[0]]["throughput"]
    for n, r in runs.items():
        res.measure(f"throughput_{n}", r["throughput"], "audio s / s", f"{n} replica(s), {shape.workers} workers")
        res.measure(f"sessions_per_worker_{n}", r["sessions_per_worker"], "sessions", "from the sizing formula")
        res.measure(f"refused_{n}", r["refused"], "sessions", "SERVER_BUSY answers")
        res.measure(f"failed_{n}", r["failed"], "records", "records that ended in an error")
    ideal = {n: base * n / shape.replicas[0] for n in runs}
    scaling = min(runs[n]["throughput"] / ideal[n] for n in runs if n != shape.replicas[0])
    res.compare(
        "scaling",
        "throughput at 2 and 4 replicas / linear from 1 replica (worst)",
        scaling,
        0.85,
        subject="throughput_N",
        baseline="N x throughput_1",
        note=", ".join(f"{n}: {runs[n]['throughput'] / ideal[n]:.2f}" for n in runs),
    )
    attempts = sum(r["accepted"] + r["refused"] for r in runs.values())
    refused = sum(r["refused"] for r in runs.values()) / max(1, attempts)
    res.compare("refused_share", "session attempts refused with SERVER_BUSY (sized)", refused, 0.05, "<=", unit="share")
    res.compare(
        "client_peak_vs_planned",
        "most sessions the clients held or opened at once / the fleet's capacity x utilisation",
        max(r["client_peak_share"] for r in runs.values()),
        1.0,
        "<=",
        unit="share",
        note=", ".join(f"{n}: {r['peak_open']} of {n * shape.capacity * UTILISATION:.0f}" for n, r in runs.items()),
    )
    res.series["fleet"] = {str(n): {k: v for k, v in r.items() if k != "stats"} for n, r in runs.items()}
    if not ctx.quick:
        # What sizing prevents: every worker with the default 8 sessions against 2 replicas.
        unsized = run_fleet(2, shape, sized=False)
        res.compare(
            "unsized_refused_share",
            "session attempts refused with the default 8 sessions per worker, 2 replicas",
            unsized["refused_share"],
            None,
            unit="share",
            note=f"{unsized['failed']} records failed ({unsized['codes']}); {unsized['throughput']:.1f} audio s/s; "
            f"the clients held or opened up to {unsized['client_peak_share']:.1f}x the planned sessions",
        )
        res.series["unsized"] = {k: v for k, v in unsized.items() if k != "stats"}
    res.plots.append(
        plots.scaling(
            ctx.results_dir / "plots" / "fleet_scaling.png",
            list(runs),
            [runs[n]["throughput"] for n in runs],
            [ideal[n] for n in runs],
            f"{shape.workers} simulated workers, stub replicas of {shape.capacity} sessions",
        )
    )

    _replica_memory_figures(res, ctx.quick)
    res.notes.append(
        "Stub replicas run at a fixed speed per session, so a replica's throughput is its sessions x that speed; "
        "the figures show whether the real client pool and the sizing formula keep every replica at the planned "
        "share of its capacity without refusals as the fleet grows. Median records per second: "
        f"{median([r['in_window'] / shape.duration for r in runs.values()]):.0f}."
    )
    return res


def _config(shape: Shape) -> dict[str, Any]:
    return {
        "workers": shape.workers,
        "client_processes": CLIENT_PROCS,
        "capacity_per_replica": shape.capacity,
        "utilisation": UTILISATION,
        "speed_audio_s_per_s_per_session": SPEED,
        "clip_seconds": CLIP_S,
        "warmup_s": shape.warmup,
        "window_s": shape.duration,
        "replicas": list(shape.replicas),
    }


def _replica_memory_figures(res: Result, quick: bool) -> None:
    """A real replica's memory at rest and with streaming sessions, and the slope per session."""
    mem = replica_memory([4, 16] if quick else [8, 32, 64], 2.0 if quick else 3.0)
    res.measure("replica_idle_mib", mem["idle_mib"], "MiB", "voxbeam serve, 2 workers, no session (RSS, tree)")
    for n, v in mem["peaks_mib"].items():
        if n != "0":
            res.measure(f"replica_mib_{n}_sessions", v, "MiB", f"peak RSS with {n} streaming STT sessions")
    res.measure("replica_mib_per_session", mem["mib_per_session"], "MiB", "slope of peak RSS over sessions")
