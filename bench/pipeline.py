"""The transcription pipeline on dense speech (the STT issue's throughput target).

Subject: ``voxbeam.jobs.run("transcribe")`` (FnApiRunner, in a child process) against the run's
LocalServer with its default engine (Whisper tiny.en, int8, one worker per core, one thread each)
on a few files of minutes of continuous speech (``corpus.dense_files``).

Baselines, on the same files in the same run:

- faster-whisper called directly (baseline 1, ``baselines.EnginePool("whisper", ...)``) in each
  configuration of ``baselines.configurations``: the server's layout (as many processes as it has
  workers, as many threads each) and one process with every core. The best one is the baseline
  (target: pipeline >= 0.85 of it); in full mode each configuration runs before and after the job
  and its median counts.
- the same job against a second LocalServer with ``--stt_engine pocketsphinx`` (target: Whisper's
  pipeline >= 3x pocketsphinx's, in audio seconds per second).
- the naive client (baseline 3) on a stretch of the same speech (target >= 10x, from an earlier issue).

Also: CPU per audio second of each side (less sensitive to other load than wall time), how the
work split between the server's workers, each recognition session's wait from ``flush`` to
``flush_done`` against the client's 30 s result timeout, connections per file, time per stage,
and word error rates on the synthetic speech (sanity only: a fast but wrong recognizer would show).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from bench import baselines, corpus, stt
from bench._common import Result, log, median, percentile, ratio
from bench._context import Context, JobRun, run_job

NAME = "pipeline"
TARGET_VS_ENGINE = 0.85
TARGET_VS_POCKETSPHINX = 3.0
TARGET_VS_NAIVE = 10.0
POOL_SIZE = 8  # --sessions_per_worker default
PROBES = 1  # the job's preflight check (key and endpoint, before any record): one connection per endpoint
HOUR = 3600.0
# The job client's default result timeout: after flush it takes this much silence from the service,
# plus the duration of the audio not yet transcribed, before it gives up and retries.
DEFAULT_RESULT_TIMEOUT = 30.0
POCKETSPHINX = ["--stt_engine", "pocketsphinx"]
# Files in the full run's connection count (it was 1,000 with pocketsphinx; see the note in the figure).
MANY_FILES = 120


def dense_seconds(quick: bool) -> list[float]:
    """Lengths of the dense files: a few files of 1-5 minutes (fewer and shorter in quick mode)."""
    return [30.0, 40.0] if quick else [60.0, 120.0, 180.0]


def transcribe_job(
    ctx: Context, input_dir: Path, out_dir: Path, server: Any = None, result_timeout: float | None = None
) -> JobRun:
    argv = ["--input", str(input_dir), "--output", str(out_dir), "--sessions_per_worker", str(POOL_SIZE)]
    return run_job(ctx, "transcribe", argv + ctx.endpoint_args(server), server=server, result_timeout=result_timeout)


def _connections(before: dict[str, object], after: dict[str, object]) -> float:
    a, b = after.get("connections_total"), before.get("connections_total")
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a - b)
    return math.nan


def _texts(job: JobRun, files: list[corpus.AudioFile]) -> list[str]:
    import pyarrow.parquet as pq

    texts: dict[str, str] = {}
    for uri in job.out.get("outputs", []):
        if "/transcripts/" in uri or "transcripts" in Path(uri).parts:
            table = pq.read_table(uri, columns=["source_uri", "text"])
            texts.update(zip(table.column("source_uri").to_pylist(), table.column("text").to_pylist(), strict=True))
    return [next((t for u, t in texts.items() if u.endswith(Path(f.path).name)), "") for f in files]


def _job_figures(res: Result, key: str, what: str, job: JobRun, files: list[corpus.AudioFile], audio_s: float) -> None:
    """Throughput, CPU, memory and WER of one job run, under ``<key>_...``."""
    res.measure(f"{key}_audio_s_per_s", audio_s / job.wall, "audio s / s", f"{what}: transcription job")
    res.measure(f"{key}_wall_s", job.wall, "s", f"{what}: transcription job")
    res.measure(f"{key}_job_cpu_s", job.cpu, "CPU s", f"{what}: pipeline process (Beam, decoding, client)")
    res.measure(f"{key}_server_cpu_s", job.server_cpu.cpu, "CPU s", f"{what}: server process tree during the job")
    res.measure(
        f"{key}_audio_s_per_cpu_s",
        audio_s / (job.cpu + job.server_cpu.cpu),
        "audio s / CPU s",
        f"{what}: pipeline + server CPU together",
    )
    res.measure(f"{key}_server_peak_rss_mib", job.server_memory.peak_rss / 2**20, "MiB", f"{what}: server tree")
    res.measure(f"{key}_peak_rss_mib", job.memory.peak_rss / 2**20, "MiB", f"{what}: pipeline process peak RSS")
    stats = job.out.get("client_stats", {})
    for name in ("retries", "timeouts", "reconnects"):
        res.measure(f"{key}_client_{name}", float(stats.get(name, 0)), name, f"{what}: client counter")
    res.measure(f"{key}_wer", corpus.wer([f.text for f in files], _texts(job, files)), "WER", f"{what} (synthetic)")
    if job.out.get("written") != len(files):
        res.errors.append(
            f"{what}: the job wrote {job.out.get('written')} of {len(files)} transcripts; "
            f"dead letters {job.out.get('dead_letters')}"
        )


def _worker_split(ctx: Context, job: JobRun) -> dict[str, float]:
    """CPU seconds each server worker spent during the job (by pid)."""
    pids = ctx.health().get("worker_pids") or []
    return {str(pid): round(job.server_cpu.cpu_of(int(pid)), 2) for pid in pids}


def run(ctx: Context) -> Result:
    res = Result(NAME, ctx.quick)
    ctx.server()
    procs = ctx.server_workers or ctx.workers
    threads = int(ctx.health().get("threads_per_worker") or 1)
    cores = ctx.workers
    lengths = dense_seconds(ctx.quick)
    in_dir = ctx.workdir / "dense-in"
    log(f"pipeline: rendering {len(lengths)} dense files ({sum(lengths):.0f} s of speech)")
    files = corpus.dense_files(in_dir, lengths)
    audio_s = sum(f.seconds for f in files)
    configs = baselines.configurations(cores, procs)
    res.config = _config(files, audio_s, procs, threads, configs)
    res.notes.append(
        "The measured jobs run with the client's default settings: after flush the client waits for the result "
        f"timeout ({DEFAULT_RESULT_TIMEOUT:g} s) plus the audio not yet transcribed (at real time) before it "
        "retries a file; client timeouts and retries are reported beside throughput."
    )
    warm = corpus.utterance([corpus.SENTENCES[0]])
    pools = [baselines.EnginePool("whisper", p, t, warm=warm) for p, t in configs]
    runs, job, before, after = _job_between_baselines(ctx, pools, in_dir, files, audio_s)
    best_label, best = _baseline1(res, configs, pools, runs, files)

    _job_figures(res, "pipeline", "Whisper pipeline", job, files, audio_s)
    tput = res.value("pipeline_audio_s_per_s")
    res.config["client_stats"] = job.out.get("client_stats", {})
    res.config["dead_letters"] = job.out.get("dead_letters", {})
    split = _worker_split(ctx, job)
    res.config["worker_cpu_s_during_job"] = split
    if len(split) > 1 and max(split.values()) > 0:
        res.measure(
            "worker_balance",
            min(split.values()) / max(split.values()),
            "x",
            "least busy worker's CPU / busiest worker's CPU during the job (1 = even)",
        )
    _vs_baseline1(res, configs, tput, best_label, best)
    _flush_waits(res, job)
    _pocketsphinx(ctx, res, in_dir, files, audio_s, tput)

    # Connections: the server's own count of accepted connections during the job.
    stats = job.out.get("client_stats", {})
    reconnects = float(stats.get("reconnects", 0))
    conns = _connections(before, after)
    res.measure("connections_opened", conns, "connections", f"server connections_total delta, {len(files)} files")
    res.measure("client_connections_opened", float(stats.get("connections_opened", math.nan)), "connections", "")
    _connections_many(ctx, res, conns, len(files), reconnects)

    _naive(ctx, res, tput)
    _stages(ctx, res, files, job, best, audio_s)
    return res


def _config(
    files: list[corpus.AudioFile], audio_s: float, procs: int, threads: int, configs: list[tuple[int, int]]
) -> dict[str, Any]:
    return {
        "files": len(files),
        "file_seconds": [round(f.seconds, 1) for f in files],
        "audio_seconds": round(audio_s, 1),
        "material": f"dense speech: sentences in the default voice {corpus.VOICE_ID}, {corpus.DENSE_PAUSE_S} s apart",
        "server_workers": procs,
        "server_threads_per_worker": threads,
        "baseline_configurations": [f"{p}x{t}" for p, t in configs],
        "baseline_call": "BatchedInferencePipeline(WhisperModel(tiny.en, int8, cpu_threads=T)).transcribe("
        + ", ".join(f"{k}={v!r}" for k, v in baselines.WHISPER_OPTIONS.items())
        + ")",
        "sessions_per_worker": POOL_SIZE,
        "runner": "FnApiRunner (in the job's own process)",
    }


def _job_between_baselines(
    ctx: Context, pools: list[baselines.EnginePool], in_dir: Path, files: list[corpus.AudioFile], audio_s: float
) -> tuple[dict[str, list[baselines.PoolRun]], JobRun, dict[str, Any], dict[str, Any]]:
    """Baseline 1 in every configuration, the Whisper job, and (full mode) baseline 1 again.

    Returns the baseline runs by configuration label, the job, and the server's health before and after it.
    """
    paths = [f.path for f in files]
    runs: dict[str, list[baselines.PoolRun]] = {}
    try:
        for pool in pools:
            pool.__enter__()

        def baseline_pass(when: str) -> None:
            for pool in pools:
                r = pool.run(paths)
                runs.setdefault(pool.label, []).append(r)
                log(f"pipeline: faster-whisper directly, {pool.label} ({when}): {r.units / r.wall:.2f} audio s/s")

        baseline_pass("before")
        before = ctx.health()
        job = transcribe_job(ctx, in_dir, ctx.workdir / "dense-out")
        after = ctx.health()
        log(f"pipeline: job {audio_s / job.wall:.2f} audio s/s ({job.wall:.1f} s)")
        if not ctx.quick:  # again after, so slow drift on the shared machine cancels out
            baseline_pass("after")
    finally:
        for pool in pools:
            pool.__exit__(None, None, None)
    return runs, job, before, after


def _baseline1(
    res: Result,
    configs: list[tuple[int, int]],
    pools: list[baselines.EnginePool],
    runs: dict[str, list[baselines.PoolRun]],
    files: list[corpus.AudioFile],
) -> tuple[str, float]:
    """Baseline 1: every configuration's figures, the best one as the baseline; its key and audio s/s."""
    best_label, best = "", -math.inf
    for (p, t), pool in zip(configs, pools, strict=True):
        label = pool.label
        key = f"direct_{p}x{t}"
        tput = median([r.units / r.wall for r in runs[label]])
        res.measure(f"{key}_audio_s_per_s", tput, "audio s / s", f"faster-whisper directly, {label}")
        res.measure(
            f"{key}_audio_s_per_cpu_s",
            median([r.units / r.cpu for r in runs[label]]),
            "audio s / CPU s",
            f"faster-whisper directly, {label}",
        )
        res.measure(f"{key}_wer", corpus.wer([f.text for f in files], runs[label][0].outputs), "WER", label)
        if tput > best:
            best_label, best = key, tput
    res.config["baseline_best"] = best_label
    res.measure("baseline1_audio_s_per_s", best, "audio s / s", f"baseline 1: the best configuration ({best_label})")
    return best_label, best


