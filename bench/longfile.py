"""Memory over time while the transcription pipeline works through one long file (2 hours in
full mode): the pipeline must stream it, never hold it whole.

The long file is sparse speech (a sentence about every 10 s): memory does not depend on what is
said, and sparse speech keeps the server's backlog, and so the run, short. Full mode also sends a
dense 10-minute file (sentences 0.6 s apart) and reports whether it comes out as a transcript.
"""

from __future__ import annotations

import itertools
import wave
from pathlib import Path

from bench import corpus
from bench._common import Result, log, ratio
from bench._context import Context, JobRun, run_job

NAME = "longfile"
TARGET_GROWTH_MB = 300.0
SPARSE_GAP_S = 8.5
DENSE_SECONDS = 600.0


def long_file(path: Path, seconds: float, gap: float) -> corpus.AudioFile:
    """One long WAV of sentences ``gap`` seconds apart, written piece by piece (never held whole)."""
    target = int(seconds * corpus.STT_RATE) * 2
    written = 0
    said: list[str] = []
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(corpus.STT_RATE)
        for sentence in itertools.cycle(corpus.SENTENCES):
            piece = (corpus.sentence_pcm(sentence) + corpus.silence(gap))[: target - written]
            w.writeframes(piece)
            written += len(piece)
            said.append(sentence)
            if written >= target:
                break
    return corpus.AudioFile(str(path), written / 2 / corpus.STT_RATE, " ".join(said))


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f}-second" if seconds < 120 else f"{seconds / 60:.0f}-minute"


def _transcribe(
    ctx: Context, name: str, seconds: float, gap: float, interval: float
) -> tuple[corpus.AudioFile, JobRun]:
    in_dir = ctx.workdir / f"{name}-in"
    in_dir.mkdir(parents=True, exist_ok=True)
    log(f"longfile: {seconds:.0f} s of speech, sentences {gap:g} s apart")
    f = long_file(in_dir / f"{name}.wav", seconds, gap)
    argv = ["--input", str(in_dir), "--output", str(ctx.workdir / f"{name}-out"), *ctx.endpoint_args()]
    job = run_job(ctx, "transcribe", argv, interval=interval)
    Path(f.path).unlink()
    return f, job


def run(ctx: Context) -> Result:
    res = Result(NAME, ctx.quick)
    ctx.server()
    seconds = 20.0 if ctx.quick else 7200.0
    f, job = _transcribe(ctx, "long", seconds, SPARSE_GAP_S, 0.25 if ctx.quick else 2.0)
    res.config = {
        "audio_seconds": round(f.seconds, 1),
        "wav_mib": round(f.seconds * corpus.STT_RATE * 2 / 2**20, 1),
        "sentence_gap_s": SPARSE_GAP_S,
        "note": "quick mode uses a short file; growth there says little about 2 hours",
    }
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
        f"pipeline memory growth on a {_minutes(f.seconds)} file (MB)",
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
            f"Memory over time, one {_minutes(f.seconds)} file",
        )
    )
    if not ctx.quick:
        _dense(ctx, res)
    return res


def _dense(ctx: Context, res: Result) -> None:
    """A dense 10-minute file: the client sends faster than the server recognizes, for minutes."""
    f, job = _transcribe(ctx, "dense", DENSE_SECONDS, 0.6, 1.0)
    written = int(job.out.get("written") or 0)
    res.config["dense_client_stats"] = job.out.get("client_stats", {})
    res.config["dense_dead_letters"] = job.out.get("dead_letters", {})
    res.measure("dense_audio_s_per_s", f.seconds / job.wall, "audio s / s", "dense 10-minute file")
    res.measure("dense_growth_mb", (job.memory.peak_rss - job.rss_ready) / 1e6, "MB", "dense file, pipeline")
    res.compare(
        "dense_transcribed",
        "a dense 10-minute file came out as a transcript (1) rather than a dead letter (0)",
        float(written),
        1.0,
        subject="dense_transcripts_written",
        unit="files",
    )
    if written != 1:
        res.errors.append(f"the dense 10-minute file was not transcribed: {job.out.get('dead_letters')}")
