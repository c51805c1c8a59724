"""Server STT (default engine: Whisper tiny.en): throughput at 1/2/8/32 concurrent sessions
against faster-whisper called directly (baseline 1) in as many processes as the server has
workers, with as many threads each and the same number of files in flight; client and server
CPU; real-time factor per file; flush latency after 10 s of real-time speech (live mode); server
memory (RSS of the front and the workers) with 16 sessions streaming minutes of audio (bulk).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from bench import baselines, corpus
from bench._common import CpuMeter, MemSampler, Result, log, median, percentile, ratio
from bench._context import Context

NAME = "stt"
TARGET_THROUGHPUT = 0.85
TARGET_CLIENT_CPU = 0.02
TARGET_FLUSH_P95_MS = 250.0
TARGET_MEMORY_GIB = 1.5
MEMORY_SESSIONS = 16
FLUSH_PAUSE_S = 0.5  # between sentences: a speaker reading, not a single breathless utterance


@dataclass
class ClientRun:
    wall: float
    client_cpu: float
    server_cpu: float
    units: float
    outputs: list[str]
    file_walls: list[float]
    stats: dict[str, int]
    server_peak_rss: float


async def _transcribe_all(cfg: Any, pcms: Sequence[bytes], concurrency: int, server_pid: int) -> ClientRun:
    """Transcribe every PCM with ``concurrency`` requests in flight on one SpeechClient."""
    from voxbeam.client import SpeechClient

    outputs: list[str] = [""] * len(pcms)
    walls: list[float] = [0.0] * len(pcms)
    async with SpeechClient(cfg) as client:
        # Warm-up: open the sessions the run will use, so both sides start with engines loaded.
        await asyncio.gather(*(client.transcribe(corpus.silence(0.3)) for _ in range(concurrency)))
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(len(pcms)):
            queue.put_nowait(i)

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                t0 = time.monotonic()
                result = await client.transcribe(pcms[i], sample_rate=corpus.STT_RATE, timestamps=True)
                walls[i] = time.monotonic() - t0
                outputs[i] = result.text

        meter = CpuMeter([server_pid]).start()
        with MemSampler([server_pid], interval=0.5) as mem:
            c0, t0 = time.process_time(), time.monotonic()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            wall, client_cpu = time.monotonic() - t0, time.process_time() - c0
        server_cpu = meter.stop()
        stats = client.stats()
    return ClientRun(
        wall=wall,
        client_cpu=client_cpu,
        server_cpu=server_cpu,
        units=sum(len(p) for p in pcms) / 2 / corpus.STT_RATE,
        outputs=outputs,
        file_walls=walls,
        stats=stats,
        server_peak_rss=mem.peak_rss,
    )


# The server-alone runs measure the server's throughput, not the client's give-up policy: on a
# loaded shared machine a 32-session backlog can keep a session silent past the default 30 s.
PATIENT = {"ready": 60.0, "result": 120.0}


def server_run(ctx: Context, pcms: Sequence[bytes], concurrency: int, timeouts: Any = None) -> ClientRun:
    from voxbeam.client import Timeouts

    server = ctx.server()
    ctx.wait_idle()
    config = ctx.client_config(pool_size=concurrency, timeouts=timeouts or Timeouts(**PATIENT))
    return asyncio.run(_transcribe_all(config, pcms, concurrency, server.pid))


def levels(quick: bool) -> dict[int, int]:
    """Concurrent sessions -> files transcribed at that level (at least one file per session)."""
    return {1: 2, 8: 8} if quick else {1: 4, 2: 6, 8: 16, 32: 32}


def run(ctx: Context) -> Result:
    res = Result(NAME, ctx.quick)
    ctx.server()
    procs = ctx.server_workers or ctx.workers
    threads = int(ctx.health().get("threads_per_worker") or 1)
    plan = levels(ctx.quick)
    reps = 1
    # Quick mode: one short phrase per file (about 1.3 s); full mode: two sentences (about 4.5 s).
    sentences = 1 if ctx.quick else 2
    material = corpus.SHORT if ctx.quick else corpus.SENTENCES
    pause = 0.25 if ctx.quick else 0.4
    files = corpus.make_files(ctx.workdir / "stt", max(plan.values()), sentences, "stt", material, pause)
    pcms = [corpus.read_wav(f.path) for f in files]
    res.config = _config(procs, threads, plan, sentences, files, reps)
    res.notes.append(
        f"SpeechClient timeouts in these runs: {PATIENT} (defaults: ready 10 s, result 30 s), so that a backlog on "
        "a loaded machine is measured as slow rather than as failed; retries made are counted per level."
    )
    res.notes.append(
        "Baseline 1 at c sessions: faster-whisper's batched pipeline called directly in a pool of as many processes "
        "as the server has workers, with the same threads each, and at most c files in flight (one session streams "
        "to one worker at a time, so at c=1 neither side can use more than one process). The ratio against the full "
        "pool (every process busy) is listed too. Each file is a short recording decoded on its own: per-file costs "
        "(VAD, one 30 s encoder window) dominate; the dense-speech figures are in the pipeline benchmark."
    )
    measured: dict[int, tuple[float, float, ClientRun]] = {}
    client_cpu = server_cpu = 0.0
    warm = pcms[0]
    with baselines.EnginePool("whisper", procs, threads, warm=warm) as pool:
        for c, n in plan.items():
            level = _level(ctx, res, pool, plan, c, files[:n], pcms[:n], procs, reps)
            client_cpu += level.client_cpu
            server_cpu += level.server_cpu
            if level.measured is not None:
                measured[c] = level.measured
    _vs_full_pool(res, plan, measured, files)
    res.measure("client_cpu_s", client_cpu, "CPU s", "SpeechClient process CPU over all levels")
    res.measure("server_cpu_s", server_cpu, "CPU s", "server process tree CPU over all levels")
    res.compare(
        "client_cpu_share",
        "client CPU / server CPU (SpeechClient streaming, all levels)",
        ratio(client_cpu, server_cpu),
        TARGET_CLIENT_CPU,
        "<=",
        subject="client_cpu_s",
        baseline="server_cpu_s",
    )
    for step in (_flush_latency, _memory):
        try:
            step(ctx, res)
        except Exception as exc:
            res.errors.append(f"{step.__name__.strip('_')} failed: {type(exc).__name__}: {exc}")
            log(f"stt: {step.__name__} FAILED: {exc!r}")
    _plot(ctx, res)
    return res


def _config(
    procs: int, threads: int, plan: dict[int, int], sentences: int, files: list[corpus.AudioFile], reps: int
) -> dict[str, Any]:
    return {
        "server_workers": procs,
        "server_threads_per_worker": threads,
        "baseline_processes": procs,
        "baseline_threads": threads,
        "baseline_call": "BatchedInferencePipeline(WhisperModel(tiny.en, int8, cpu_threads=T)).transcribe("
        + ", ".join(f"{k}={v!r}" for k, v in baselines.WHISPER_OPTIONS.items())
        + ")",
        "material": f"sentences in the default voice {corpus.VOICE_ID}",
        "levels": {str(k): v for k, v in plan.items()},
        "sentences_per_file": sentences,
        "mean_file_seconds": round(sum(f.seconds for f in files) / len(files), 3),
        "repeats": reps,
    }


class _Level(NamedTuple):
    measured: tuple[float, float, ClientRun] | None  # server and baseline 1 audio s/s, the last server run
    client_cpu: float
    server_cpu: float


def _level(
    ctx: Context,
    res: Result,
    pool: baselines.EnginePool,
    plan: dict[int, int],
    c: int,
    files: list[corpus.AudioFile],
    subset: list[bytes],
    procs: int,
    reps: int,
) -> _Level:
    """Baseline 1 and the server at ``c`` sessions on ``files`` (whose audio is ``subset``), and their
    figures; ``measured`` is None when the server failed at this level."""
    n = len(files)
    paths = [f.path for f in files]
    client_cpu = server_cpu = 0.0
    base_t: list[float] = []
    serv_t: list[float] = []
    base_rtf: list[float] = []
    last: ClientRun | None = None
    for _ in range(reps):
        b = pool.run(paths, in_flight=min(c, procs))
        base_t.append(b.units / b.wall)
        base_rtf += [w / u for w, u in zip(b.task_walls, b.task_units, strict=True)]
        if c == max(plan):
            res.measure("baseline1_wer", corpus.wer([f.text for f in files], b.outputs), "WER", "")
        log(f"stt c={c}: baseline {base_t[-1]:.2f} audio s/s")
        try:
            last = server_run(ctx, subset, c)
        except Exception as exc:  # a failed level is reported, the others still run
            res.errors.append(f"server at {c} sessions failed: {type(exc).__name__}: {exc}")
            log(f"stt c={c}: server FAILED: {exc!r}")
            break
        serv_t.append(last.units / last.wall)
        log(f"stt c={c}: server {serv_t[-1]:.2f} audio s/s")
        client_cpu += last.client_cpu
        server_cpu += last.server_cpu
    bt = median(base_t)
    res.measure(f"baseline1_c{c}_audio_s_per_s", bt, "audio s / s", f"baseline 1, {min(c, procs)} files in flight")
    res.measure(f"baseline1_c{c}_rtf_median", median(base_rtf), "x", "baseline 1 wall / audio per file")
    if last is None or not serv_t:
        return _Level(None, client_cpu, server_cpu)
    st = median(serv_t)
    _server_figures(res, c, n, procs, st, bt, last, b, subset)
    return _Level((st, bt, last), client_cpu, server_cpu)


def _server_figures(
    res: Result,
    c: int,
    n: int,
    procs: int,
    st: float,
    bt: float,
    last: ClientRun,
    b: baselines.PoolRun,
    subset: list[bytes],
) -> None:
    """The server's figures at ``c`` sessions (``st`` audio s/s) against baseline 1 (``bt``, last run ``b``)."""
    res.measure(f"server_c{c}_audio_s_per_s", st, "audio s / s", f"server, {c} sessions, {n} files")
    res.measure(
        f"server_c{c}_audio_s_per_server_cpu_s",
        last.units / last.server_cpu if last.server_cpu else math.nan,
        "audio s / CPU s",
        f"server efficiency at {c} sessions (server process tree CPU)",
    )
    rtf = [w / (len(p) / 2 / corpus.STT_RATE) for w, p in zip(last.file_walls, subset, strict=True)]
    res.measure(f"server_c{c}_rtf_median", median(rtf), "x", f"wall / audio per file at {c} sessions")
    res.measure(f"server_c{c}_rtf_p95", percentile(rtf, 95), "x", f"p95 wall / audio per file at {c} sessions")
    res.measure(f"server_c{c}_peak_rss_mib", last.server_peak_rss / 2**20, "MiB", f"server RSS at {c} sessions")
    res.measure(f"server_c{c}_client_retries", float(last.stats.get("retries", 0)), "retries", "client retries")
    res.measure(f"baseline1_c{c}_audio_s_per_cpu_s", b.units / b.cpu, "audio s / CPU s", "baseline 1 efficiency")
    res.compare(
        f"cpu_efficiency_c{c}",
        f"server audio s per CPU s (whole server tree) vs baseline 1 at {c} sessions",
        ratio(res.value(f"server_c{c}_audio_s_per_server_cpu_s"), b.units / b.cpu),
        None,
        subject=f"server_c{c}_audio_s_per_server_cpu_s",
        baseline=f"baseline1_c{c}_audio_s_per_cpu_s",
        note="less sensitive to other load than wall-clock throughput",
    )
    res.compare(
        f"throughput_c{c}",
        f"server STT throughput at {c} sessions vs baseline 1 ({min(c, procs)} in flight, {procs} processes)",
        ratio(st, bt),
        TARGET_THROUGHPUT,
        subject=f"server_c{c}_audio_s_per_s",
        baseline=f"baseline1_c{c}_audio_s_per_s",
    )