def _vs_baseline1(res: Result, configs: list[tuple[int, int]], tput: float, best_label: str, best: float) -> None:
    """The Whisper pipeline against baseline 1: its best configuration, each one, and in CPU time."""
    res.compare(
        "vs_whisper_direct",
        f"transcription pipeline vs faster-whisper called directly ({best_label.removeprefix('direct_')}, "
        "its best configuration), dense speech, audio s/s",
        ratio(tput, best),
        TARGET_VS_ENGINE,
        subject="pipeline_audio_s_per_s",
        baseline="baseline1_audio_s_per_s",
    )
    for p, t in configs:
        key = f"direct_{p}x{t}"
        res.compare(
            f"vs_whisper_direct_{p}x{t}",
            f"transcription pipeline vs faster-whisper directly in {p} process(es) x {t} thread(s)",
            ratio(tput, res.value(f"{key}_audio_s_per_s")),
            None,
            subject="pipeline_audio_s_per_s",
            baseline=f"{key}_audio_s_per_s",
        )
    res.compare(
        "vs_whisper_direct_cpu",
        f"pipeline audio s per CPU s (job + server) vs faster-whisper directly ({best_label.removeprefix('direct_')})",
        ratio(res.value("pipeline_audio_s_per_cpu_s"), res.value(f"{best_label}_audio_s_per_cpu_s")),
        None,
        subject="pipeline_audio_s_per_cpu_s",
        baseline=f"{best_label}_audio_s_per_cpu_s",
        note="less sensitive to other load than wall-clock throughput",
    )


