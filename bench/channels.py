"""Stereo calls of two real people (issue 28's floors for ``--channels``): words on the right channel, no word
twice, per-channel WER next to each speaker's clips transcribed alone, and the cost of a split call against
its mono mix.

A call (``call``) interleaves the turns of speaker A (channel 0) and speaker B (channel 1) from the human
corpus (``bench/human_corpus.py``, real recordings of different people), a pause between turns; each channel
also carries the other side at -20 dB (``BLEED_DB``), as crosstalk does on real lines. The tests build a short
one from the ``ci`` subset (``tests/beam/test_channels.py``); this benchmark a call of over 2 minutes.

The job (``voxbeam transcribe``, Whisper tiny.en on the run's server) transcribes, in one run:

- the call with ``--channels split``, and again with ``--channels mix`` (the baseline for cost: the server's
  worker CPU seconds, and wall time, split over mix; floor 1.3 for a call of 2 minutes or more);
- each turn's clip alone (the baseline for WER: per speaker, the clips' hypotheses joined, against their
  references joined; floor: the channel's WER at most that plus 0.02);
- a duplicated-mono copy of the call's mix with ``--channels auto`` (must not be split: one stream).

Words on the right channel: a word's channel is the channel of the turn its middle falls in (the nearest
turn, in a pause); floor 99 %. Duplicates: two same words (after normalisation) on two channels overlapping
in time; floor none.
"""

from __future__ import annotations

import math
import wave
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench import human_corpus, wer
from bench._common import Result, log
from bench._context import Context, run_job
from bench.accuracy import read_transcripts, read_wav

NAME = "channels"
RATE = 16000
BLEED_DB = -20.0
GAP_S = 0.6
TARGET_RIGHT_CHANNEL = 0.99
TARGET_WER_SLACK = 0.02
TARGET_COST = 1.3
_OVERLAP_SLACK_MS = 200


@dataclass(frozen=True)
class Turn:
    channel: int
    start_ms: int
    end_ms: int
    clip: human_corpus.Clip


@dataclass(frozen=True)
class Call:
    """Two channels of interleaved turns (samples x 2, int16), and the turns."""

    audio: np.ndarray
    turns: tuple[Turn, ...]

    def clips(self, channel: int) -> list[human_corpus.Clip]:
        return [t.clip for t in self.turns if t.channel == channel]

    def reference(self, channel: int) -> str:
        return " ".join(c.text for c in self.clips(channel))

    @property
    def duration_s(self) -> float:
        return len(self.audio) / RATE