def _vs_full_pool(
    res: Result,
    plan: dict[int, int],
    measured: dict[int, tuple[float, float, ClientRun]],
    files: list[corpus.AudioFile],
) -> None:
    """Each level against baseline 1 with every process busy; the throughput curves and the server's WER."""
    full = res.value(f"baseline1_c{max(plan)}_audio_s_per_s")  # c >= processes: every process busy
    curves: dict[str, list[float]] = {"sessions": [], "server": [], "baseline": [], "baseline_full_pool": []}
    for c, (st, bt, _) in measured.items():
        res.compare(
            f"throughput_c{c}_vs_full_pool",
            f"server STT throughput at {c} sessions vs baseline 1 with every process busy",
            ratio(st, full),
            None,
            subject=f"server_c{c}_audio_s_per_s",
            baseline=f"baseline1_c{max(plan)}_audio_s_per_s",
        )
        curves["sessions"].append(c)
        curves["server"].append(st)
        curves["baseline"].append(bt)
        curves["baseline_full_pool"].append(full)
    top = measured.get(max(plan))
    if top is not None:
        last = top[2]
        res.measure("server_wer", corpus.wer([f.text for f in files], last.outputs), "WER", "server WER")
    res.series["throughput"] = curves
    res.series["rtf_median"] = {str(c): res.value(f"server_c{c}_rtf_median") for c in measured}


