"""The full synthesis pipeline (``voxbeam.jobs.run("synthesize")`` on the FnApiRunner, against the
run's LocalServer, the default voice ``vl-joe``): characters per second against Piper called
directly (baseline 2) in as many processes as the server has workers, on the same texts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import baselines, corpus, tts
from bench._common import Result, log, median, ratio
from bench._context import Context, JobRun, run_job

NAME = "synthesis"
TARGET_VS_ENGINE = 0.9  # issue 25: no speed cost from bounded renders and memory given back
POOL_SIZE = 8  # --sessions_per_worker default


def run(ctx: Context) -> Result:
    res = Result(NAME, ctx.quick)
    ctx.server()
    procs = ctx.server_workers or ctx.workers
    threads = int(ctx.health().get("threads_per_worker") or 1)
    # Enough work in full mode (about a minute for the baseline on 2 idle cores) that the job's start-up
    # (a few seconds) is amortized; quick mode's figure carries that start-up.
    texts = corpus.texts(20 if ctx.quick else 300, 2)  # 300: ~21,000 characters, ~60 s for the baseline
    chars = sum(map(len, texts))
    src = ctx.workdir / "synthesis-in.txt"
    src.write_text("\n".join(texts) + "\n", encoding="utf-8")
    res.config = _config(len(texts), chars, procs, threads)
    tasks = list(texts)
    argv = _argv(ctx, src)
    with baselines.EnginePool("piper", procs, threads, warm=texts[0]) as pool:
        runs = [pool.run(tasks)]
        job = run_job(ctx, "synthesize", argv)
        if not ctx.quick:
            runs.append(pool.run(tasks))
    alone = tts.server_run(ctx, texts, POOL_SIZE)
    if job.out.get("written") != len(texts):
        res.errors.append(f"the job wrote {job.out.get('written')} of {len(texts)} records: {job.out}")
    b2 = median([chars / r.wall for r in runs])
    b2_eff = median([chars / r.cpu for r in runs])
    tput = res.measure("pipeline_chars_per_s", chars / job.wall, "chars / s", "synthesis job")
    res.measure("pipeline_end_to_end_chars_per_s", chars / job.total_wall, "chars / s", "including start-up")
    res.measure("baseline2_chars_per_s", b2, "chars / s", "baseline 2, every process busy")
    res.measure("pipeline_cpu_s", job.cpu, "CPU s", "pipeline process")
    res.measure("server_cpu_s", job.server_cpu.cpu, "CPU s", "server process tree during the job")
    eff = res.measure(
        "pipeline_chars_per_cpu_s", chars / (job.cpu + job.server_cpu.cpu), "chars / CPU s", "pipeline + server"
    )
    res.measure("baseline2_chars_per_cpu_s", b2_eff, "chars / CPU s", "baseline 2")
    res.measure("pipeline_peak_rss_mib", job.memory.peak_rss / 2**20, "MiB", "pipeline process peak RSS")
    res.measure("server_peak_rss_mib", job.server_memory.peak_rss / 2**20, "MiB", "server tree peak RSS")
    log(f"synthesis: pipeline {tput:.0f} chars/s, baseline 2 {b2:.0f} chars/s")
    res.compare(
        "vs_engine",
        f"synthesis pipeline chars/s vs baseline 2 ({procs} processes)",
        ratio(tput, b2),
        TARGET_VS_ENGINE,
        subject="pipeline_chars_per_s",
        baseline="baseline2_chars_per_s",
    )
    res.measure("server_alone_chars_per_s", alone.chars / alone.wall, "chars / s", "SpeechClient, 8 sessions")
    res.compare(
        "server_alone_vs_engine",
        "server alone (SpeechClient, 8 sessions) vs baseline 2 on the same texts",
        ratio(alone.chars / alone.wall, b2),
        None,
        subject="server_alone_chars_per_s",
        baseline="baseline2_chars_per_s",
    )
    _stages(ctx, res, chars, b2, alone, job)
    res.compare(
        "vs_engine_cpu",
        "synthesis pipeline chars per CPU s (pipeline + server) vs baseline 2",
        ratio(eff, b2_eff),
        None,
        subject="pipeline_chars_per_cpu_s",
        baseline="baseline2_chars_per_cpu_s",
    )
    return res


def _config(records: int, chars: int, procs: int, threads: int) -> dict[str, Any]:
    return {
        "records": records,
        "characters": chars,
        "server_workers": procs,
        "baseline_processes": procs,
        "baseline_threads": threads,
        "voice_id": f"{tts.VOICE_ID} (the default: no --voice_id)",
        "audio_format": "wav",
        "sample_rate": tts.NATIVE_RATE,
        "runner": "FnApiRunner (in the job's own process)",
    }


def _argv(ctx: Context, src: Path) -> list[str]:
    """The synthesis job's arguments: the texts in ``src``, WAV at the voice's own rate."""
    return [
        "--input",
        str(src),
        "--output",
        str(ctx.workdir / "synthesis-out"),
        "--audio_format",
        "wav",
        "--sample_rate",
        str(tts.NATIVE_RATE),  # the voice's own rate: the same audio as baseline 2 (see bench/tts.py)
        *ctx.endpoint_args(),
    ]


def _stages(ctx: Context, res: Result, chars: int, b2: float, alone: tts.SynthRun, job: JobRun) -> None:
    """Wall and CPU time per million characters of each stage, as series and a figure."""
    per_mchar = 1e6 / chars
    wall = {
        "engine directly (baseline 2)": per_mchar * chars / b2,
        "server + client (no Beam)": per_mchar * alone.wall,
        "pipeline job": per_mchar * job.wall,
        "pipeline incl. start-up": per_mchar * job.total_wall,
    }
    server = ctx.server()
    front = job.server_cpu.cpu_of(server.pid)
    cpu = {
        "pipeline process": per_mchar * job.cpu,
        "server front (asyncio)": per_mchar * front,
        "server workers (engines)": per_mchar * (job.server_cpu.cpu - front),
    }
    res.series["stages_wall_s_per_million_chars"] = wall
    res.series["stages_cpu_s_per_million_chars"] = cpu
    from bench import plots

    res.plots.append(
        plots.stages(
            ctx.plots_dir / "synthesis_stages.png", wall, cpu, "Synthesis: time per stage", "million characters"
        )
    )
