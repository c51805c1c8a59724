"""Time in Whisper's results: where Silero hears speech, where a bulk round is cut, word and
segment times kept inside speech, and segments made finals (split at sentence ends).
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable
from typing import Any

import numpy as np
from faster_whisper.vad import VadOptions

from voxbeam.server.engines.base import Recognized, WordTiming
from voxbeam.server.engines.whisper_vad import speech_timestamps

RATE = 16000
WINDOW_S = 30.0
PIPELINE_PAD_S = 0.4  # the pipeline's VAD pads each stretch of speech by this much on each side
# Room left in each window of a round: Silero over a round's audio alone can hear a little more
# speech than it did over the whole buffer, and a window overfilled by a fraction costs a whole extra one.
WINDOW_MARGIN_S = 0.5
_SENTENCE_END = (".", "?", "!", "。", "？", "！")
# Word times are kept within speech as Silero hears it, padded by this much.
SNAP_PAD_MS = 30
# Whisper's own test for a window that holds no speech.
NO_SPEECH_PROB = 0.6
LOGPROB_FLOOR = -1.0
MIN_WORD_S = 0.02
# Decoded tokens allowed per second of audio (speech runs at 3-5 text tokens a second, timestamps aside).
TOKENS_PER_S = 10
MIN_TOKENS = 24


def token_limit(model: Any, prompt: int, seconds: float) -> int:
    """``generate``'s ``max_length`` for ``seconds`` of audio after ``prompt`` tokens: a runaway (Whisper
    looping, "1,111,111,111, ..." over a card number) stops where the audio could hold no more words, not at
    224 tokens. ``model``: a faster-whisper WhisperModel.

    CTranslate2's Whisper decodes at most min(max_length / 2, max_length - prompt) tokens (its whisper.cc;
    CTranslate2 issue 1856), so the length asked for is what lets the budget through."""
    budget = MIN_TOKENS + int(TOKENS_PER_S * seconds)
    return int(min(model.max_length, max(2 * budget, budget + prompt)))


def clean_word(text: str) -> str:
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
    """Where Silero hears speech in ``audio`` (float32, or int16 as buffered), in seconds, padded by ~a window."""
    found = speech_timestamps(audio, VadOptions(min_silence_duration_ms=160, speech_pad_ms=SNAP_PAD_MS))
    return [(r["start"] / RATE, r["end"] / RATE) for r in found]


def round_cuts(
    regions: list[tuple[float, float]], total: float, windows: int | None = 1, *, final: bool = False
) -> list[float]:
    """Where a bulk round's windows end: each after the speech that fills one 30 s window, in a pause.

    The speech is packed as the pipeline packs it (its VAD pads each stretch by up to
    ``PIPELINE_PAD_S``, by half the pause where pauses are shorter; chunks of up to 30 s are
    filled in order), so each window costs one encoder pass and not one more for a sliver.
    ``regions``: the speech in the ``total`` seconds buffered. With less speech than ``windows``
    hold, the round ends after the last stretch once it has surely ended, else before it (or
    before a lone stretch's leading silence); a lone stretch longer than the windows (music, say)
    is cut in the middle, as the pipeline cuts one. Empty: wait for more audio. Without speech,
    one cut: all but the last second. ``final``: the audio is complete (``windows`` None: as many
    as it takes), so the round ends after the last stretch.
    """
    if not regions:
        return [max(0.0, total - 1.0)]
    cuts: list[float] = []
    fill = 0.0
    for i, (lo, hi) in enumerate(regions):
        before = lo - (regions[i - 1][1] if i else 0.0)
        after = (regions[i + 1][0] if i + 1 < len(regions) else total) - hi
        cost = hi - lo + min(PIPELINE_PAD_S, before / 2) + min(PIPELINE_PAD_S, after / 2)
        if i and fill + cost > WINDOW_S - WINDOW_MARGIN_S:
            cuts.append(_pause_before(regions, i))
            if len(cuts) == windows:
                return cuts
            fill = 0.0
        fill += cost
    end = regions[-1][1]
    if final or total - end >= 1.0:
        return [*cuts, end + min((total - end) / 2, PIPELINE_PAD_S)]
    if len(regions) > 1:
        last = _pause_before(regions, len(regions) - 1)
        return cuts if cuts and cuts[-1] >= last else [*cuts, last]
    lo = regions[0][0]
    if lo - PIPELINE_PAD_S >= 1.0:
        return [lo - PIPELINE_PAD_S]
    if windows is not None and total - lo > windows * WINDOW_S:
        return [lo + (k + 1) * (WINDOW_S - WINDOW_MARGIN_S) for k in range(windows)]
    return []


def _pause_before(regions: list[tuple[float, float]], i: int) -> float:
    """A cut in the pause before stretch ``i``, as far into it as the pipeline's padding reaches."""
    end, following = regions[i - 1][1], regions[i][0]
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
    """Whisper segments as finals, one per sentence when word timings are known (no final for a segment
    without text, or that Whisper's own test calls silence)."""
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
        if not seg.text.strip() or (seg.no_speech_prob > NO_SPEECH_PROB and seg.avg_logprob < LOGPROB_FLOOR):
            continue
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
                if (clean := clean_word(raw))
            )
            if timed:
                confidence = sum(x[3] for x in group) / len(group)
                final("".join(x[0] for x in group), group[0][1], group[-1][2], confidence, timed)
            group = []
    return out
