"""Time in Whisper's results: where Silero hears speech, where a bulk round is cut, word and
segment times kept inside speech, and segments made finals (split at sentence ends).
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable
from typing import Any

import numpy as np
from faster_whisper.vad import VadOptions, get_speech_timestamps

from voxbeam.server.engines.base import Recognized, WordTiming

RATE = 16000
WINDOW_S = 30.0
PIPELINE_PAD_S = 0.4  # the pipeline's VAD pads each stretch of speech by this much on each side
_SENTENCE_END = (".", "?", "!", "。", "？", "！")
# Word times are kept within speech as Silero hears it, padded by this much.
SNAP_PAD_MS = 30
MIN_WORD_S = 0.02


def _clean_word(text: str) -> str:
    """A word as spoken: no surrounding whitespace or punctuation (inner apostrophes and hyphens stay)."""
    text = text.strip()
    start, end = 0, len(text)
    while start < end and unicodedata.category(text[start]).startswith(("P", "S")) and text[start] not in "$£€#@":
        start += 1
    while end > start and unicodedata.category(text[end - 1]).startswith(("P", "S")) and text[end - 1] != "%":
        end -= 1
    return text[start:end]


def ms(seconds: float) -> int:
    return int(round(seconds * 1000))


def speech_regions(audio: np.ndarray) -> list[tuple[float, float]]:
    """Where Silero hears speech in ``audio``, in seconds, padded by about one window."""
    found = get_speech_timestamps(audio, VadOptions(min_silence_duration_ms=160, speech_pad_ms=SNAP_PAD_MS))
    return [(r["start"] / RATE, r["end"] / RATE) for r in found]


def round_cut(regions: list[tuple[float, float]], total: float) -> float | None:
    """Where a bulk round ends: after the speech that fills one window, in the pause that follows.

    ``regions`` are the stretches of speech in the ``total`` seconds buffered. None while the last
    of them may still be growing; without speech, all but the last second.
    """
    if not regions:
        return max(0.0, total - 1.0)
    speech, last = 0.0, 0
    for i, (lo, hi) in enumerate(regions):
        cost = hi - lo + 2 * PIPELINE_PAD_S
        if i and speech + cost > WINDOW_S:
            break
        speech, last = speech + cost, i
    end = regions[last][1]
    following = regions[last + 1][0] if last + 1 < len(regions) else total
    if last + 1 == len(regions) and total - end < 1.0:
        return None
    return end + min((following - end) / 2, PIPELINE_PAD_S)


def snap(start: float, end: float, regions: list[tuple[float, float]]) -> tuple[float, float]:
    """A word's (or segment's) times kept inside the speech it overlaps.

    Whisper's alignment lets the first word of a stretch of speech begin in the silence before it
    (often by hundreds of ms, up to the start of the VAD chunk) and the last one run on after it;
    segments start where their VAD chunk does.
    """
    overlapping = [(lo, hi) for lo, hi in regions if start < hi and end > lo]
    if not overlapping:
        return start, end
    new_start = min(max(start, overlapping[0][0]), end - MIN_WORD_S)
    return new_start, max(min(end, overlapping[-1][1]), new_start + MIN_WORD_S)


def finals_from(
    segments: Iterable[Any],
    offset_s: float,
    *,
    words: bool,
    language: str | None,
    probability: float | None,
    regions: list[tuple[float, float]] | None = None,
) -> list[Recognized]:
    """Whisper segments as finals, one per sentence when word timings are known."""
    out: list[Recognized] = []

    def final(text: str, start: float, end: float, confidence: float, timed: tuple[WordTiming, ...] | None) -> None:
        out.append(
            Recognized(
                text=text.strip(),
                is_final=True,
                offset_ms=ms(offset_s + start),
                duration_ms=max(0, ms(end - start)),
                confidence=round(min(1.0, max(0.0, confidence)), 4),
                words=timed,
                language=language,
                language_probability=None if probability is None else round(probability, 4),
            )
        )

    for seg in segments:
        if not words or not seg.words:
            start, end = snap(float(seg.start), float(seg.end), regions or [])
            final(seg.text, start, end, math.exp(seg.avg_logprob), None)
            continue
        group: list[tuple[str, float, float, float]] = []  # (raw word, start, end, probability)
        for i, w in enumerate(seg.words):
            start, end = snap(float(w.start), float(w.end), regions or [])
            group.append((w.word, start, end, float(w.probability)))
            if i + 1 < len(seg.words) and not w.word.strip().endswith(_SENTENCE_END):
                continue
            timed = tuple(
                WordTiming(clean, ms(offset_s + a), max(0, ms(b - a)), round(prob, 4))
                for raw, a, b, prob in group
                if (clean := _clean_word(raw))
            )
            if timed:
                confidence = sum(x[3] for x in group) / len(group)
                final("".join(x[0] for x in group), group[0][1], group[-1][2], confidence, timed)
            group = []
    return out