def _pocketsphinx(
    ctx: Context, res: Result, in_dir: Path, files: list[corpus.AudioFile], audio_s: float, tput: float
) -> None:
    """The same job on a second server running pocketsphinx, against the Whisper pipeline's ``tput``."""
    with ctx.other_server(POCKETSPHINX, "pocketsphinx") as ps:
        ps_job = transcribe_job(ctx, in_dir, ctx.workdir / "dense-out-ps", server=ps)
    log(f"pipeline: pocketsphinx job {audio_s / ps_job.wall:.2f} audio s/s ({ps_job.wall:.1f} s)")
    _job_figures(res, "pocketsphinx", "pocketsphinx pipeline", ps_job, files, audio_s)
    res.compare(
        "vs_pocketsphinx",
        "Whisper transcription pipeline vs the same pipeline on `--stt_engine pocketsphinx`, audio s/s",
        ratio(tput, res.value("pocketsphinx_audio_s_per_s")),
        TARGET_VS_POCKETSPHINX,
        subject="pipeline_audio_s_per_s",
        baseline="pocketsphinx_audio_s_per_s",
        note="the two jobs run one after the other; the CPU-time ratio beside it is less sensitive to drift",
    )
    res.compare(
        "vs_pocketsphinx_cpu",
        "Whisper pipeline vs pocketsphinx pipeline, audio s per CPU s (job + server)",
        ratio(res.value("pipeline_audio_s_per_cpu_s"), res.value("pocketsphinx_audio_s_per_cpu_s")),
        None,
        subject="pipeline_audio_s_per_cpu_s",
        baseline="pocketsphinx_audio_s_per_cpu_s",
    )


