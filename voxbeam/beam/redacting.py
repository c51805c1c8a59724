"""Transcript rows redacted client-side (``voxbeam.redaction``): text, words and segments masked in
place with their timings, each entity listed in the row's ``entities`` (type, times, confidence,
never the value). The unredacted columns go to their own output only when asked for.

Entities are found once over the row's words, so a number said across a segment boundary is one
entity; each segment's text is then masked where its own words hold (part of) an entity, and
scanned itself for written forms. Without word timings (``--timestamps false``) the segments'
tokens stand in for words, with their segment's times.
"""

from __future__ import annotations

import bisect
import itertools
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput

from voxbeam.beam._dofns import DEAD_LETTERS, Row
from voxbeam.beam.redacted_audio import REDACTED_AUDIO, AudioRedaction, CopyCounters, copy_or_dead_letter
from voxbeam.beam.rows import dead_letter
from voxbeam.beam.schema import UNREDACTED_SCHEMA
from voxbeam.errors import VoxBeamError
from voxbeam.redaction import Entity, Policy, TimedWord, as_words, redact
from voxbeam.redaction import redact_text as _redact_text

_LOG = logging.getLogger(__name__)
UNREDACTED = "unredacted"


@dataclass(frozen=True)
class Redaction(Policy):
    """What to redact (``Policy``: entity types, phone region, profanity) and whether originals are kept.

    ``phone_region`` None: each row's language's region (``Policy.region``), else US. Values are
    checked here (ValueError), so a bad one fails when the pipeline is built.
    """

    keep_original: bool = False

    @classmethod
    def of(
        cls,
        types: str | Iterable[str] | None = None,
        *,
        phone_region: str | None = None,
        profanity: str | None = None,
        keep_original: bool = False,
    ) -> Redaction:
        policy = Policy.of(types, phone_region=phone_region, profanity=profanity)
        redaction = cls(policy.types, policy.phone_region, policy.profanity, keep_original)
        if keep_original and not redaction.enabled:
            raise ValueError("keep_original needs entity types to redact or a profanity mode")
        return redaction


def redact_row(row: Row, redaction: Redaction) -> Row:
    """``row`` (``TRANSCRIPT_SCHEMA``) with text, words and segments redacted and ``entities`` filled."""
    words = row.get("words") or []
    segments = row.get("segments") or []
    text = row.get("text") or ""
    region, profanity = redaction.region(row.get("language")), redaction.profanity
    timed = [_timed(w["word"], w) for w in words] or _segment_tokens(segments, text, row)
    done = redact(timed, redaction.types, text=text, region=region, profanity=profanity)
    new_segments = []
    for seg, (a, b) in zip(segments, _segment_spans(segments, timed, bool(words)), strict=True):
        local = [
            Entity(e.type, e.start_ms, e.end_ms, e.confidence, max(e.first_word, a) - a, min(e.last_word, b - 1) - a)
            for e in done.entities
            if e.first_word < b and e.last_word >= a
        ]
        seg_text = _redact_text(
            seg["text"] or "", redaction.types, words=timed[a:b], entities=local, region=region, profanity=profanity
        )
        new_segments.append({**seg, "text": seg_text})
    out = dict(row)
    out["text"] = done.text
    out["segments"] = new_segments
    if words:
        # A word keeps its speaker and channel; a placeholder takes those of the first word it covers.
        starts = [int(w["offset_ms"]) for w in words]
        out["words"] = [
            {
                "word": w.word,
                "offset_ms": w.offset_ms,
                "duration_ms": w.duration_ms,
                "confidence": w.confidence,
                **{
                    k: words[max(0, bisect.bisect_right(starts, w.offset_ms) - 1)].get(k)
                    for k in ("speaker", "channel")
                },
            }
            for w in done.words
        ]
    out["entities"] = [
        {"type": e.type, "start_ms": e.start_ms, "end_ms": e.end_ms, "confidence": e.confidence} for e in done.entities
    ]
    return out


def _timed(word: str, w: dict[str, Any]) -> TimedWord:
    return TimedWord(word, int(w["offset_ms"]), int(w["duration_ms"]), float(w.get("confidence") or 0.0))


def _segment_tokens(segments: list[dict[str, Any]], text: str, row: Row) -> list[TimedWord]:
    """Stand-in words when the row has none: each segment's tokens at its times (or the text's, whole file)."""
    if not segments:
        whole = {"offset_ms": 0, "duration_ms": row.get("audio_duration_ms") or 0, "confidence": 0.0}
        return [_timed(t, whole) for t in text.split()]
    return [
        w
        for seg in segments
        for w in as_words(
            seg["text"] or "", int(seg["offset_ms"]), int(seg["duration_ms"]), float(seg.get("confidence") or 0.0)
        )
    ]


def _segment_spans(segments: list[dict[str, Any]], timed: list[TimedWord], real: bool) -> list[tuple[int, int]]:
    """Each segment's words as [a, b): by the word's midpoint in time (real words), else by token count."""
    if not real:
        spans, a = [], 0
        for seg in segments:
            b = a + len((seg["text"] or "").split())
            spans.append((a, b))
            a = b
        return spans
    starts = [int(s["offset_ms"]) for s in segments]
    owner = [max(0, bisect.bisect_right(starts, w.offset_ms + w.duration_ms // 2) - 1) for w in timed]
    owner = list(itertools.accumulate(owner, max))  # contiguous slices, even if a word is out of order
    spans = []
    for k in range(len(segments)):
        a = bisect.bisect_left(owner, k)
        spans.append((a, bisect.bisect_right(owner, k, lo=a)))
    return spans


def unredacted_row(row: Row) -> Row:
    """The columns of ``row`` that ``UNREDACTED_SCHEMA`` keeps (taken before redaction)."""
    return {name: row.get(name) for name in UNREDACTED_SCHEMA.names}


@beam.typehints.with_output_types(Row, dead_letters=Row, unredacted=Row, redacted_audio=Row)
class RedactFn(beam.DoFn):
    """A transcript row redacted; its unredacted columns to ``unredacted`` when kept; with ``audio``, its
    source's bleeped copy written first (the manifest row to ``redacted_audio``).

    A row that cannot be redacted is never written: it becomes a dead letter naming only its
    source (the error's type, never its message, which could quote the text). So does a row whose
    copy fails (``redacted_audio`` says why), and then neither its transcript nor its original is written.
    """

    def __init__(self, redaction: Redaction, audio: AudioRedaction | None = None) -> None:
        self._redaction = redaction
        self._audio = audio

    def setup(self) -> None:
        self._counters = CopyCounters() if self._audio is not None else None

    def process(self, row: Row) -> Iterator[Any]:
        try:
            redacted = redact_row(row, self._redaction)
        except Exception as exc:  # a bug here must not write the row unredacted
            _LOG.warning("redaction failed for %s: %s", row.get("source_uri"), type(exc).__name__)
            why = VoxBeamError(f"redaction failed ({type(exc).__name__})", code="REDACTION_FAILED")
            yield TaggedOutput(DEAD_LETTERS, dead_letter("redact", {"uri": row.get("source_uri")}, why))
            return
        if self._audio is not None and self._counters is not None:
            ok, copied = copy_or_dead_letter(self._audio, redacted)
            self._counters.add(ok, copied)
            if not ok:
                yield TaggedOutput(DEAD_LETTERS, copied)
                return
            yield TaggedOutput(REDACTED_AUDIO, copied)
        yield redacted
        if self._redaction.keep_original:
            yield TaggedOutput(UNREDACTED, unredacted_row(row))