def call(a: Sequence[human_corpus.Clip], b: Sequence[human_corpus.Clip], *, bleed_db: float = BLEED_DB) -> Call:
    """A's clips on channel 0 and B's on channel 1, turn about (A first), ``GAP_S`` apart, each side's voice
    also on the other channel at ``bleed_db``."""
    order = [(0, c) for c in a]
    for i, c in enumerate(b):
        order.insert(2 * i + 1, (1, c))
    gap = np.zeros(int(GAP_S * RATE), dtype=np.float32)
    sides: list[list[np.ndarray]] = [[gap], [gap]]
    turns: list[Turn] = []
    at = len(gap)
    for channel, clip in order:
        voice = read_wav(clip.path)
        sides[channel] += [voice, gap]
        sides[1 - channel] += [np.zeros_like(voice), gap]
        turns.append(Turn(channel, at * 1000 // RATE, (at + len(voice)) * 1000 // RATE, clip))
        at += len(voice) + len(gap)
    own = np.stack([np.concatenate(sides[0]), np.concatenate(sides[1])], axis=1)
    mixed = own + own[:, ::-1] * 10 ** (bleed_db / 20)
    return Call(np.clip(mixed * 32767, -32768, 32767).astype("<i2"), tuple(turns))


def write_wav(path: Path, samples: np.ndarray) -> Path:
    """A 16 kHz 16-bit WAV of ``samples`` (samples, or samples x channels)."""
    frames = samples if samples.ndim == 2 else samples[:, None]
    with wave.open(str(path), "wb") as w:
        w.setnchannels(frames.shape[1])
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(np.ascontiguousarray(frames, dtype="<i2").tobytes())
    return path


def duplicated_mono(c: Call) -> np.ndarray:
    """The call's mix on both channels: a duplicated-mono file."""
    mono = (c.audio.astype(np.int32).sum(axis=1) // 2).astype("<i2")
    return np.stack([mono, mono], axis=1)


def expected_channel(c: Call, word: Mapping[str, Any]) -> int:
    """The channel of the turn a word's middle falls in (else the nearest turn)."""
    mid = int(word["offset_ms"]) + int(word["duration_ms"]) // 2
    return min(
        c.turns, key=lambda t: 0 if t.start_ms <= mid < t.end_ms else min(abs(mid - t.start_ms), abs(mid - t.end_ms))
    ).channel


def right_channel_share(c: Call, words: Sequence[Mapping[str, Any]]) -> float:
    if not words:
        return 0.0
    return sum(w["channel"] == expected_channel(c, w) for w in words) / len(words)


def duplicates(words: Iterable[Mapping[str, Any]]) -> int:
    """Pairs of same words (normalised) on different channels whose spans overlap (give or take 200 ms)."""
    keyed = sorted(
        (
            (
                int(w["offset_ms"]),
                int(w["offset_ms"]) + int(w["duration_ms"]),
                w["channel"],
                " ".join(wer.words(w["word"])),
            )
            for w in words
        ),
    )
    found = 0
    for i, (_start, end, channel, key) in enumerate(keyed):
        for s2, _e2, ch2, k2 in keyed[i + 1 :]:
            if s2 > end + _OVERLAP_SLACK_MS:
                break
            found += bool(key) and ch2 != channel and k2 == key
    return found


def channel_text(words: Iterable[Mapping[str, Any]], channel: int) -> str:
    return " ".join(str(w["word"]) for w in words if w["channel"] == channel)


def channel_wer(c: Call, words: Sequence[Mapping[str, Any]], channel: int) -> wer.Score:
    return wer.score(c.reference(channel), channel_text(words, channel))


def alone_wer(c: Call, channel: int, hyps: Mapping[str, str]) -> wer.Score:
    """The WER of the channel's clips transcribed alone (``hyps``: clip id -> text), joined as the channel is."""
    clips = c.clips(channel)
    return wer.score(" ".join(x.text for x in clips), " ".join(hyps[x.id] for x in clips))


def _speakers(quick: bool) -> tuple[list[human_corpus.Clip], list[human_corpus.Clip]]:
    """Quick: the tests' short call (the Sense and Sensibility reader, Allison Smith). Full: the sonnets' reader
    and Allison Smith's four longest prompts, over 5 minutes of turns; each side one voice in one room, as a
    call's side is (the MFA author's three clips are two rooms, one with a cold: a window that joined them
    garbled the second's first sentence, which a side of one recording does not do)."""
    clips = human_corpus.load("ci" if quick else "full")

    def of(speaker: str) -> list[human_corpus.Clip]:
        return sorted((c for c in clips if c.speaker == speaker), key=lambda c: c.id)

    allison = sorted(of("allison-smith"), key=lambda c: (-c.duration, c.id))
    if quick:
        return of("librivox-sense-and-sensibility-reader")[:3], allison[:3]
    return of("librivox-sonnets-reader"), allison[:4]


def _job(ctx: Context, source: Path, out: Path, channels: str) -> tuple[list[dict[str, Any]], Any]:
    run = run_job(
        ctx, "transcribe", ["--input", str(source), "--output", str(out), "--channels", channels, *ctx.endpoint_args()]
    )
    return read_transcripts(out), run


def run(ctx: Context) -> Result:
    res = Result(NAME, ctx.quick)
    a, b = _speakers(ctx.quick)
    c = call(a, b)
    work = ctx.workdir / "channels"
    (work / "alone").mkdir(parents=True, exist_ok=True)
    call_wav = write_wav(work / "call.wav", c.audio)
    mono_wav = write_wav(work / "mono.wav", duplicated_mono(c))
    by_name = {}
    for i, t in enumerate(c.turns):
        by_name[f"turn-{i:02d}.wav"] = t.clip
        write_wav(work / "alone" / f"turn-{i:02d}.wav", (read_wav(t.clip.path) * 32767).astype("<i2"))
    # Each side alone as a mono file (its turns at their times, no crosstalk): the same long stream a channel
    # is, without channels; the service's VAD and windows meet it as they meet the channel's.
    own = call(a, b, bleed_db=-math.inf)
    for channel in (0, 1):
        write_wav(work / "alone" / f"own-{channel}.wav", np.ascontiguousarray(own.audio[:, channel]))
    res.config = {
        "call_seconds": round(c.duration_s, 1),
        "turns": len(c.turns),
        "speakers": [a[0].speaker, b[0].speaker],
        "bleed_db": BLEED_DB,
        "model": "server default (Whisper tiny.en)",
    }
    log(f"channels: a {c.duration_s:.0f} s call of {len(c.turns)} turns ({a[0].speaker} | {b[0].speaker})")

    # Cost: split and mix of the same call, alternated (twice each in full mode), the server's CPU.
    split_cpu, mix_cpu, split_wall, mix_wall, split_total, mix_total = [], [], [], [], [], []
    rounds = 1 if ctx.quick else 2
    for r in range(rounds):
        mixed, m = _job(ctx, call_wav, work / f"out_mix{r}", "mix")
        split_rows, s = _job(ctx, call_wav, work / f"out_split{r}", "split")
        mix_cpu.append(m.server_cpu.cpu)
        split_cpu.append(s.server_cpu.cpu)
        mix_total.append(m.server_cpu.cpu + m.cpu)
        split_total.append(s.server_cpu.cpu + s.cpu)
        mix_wall.append(m.wall)
        split_wall.append(s.wall)
    row = split_rows[0]
    words = row["words"]
    alone_rows = {Path(x["source_uri"]).name: x for x in _job(ctx, work / "alone", work / "out_alone", "auto")[0]}
    alone = {clip.id: alone_rows[name]["text"] or "" for name, clip in by_name.items()}
    mono_rows, _ = _job(ctx, mono_wav, work / "out_mono", "auto")

    res.measure("split_server_cpu_s", min(split_cpu), "s", "server CPU, --channels split (least of the runs)")
    res.measure("mix_server_cpu_s", min(mix_cpu), "s", "server CPU, --channels mix (least of the runs)")
    res.compare(
        "split_cost_vs_mix",
        f"server CPU of the {c.duration_s:.0f} s call split over its mono mix (least of {rounds} alternated runs each)",
        min(split_cpu) / min(mix_cpu),
        TARGET_COST if c.duration_s >= 120 else None,
        "<=",
        subject="--channels split",
        baseline="--channels mix",
    )
    res.compare(
        "split_total_cpu_vs_mix",
        "server + job CPU, split over mix (the job decodes the file once per channel and gates it)",
        min(split_total) / min(mix_total),
        None,
        "<=",
        subject="--channels split",
        baseline="--channels mix",
    )
    res.compare(
        "split_wall_vs_mix",
        "job wall time, split over mix (same runs)",
        min(split_wall) / min(mix_wall),
        None,
        "<=",
        subject="--channels split",
        baseline="--channels mix",
    )
    res.compare(
        "right_channel",
        "share of the split call's words on the channel of the turn they fall in",
        right_channel_share(c, words),
        TARGET_RIGHT_CHANNEL,
        ">=",
        unit="share",
    )
    res.compare(
        "duplicates",
        "words heard twice (same word, two channels, overlapping)",
        duplicates(words),
        0,
        "<=",
        unit="words",
    )
    for channel in (0, 1):
        split_wer = channel_wer(c, words, channel).wer
        solo = alone_wer(c, channel, alone).wer
        res.series[f"channel{channel}"] = {
            "split": channel_text(words, channel),
            "alone": " ".join(alone[x.id] for x in c.clips(channel)),
            "reference": c.reference(channel),
        }
        res.measure(f"wer_channel{channel}_split", split_wer, "WER", f"channel {channel} of the split call")
        res.measure(f"wer_channel{channel}_alone", solo, "WER", f"channel {channel}'s clips transcribed alone")
        own_wer = wer.score(c.reference(channel), alone_rows[f"own-{channel}.wav"]["text"] or "").wer
        res.measure(f"wer_channel{channel}_own_mono", own_wer, "WER", f"channel {channel}'s side alone, one mono file")
        res.compare(
            f"wer_channel{channel}_over_own_mono",
            f"channel {channel}'s WER split minus its side's own mono file (same turns, same times, no crosstalk)",
            split_wer - own_wer,
            None,
            "<=",
            subject="--channels split",
            baseline="the side alone, mono",
            unit="WER",
        )
        res.compare(
            f"wer_channel{channel}_over_alone",
            f"channel {channel}'s WER split minus its clips' alone",
            split_wer - solo,
            TARGET_WER_SLACK,
            "<=",
            subject="--channels split",
            baseline="clips alone",
            unit="WER",
        )
    mixed_words = " ".join(str(w["word"]) for w in mixed[0]["words"])
    in_turns = " ".join(t.clip.text for t in c.turns)
    res.measure("wer_mix", wer.score(in_turns, mixed_words).wer, "WER", "the mono mix against the turns' references")
    mono = mono_rows[0]["words"]
    res.compare(
        "duplicated_mono_split",
        "words of the duplicated-mono copy given a channel under --channels auto (not split: 0)",
        sum(w["channel"] is not None for w in mono),
        0,
        "<=",
        unit="words",
    )
    return res
