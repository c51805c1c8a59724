"""What the client returns: transcripts with absolute word timings, and synthesized audio."""

from __future__ import annotations

from dataclasses import dataclass, field

from voxbeam import protocol


@dataclass(frozen=True)
class Word:
    word: str
    offset_ms: int
    duration_ms: int
    confidence: float
    # Who said it, when the service diarized (its label, "S1", ...); None otherwise.
    speaker: str | None = None
    # The file's channel it was heard on, when channels were transcribed apart (0, 1, ...); None: mixed.
    channel: int | None = None


@dataclass(frozen=True)
class Segment:
    """One final transcript (an utterance); offsets are absolute from the start of the file."""

    text: str
    offset_ms: int
    duration_ms: int
    confidence: float
    words: tuple[Word, ...] = ()
    # Who said it, when the service diarized; None otherwise.
    speaker: str | None = None
    # As the words' (``Word.channel``).
    channel: int | None = None


def confidence_of(segments: tuple[Segment, ...]) -> float:
    """A transcript's confidence: its segments', weighted by duration (0.0 without speech)."""
    total = sum(s.duration_ms for s in segments)
    if not segments:
        confidence = 0.0
    elif total > 0:
        confidence = sum(s.confidence * s.duration_ms for s in segments) / total
    else:
        confidence = sum(s.confidence for s in segments) / len(segments)
    return round(confidence, 6)


@dataclass(frozen=True)
class TranscriptResult:
    """The transcript of one file.

    ``words`` are absolute from the start of the file and non-decreasing; ``confidence`` is the
    duration-weighted mean over segments (0.0 without speech); ``attempts`` is 1 + retries made.
    """

    text: str
    segments: tuple[Segment, ...]
    words: tuple[Word, ...]
    language: str | None  # detected, else requested; None when detection found no speech to go by
    confidence: float
    audio_duration_ms: int
    request_ids: tuple[str, ...]
    attempts: int
    model: str | None = None
    # What the service redacted (a session that asked it to: the ``redact`` extension), absolute like words.
    entities: tuple[protocol.TranscriptEntity, ...] = ()


@dataclass(frozen=True)
class SynthesisResult:
    """One utterance as a single file of ``format`` (a complete WAV for "wav")."""

    audio: bytes = field(repr=False)
    voice_id: str
    language: str
    format: str
    sample_rate: int
    request_id: str
    attempts: int

    def __repr__(self) -> str:
        return (
            f"SynthesisResult(audio=<{len(self.audio)} bytes>, voice_id={self.voice_id!r}, language={self.language!r}, "
            f"format={self.format!r}, sample_rate={self.sample_rate}, request_id={self.request_id!r}, "
            f"attempts={self.attempts})"
        )


class TranscriptBuilder:
    """Collects the finals of each recognised segment, shifting them by the segment's start."""

    def __init__(self, language: str) -> None:
        self._language = language
        self._detected: str | None = None
        self._segments: list[Segment] = []
        self._request_ids: list[str] = []
        self._last_word_ms = 0
        self._last_segment_ms = 0
        self._entities: list[protocol.TranscriptEntity] = []

    def add(self, finals: list[protocol.Transcript], request_id: str, offset_ms: int) -> None:
        if request_id:
            self._request_ids.append(request_id)
        for t in finals:
            if t.language and self._detected is None:
                self._detected = t.language
            words: list[Word] = []
            for w in t.words or ():
                # The service reports per-session offsets; clamping keeps the file-level list
                # monotonic even if a recogniser nudges a boundary word slightly backwards.
                start = max(self._last_word_ms, offset_ms + w.offset)
                self._last_word_ms = start
                words.append(Word(w.word, start, max(0, w.duration), float(w.confidence), w.speaker))
            for k, e in enumerate(t.entities or ()):
                entity = protocol.TranscriptEntity(e.type, offset_ms + e.start_ms, offset_ms + e.end_ms, e.confidence)
                if k or not self._continues(entity, words):
                    self._entities.append(entity)
                else:
                    last = self._entities[-1]
                    end, conf = max(last.end_ms, entity.end_ms), min(last.confidence, entity.confidence)
                    self._entities[-1] = protocol.TranscriptEntity(e.type, last.start_ms, end, conf)
            text = t.text.strip()
            if not text and not words:
                continue
            seg_start = max(self._last_segment_ms, offset_ms + t.offset)
            self._last_segment_ms = seg_start
            self._segments.append(
                Segment(text, seg_start, max(0, t.duration), float(t.confidence or 0.0), tuple(words), t.speaker)
            )

    def _continues(self, e: protocol.TranscriptEntity, words: list[Word]) -> bool:
        """Whether ``e``, a final's first entity, is the rest of the last final's last one: one value the service
        redacted in two finals (a card number with a full stop written inside it) is one entity, as the job's
        own redaction makes it, when no word was said between its parts. Without words, that is not known."""
        last = self._entities[-1] if self._entities else None
        if last is None or last.type != e.type or not words or not (self._segments and self._segments[-1].words):
            return False
        # Word starts never go back (``add`` clamps them), so the latest word said before ``e`` is the one to check.
        before = [w for w in words if w.offset_ms + w.duration_ms <= e.start_ms]
        return (before or self._segments[-1].words)[-1].offset_ms < last.end_ms

    def result(self, *, audio_duration_ms: int, attempts: int, model: str | None = None) -> TranscriptResult:
        segments = tuple(self._segments)
        return TranscriptResult(
            text=" ".join(s.text for s in segments if s.text),
            segments=segments,
            words=tuple(w for s in segments for w in s.words),
            language=self._detected or (None if self._language == protocol.AUTO_LANGUAGE else self._language),
            confidence=confidence_of(segments),
            audio_duration_ms=audio_duration_ms,
            request_ids=tuple(self._request_ids),
            attempts=attempts,
            model=model,
            entities=tuple(self._entities),
        )