# ---------------------------------------------------------------------------


def _ten_seconds(pause: float) -> bytes:
    """Exactly 10 s of sentences ``pause`` seconds apart (the last one cut where the 10 s end)."""
    pcm = b""
    i = 0
    size = 10 * corpus.STT_RATE * 2
    while len(pcm) < size:
        pcm += corpus.sentence_pcm(corpus.SENTENCES[i % len(corpus.SENTENCES)]) + corpus.silence(pause)
        i += 1
    return pcm[:size]


def _flush_round(ctx: Context, pcm: bytes, rounds: int) -> list[float]:
    """flush -> flush_done (ms) for ``procs`` staggered real-time streams of ``pcm``, ``rounds`` times."""
    from urllib.parse import quote

    from voxbeam import protocol

    server = ctx.server()
    procs = ctx.server_workers or ctx.workers
    url = f"{server.url}{protocol.STT_PATH}?token={quote(server.api_key, safe='')}"
    latencies: list[float] = []

    async def stream(delay: float) -> float:
        await asyncio.sleep(delay)
        _, flush = await baselines._naive_one(url, pcm, pace=True)
        return flush

    async def main() -> None:
        for _ in range(rounds):
            # Staggered so flushes do not all land at the same instant.
            got = await asyncio.gather(*(stream(i * 10.0 / procs / 2) for i in range(procs)))
            latencies.extend(got)

    ctx.wait_idle()
    asyncio.run(main())
    return [x * 1000 for x in latencies]