def _flush_waits(res: Result, job: JobRun) -> None:
    waits = [float(x) for x in job.out.get("flush_waits") or []]
    failed = [float(x) for x in job.out.get("flush_waits_failed") or []]
    res.series["flush_waits_s"] = waits
    if not waits:
        res.errors.append("the job reported no flush waits")
        return
    res.measure("flush_wait_max_s", max(waits + failed), "s", "longest flush -> flush_done in the job")
    res.measure("flush_wait_median_s", median(waits), "s", "median flush -> flush_done in the job")
    res.compare(
        "client_timeouts_in_job",
        "client result timeouts in the Whisper job (each one retries a file from its start)",
        res.value("pipeline_client_timeouts"),
        0.0,
        "<=",
        subject="pipeline_client_timeouts",
        note="the longest flush -> flush_done wait is listed beside it; the client allows the result timeout "
        "plus the audio still owed",
        unit="timeouts",
    )


def _connections_many(ctx: Context, res: Result, conns: float, n_files: int, reconnects: float) -> None:
    bound = POOL_SIZE + reconnects + PROBES
    client_conns = res.value("client_connections_opened")
    if ctx.quick:
        res.compare(
            "connections",
            f"connections opened for {n_files} files (quick mode)",
            conns,
            bound,
            "<=",
            subject="connections_opened",
            unit="connections",
            note=f"target: pool size + reconnects + the job's one preflight probe (client's own count, without the "
            f"probe: {client_conns:.0f})",
        )
        return
    clips = ["Yes.", "No.", "Hello.", "Thank you.", "Good night.", "Okay."]
    many = ctx.workdir / "many-in"
    many.mkdir(parents=True, exist_ok=True)
    n = MANY_FILES
    pcms = [corpus.utterance([clips[i % len(clips)]], pause=0.15) for i in range(len(clips))]
    for i in range(n):
        corpus.write_wav(many / f"t{i:05d}.wav", pcms[i % len(pcms)])
    before = ctx.health()
    job = transcribe_job(ctx, many, ctx.workdir / "many-out")
    after = ctx.health()
    c = _connections(before, after)
    stats = job.out.get("client_stats", {})
    rc = float(stats.get("reconnects", 0))
    res.config["many_files_client_stats"] = stats
    if job.out.get("written") != n:
        res.errors.append(f"{n}-file run wrote {job.out.get('written')} transcripts; {job.out.get('dead_letters')}")
    res.measure("connections_many_files", c, "connections", f"{n} files of about 1 s, server count")
    res.measure("many_files_per_s", n / job.wall, "files / s", f"pipeline on {n} short files")
    res.compare(
        "connections_many",
        f"connections opened for {n} files (the bound does not grow with the number of files)",
        c,
        POOL_SIZE + rc + PROBES,
        "<=",
        subject="connections_many_files",
        unit="connections",
        note=f"target: pool size {POOL_SIZE} + {rc:.0f} reconnects + the job's one preflight probe "
        f"(client's own count, without the probe: {float(stats.get('connections_opened', math.nan)):.0f}); "
        f"{n} files rather than 1,000 to keep the full run's time: Whisper spends about a CPU second on a 1 s "
        "file here (one padded 30 s window each)",
    )


