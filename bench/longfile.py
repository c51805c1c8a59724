"""Memory over time while the transcription pipeline works through one long file (2 hours in
full mode): the pipeline must stream it, never hold it whole.
"""

from __future__ import annotations

from bench import corpus
from bench._common import Result, log, ratio
from bench._context import Context, run_job

NAME = "longfile"
TARGET_GROWTH_MB = 300.0


def run(ctx: Context) -> Result:
    res = Result(NAME, ctx.quick)
    ctx.server()
    seconds = 30.0 if ctx.quick else 7200.0
    in_dir = ctx.workdir / "long-in"
    in_dir.mkdir(parents=True, exist_ok=True)
    log(f"longfile: writing {seconds:.0f} s of speech")
    f = corpus.long_file(in_dir / "long.wav", seconds)
    res.config = {
        "audio_seconds": round(f.seconds, 1),
        "wav_mib": round(f.seconds * corpus.STT_RATE * 2 / 2**20, 1),
        "note": "quick mode uses a short file; growth there says little about 2 hours",
    }
    argv = ["--input", str(in_dir), "--output", str(ctx.workdir / "long-out"), *ctx.endpoint_args()]
    job = run_job(ctx, "transcribe", argv, interval=0.25 if ctx.quick else 2.0)
    written = int(job.out.get("written") or 0)
    res.config["client_stats"] = job.out.get("client_stats", {})
    res.config["dead_letters"] = job.out.get("dead_letters", {})
    if written != 1:
        res.errors.append(f"the long file was not transcribed: dead letters {job.out.get('dead_letters')}")
        res.notes.append("The job failed on the file, so the memory figures cover its failed attempts only.")
    res.compare(
        "transcribed",
        "the long file came out as a transcript (1) rather than a dead letter (0)",
        float(written),
        1.0,
        subject="transcripts_written",
        unit="files",
    )
    peak = job.memory.peak_rss
    growth_mb = (peak - job.rss_ready) / 1e6
    res.measure("audio_seconds", f.seconds, "s", "length of the file")
    res.measure("pipeline_ready_rss_mib", job.rss_ready / 2**20, "MiB", "job process after imports, before the run")
    res.measure("pipeline_peak_rss_mib", peak / 2**20, "MiB", "job process peak")
    res.measure("pipeline_growth_mb", growth_mb, "MB", "peak minus RSS before the run")
    res.measure("server_peak_rss_mib", job.server_memory.peak_rss / 2**20, "MiB", "server tree peak")
    res.measure("pipeline_audio_s_per_s", f.seconds / job.wall, "audio s / s", "throughput on the long file")
    rss = [s.rss for s in job.memory.samples]
    if len(rss) >= 8:
        # Growth over the second half tells a leak (still rising) from a plateau.
        half = len(rss) // 2
        res.measure(
            "pipeline_second_half_growth_mb", (max(rss[half:]) - max(rss[:half])) / 1e6, "MB", "later - earlier peak"
        )
    res.compare(
        "memory_growth",
        f"pipeline memory growth on a {f.seconds / 60:.0f}-minute file (MB)",
        growth_mb,
        TARGET_GROWTH_MB,
        "<=",
        subject="pipeline_growth_mb",
        unit="MB",
        note="peak RSS of the job process minus its RSS after imports",
    )
    res.compare(
        "growth_vs_file",
        "pipeline memory growth / size of the file as PCM",
        ratio(growth_mb * 1e6, f.seconds * corpus.STT_RATE * 2),
        None,
        "<=",
        subject="pipeline_growth_mb",
        note="informational: 1.0 would mean the whole file held in memory",
    )
    res.series["memory"] = {"pipeline": job.memory.series(), "server": job.server_memory.series()}
    from bench import plots

    res.plots.append(
        plots.memory(
            ctx.plots_dir / "longfile_memory.png",
            res.series["memory"],
            f"Memory over time, one {f.seconds / 60:.0f}-minute file",
        )
    )
    return res