def _flush_latency(ctx: Context, res: Result) -> None:
    """flush -> flush_done after 10 s of speech streamed in real time, ``procs`` streams at once."""
    procs = ctx.server_workers or ctx.workers
    rounds = 1 if ctx.quick else 3
    log(f"stt: flush latency, {rounds} round(s) of {procs} real-time streams of 10 s")
    ms = _flush_round(ctx, _ten_seconds(FLUSH_PAUSE_S), rounds)
    res.series["flush_ms"] = ms
    p95 = res.measure("flush_p95_ms", percentile(ms, 95), "ms", f"flush -> flush_done p95 ({len(ms)} streams)")
    res.measure("flush_median_ms", median(ms), "ms", "flush -> flush_done median")
    res.compare(
        "flush_p95",
        f"flush -> flush_done p95 after 10 s of real-time speech, {procs} streams at once (ms)",
        p95,
        TARGET_FLUSH_P95_MS,
        "<=",
        subject="flush_p95_ms",
        unit="ms",
        note=f"sentences {FLUSH_PAUSE_S} s apart; the last one is cut where the 10 s end",
    )
    if not ctx.quick:
        # Continuous speech: pauses too short to end an utterance, so flush finds 10 s still open.
        cont = _flush_round(ctx, _ten_seconds(0.1), 1)
        res.series["flush_continuous_ms"] = cont
        res.measure(
            "flush_continuous_median_ms", median(cont), "ms", "flush -> flush_done, continuous speech (0.1 s pauses)"
        )