def _naive(ctx: Context, res: Result, tput: float) -> None:
    """Baseline 3 on a stretch of the same dense speech."""
    server = ctx.server()
    seconds = 20.0 if ctx.quick else 45.0
    pcm, text = corpus.dense_pcm(seconds, seed=99)
    path = ctx.workdir / "naive.wav"
    corpus.write_wav(path, pcm)
    f = corpus.AudioFile(str(path), len(pcm) / 2 / corpus.STT_RATE, text)
    ctx.wait_idle()
    naive = baselines.naive_client(server.url, server.api_key, [f], pace=True)
    naive_tput = res.measure("naive_audio_s_per_s", naive.units / naive.wall, "audio s / s", "baseline 3")
    res.measure("naive_wer", corpus.wer([f.text], naive.outputs), "WER", "baseline 3 (live mode)")
    res.measure("naive_flush_median_ms", median(naive.flush_latencies) * 1000, "ms", "baseline 3: flush -> flush_done")
    log(f"pipeline: naive client {naive_tput:.2f} audio s/s")
    res.compare(
        "vs_naive",
        "transcription pipeline audio s/s vs the naive client (baseline 3), dense speech",
        ratio(tput, naive_tput),
        TARGET_VS_NAIVE,
        subject="pipeline_audio_s_per_s",
        baseline="naive_audio_s_per_s",
        note="the naive client streams in real time, so this is about the pipeline's audio s/s; ceiling on this "
        f"machine (engine directly / naive): {ratio(res.value('baseline1_audio_s_per_s'), naive_tput):.1f}x",
    )


