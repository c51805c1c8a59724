"""A file's channels, each transcribed as its own stream, merged on one timeline (``--channels split``).

Each channel's words and segments get their ``channel`` (0, 1, ...); a diarized channel's speakers are
labelled per channel (``C0-S1``, ``C1-S1``: distinct across channels). A word heard on two channels at once
(the other side's voice, bleeding through while both spoke) stays only on the louder channel: the one at least
``voxbeam.channels.DEDUP_DB`` quieter over the word's span loses it (``voxbeam.channels`` says how levels are
measured, how crosstalk is gated before recognition, and which silenced time each stream leaves out: the
words' times are put back on the file's timeline here).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

from voxbeam.channels import DEDUP_DB, Levels, Skips
from voxbeam.client.results import Segment, TranscriptResult, Word, confidence_of

# Two same words on two channels are one word heard twice when their spans overlap, give or take this.
_SLACK_MS = 200
_NOT_WORD = re.compile(r"[^\w']+")


def speaker_label(channel: int, speaker: str | None) -> str | None:
    """A speaker of ``channel`` as the merged transcript names it (None: not diarized)."""
    return None if speaker is None else f"C{channel}-{speaker}"


def _key(word: str) -> str:
    return _NOT_WORD.sub("", word.lower())


def _echoes(words: list[Word], levels: Levels) -> set[int]:
    """The ids of words that another channel heard at the same time, at least ``DEDUP_DB`` louder."""
    order = sorted(words, key=lambda w: w.offset_ms)
    drop: set[int] = set()
    for i, w in enumerate(order):
        end = w.offset_ms + w.duration_ms
        for o in order[i + 1 :]:
            if o.offset_ms > end + _SLACK_MS:
                break
            if o.channel == w.channel or _key(o.word) != _key(w.word) or not _key(w.word):
                continue
            a, b = w.channel or 0, o.channel or 0
            start, stop = min(w.offset_ms, o.offset_ms), max(end, o.offset_ms + o.duration_ms)
            gap = levels.quieter_by(a, b, start, stop)
            if gap >= DEDUP_DB:
                drop.add(id(w))
            elif gap <= -DEDUP_DB:
                drop.add(id(o))
    return drop


def _span(skips: Skips | None, offset_ms: int, duration_ms: int) -> tuple[int, int]:
    """A stream's span (offset, duration) as the file's (the stream left out time where ``skips`` says)."""
    if skips is None:
        return offset_ms, duration_ms
    start = skips.original(offset_ms)
    return start, max(0, skips.original(offset_ms + duration_ms) - start)


def merge(results: Sequence[TranscriptResult], levels: Levels | None = None) -> TranscriptResult:
    """One transcript of channels 0, 1, ... (``results`` in channel order) on the file's timeline."""
    segments: list[Segment] = []
    skips = levels.skips if levels is not None else {}
    entities = []
    for channel, result in enumerate(results):
        left_out = skips.get(channel)
        for s in result.segments:
            words = []
            for w in s.words:
                at, length = _span(left_out, w.offset_ms, w.duration_ms)
                label = speaker_label(channel, w.speaker)
                words.append(dataclasses.replace(w, offset_ms=at, duration_ms=length, channel=channel, speaker=label))
            at, length = _span(left_out, s.offset_ms, s.duration_ms)
            label = speaker_label(channel, s.speaker)
            segments.append(
                dataclasses.replace(
                    s, words=tuple(words), offset_ms=at, duration_ms=length, channel=channel, speaker=label
                )
            )
        for e in result.entities:
            at, length = _span(left_out, e.start_ms, e.end_ms - e.start_ms)
            entities.append(dataclasses.replace(e, start_ms=at, end_ms=at + length))
    if levels is not None and len(results) > 1:
        drop = _echoes([w for s in segments for w in s.words], levels)
        if drop:
            kept = []
            for s in segments:
                remaining = tuple(w for w in s.words if id(w) not in drop)
                if len(remaining) < len(s.words):
                    if not remaining:
                        continue
                    s = dataclasses.replace(s, words=remaining, text=" ".join(w.word for w in remaining))
                kept.append(s)
            segments = kept
    segments.sort(key=lambda s: (s.offset_ms, s.channel))
    ordered = tuple(segments)
    entities.sort(key=lambda e: (e.start_ms, e.end_ms))
    return TranscriptResult(
        text=" ".join(s.text for s in ordered if s.text),
        segments=ordered,
        words=tuple(sorted((w for s in ordered for w in s.words), key=lambda w: (w.offset_ms, w.channel or 0))),
        language=next((r.language for r in results if r.language), None),
        confidence=confidence_of(ordered),
        audio_duration_ms=max(
            (r.audio_duration_ms + (skips[c].total_ms if c in skips else 0) for c, r in enumerate(results)), default=0
        ),
        request_ids=tuple(i for r in results for i in r.request_ids),
        attempts=1 + sum(r.attempts - 1 for r in results),
        model=next((r.model for r in results if r.model), None),
        entities=tuple(entities),
    )