def _memory(ctx: Context, res: Result) -> None:
    """Server memory (RSS of the front and every worker, summed; PSS beside) with 16 STT sessions
    streaming minutes of dense speech at once, as fast as the server takes it (bulk)."""
    from voxbeam.client import Timeouts

    server = ctx.server()
    n = MEMORY_SESSIONS
    seconds = 10.0 if ctx.quick else 60.0
    clips = [corpus.dense_pcm(seconds, seed=100 + i)[0] for i in range(n)]
    before = ctx.health()
    log(f"stt: memory, {n} sessions streaming {seconds:.0f} s of dense speech each")
    patient = Timeouts(ready=60.0, result=900.0, record=3600.0)
    with MemSampler([server.pid], interval=0.5, pss=True) as mem:
        run_ = server_run(ctx, clips, n, timeouts=patient)
    after = ctx.health()
    peak_pss, peak_rss = mem.peak_pss, mem.peak_rss
    res.measure("server_16_peak_rss_mib", peak_rss / 2**20, "MiB", "server tree RSS peak (front + workers, summed)")
    res.measure("server_16_peak_pss_mib", peak_pss / 2**20, "MiB", "server tree PSS peak (shared pages split)")
    res.measure("server_16_idle_rss_mib", mem.samples[0].rss / 2**20, "MiB", "server tree RSS before the sessions")
    res.measure("server_16_audio_s_per_s", run_.units / run_.wall, "audio s / s", f"server throughput at {n} sessions")
    peak_streaming = after.get("peak_streaming_stt")
    if isinstance(peak_streaming, int | float):
        res.measure("server_peak_streaming_stt", float(peak_streaming), "sessions", "server's own peak streaming count")
    res.series["memory_16"] = mem.series()
    res.config["memory_16"] = {
        "sessions": n,
        "seconds_per_session": round(len(clips[0]) / 2 / corpus.STT_RATE, 1),
        "health_before": before,
        "health_after": after,
    }
    res.compare(
        "memory_16_sessions",
        f"server memory with {n} concurrent STT sessions streaming {seconds:.0f} s of audio each (GiB, RSS of the "
        "front and the workers, summed)",
        peak_rss / 2**30,
        TARGET_MEMORY_GIB,
        "<=",
        subject="server_16_peak_rss_mib",
        unit="GiB",
        note=f"PSS (shared pages split between processes): {peak_pss / 2**30:.2f} GiB; idle before: "
        f"{mem.samples[0].rss / 2**30:.2f} GiB. A bulk session's audio waits in its worker until its flush "
        "(up to 330 s, 10.6 MB), so memory grows with the length of the files, not only their number",
    )


def _plot(ctx: Context, res: Result) -> None:
    from bench import plots

    curves = res.series.get("throughput")
    if curves:
        res.plots.append(plots.throughput(ctx.plots_dir / "stt_throughput.png", curves, "STT", "audio s / wall s"))
    mem = res.series.get("memory_16")
    if mem:
        res.plots.append(
            plots.memory(
                ctx.plots_dir / "stt_memory_16.png",
                {"server": {"t": mem["t"], "rss_mib": mem["rss_mib"]}, "server (PSS)": mem},
                f"Server memory, {MEMORY_SESSIONS} STT sessions streaming (bulk)",
            )
        )