def _stages(
    ctx: Context, res: Result, files: list[corpus.AudioFile], job: JobRun, b1_tput: float, audio_s: float
) -> None:
    """Wall time per audio hour of each stage measured alone, and CPU per audio hour by process."""
    from voxbeam import audio

    t0 = time.monotonic()
    for f in files:
        for _ in audio.decode_to_pcm(f.path, rate=corpus.STT_RATE, chunk_ms=200):
            pass
    decode = time.monotonic() - t0
    pcms = [corpus.read_wav(f.path) for f in files]
    alone = stt.server_run(ctx, pcms, POOL_SIZE)
    res.measure("server_alone_audio_s_per_s", alone.units / alone.wall, "audio s / s", "SpeechClient, 8 sessions")
    res.compare(
        "server_alone_vs_engine",
        "server alone (SpeechClient, 8 sessions, no Beam) vs baseline 1 on the same files",
        ratio(alone.units / alone.wall, b1_tput),
        None,
        subject="server_alone_audio_s_per_s",
        baseline="baseline1_audio_s_per_s",
    )
    res.compare(
        "pipeline_vs_server_alone",
        "transcription pipeline vs the server alone (what Beam and the job add)",
        ratio(res.value("pipeline_audio_s_per_s"), alone.units / alone.wall),
        None,
        subject="pipeline_audio_s_per_s",
        baseline="server_alone_audio_s_per_s",
    )
    per_hour = HOUR / audio_s
    wall = {
        "decode (PyAV, 1 thread)": decode * per_hour,
        "faster-whisper directly (baseline 1)": HOUR / b1_tput,
        "server + client (no Beam)": alone.wall * per_hour,
        "pipeline job": job.wall * per_hour,
        "pipeline incl. start-up": job.total_wall * per_hour,
    }
    server = ctx.server()
    front = job.server_cpu.cpu_of(server.pid)
    cpu = {
        "pipeline process": job.cpu * per_hour,
        "server front (asyncio)": front * per_hour,
        "server workers (engines)": (job.server_cpu.cpu - front) * per_hour,
    }
    res.series["stages_wall_s_per_audio_hour"] = wall
    res.series["stages_cpu_s_per_audio_hour"] = cpu
    res.series["file_walls_server_alone"] = alone.file_walls
    res.measure("server_alone_file_wall_p95_s", percentile(alone.file_walls, 95), "s", "per file, server alone")
    from bench import plots

    res.plots.append(plots.stages(ctx.plots_dir / "pipeline_stages.png", wall, cpu, "Transcription: time per stage"))
    res.plots.append(
        plots.bars(
            ctx.plots_dir / "pipeline_vs_baselines.png",
            {
                **{
                    f"faster-whisper directly {c}": res.value(f"direct_{c}_audio_s_per_s")
                    for c in res.config["baseline_configurations"]
                },
                "Whisper pipeline (VoxBeam)": res.value("pipeline_audio_s_per_s"),
                "server alone (no Beam)": alone.units / alone.wall,
                "pocketsphinx pipeline (VoxBeam)": res.value("pocketsphinx_audio_s_per_s"),
                "naive client": res.value("naive_audio_s_per_s"),
            },
            "audio seconds per wall second",
            f"Dense speech, {audio_s / 60:.0f} minutes in {len(files)} files",
        )
    )
    res.plots.append(
        plots.memory(
            ctx.plots_dir / "pipeline_memory.png",
            {"pipeline": job.memory.series(), "server": job.server_memory.series()},
            f"Memory during the transcription job ({len(files)} dense files)",
        )
    )
