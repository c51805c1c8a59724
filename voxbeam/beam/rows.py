"""The rows VoxBeam writes (transcripts, manifest, dead letters) and the names of its objects.

Plain functions over plain values, so the DoFns stay about concurrency and the schemas in
``schema.py`` have one place that fills them.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

from voxbeam.beam.storage import SourceFile
from voxbeam.bleep import widen
from voxbeam.errors import VoxBeamError, describe_os_error
from voxbeam.protocol import redact

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
# Ids that name their own object: safe characters, not starting or ending with "." or "_"
# (so never "." or ".."), and short enough for any file system.
_SAFE_ID = re.compile(r"[A-Za-z0-9-](?:[A-Za-z0-9._-]*[A-Za-z0-9-])?")
_MAX_NAME = 100


def transcript_row(source: SourceFile, result: Any) -> dict[str, Any]:
    """A ``TRANSCRIPT_SCHEMA`` row for ``source`` from a client ``TranscriptResult``."""
    return {
        "source_uri": source.uri,
        "source_size": source.size,
        "source_generation_or_mtime": source.version,
        "language": result.language,
        "text": result.text,
        "confidence": float(result.confidence),
        "audio_duration_ms": int(result.audio_duration_ms),
        # channel: None, the audio mixed to mono; else the file's channel it was heard on (Transcribe(channels=)).
        "words": [
            {
                "word": w.word,
                "offset_ms": w.offset_ms,
                "duration_ms": w.duration_ms,
                "confidence": w.confidence,
                "speaker": getattr(w, "speaker", None),
                "channel": getattr(w, "channel", None),
            }
            for w in result.words
        ],
        "segments": [
            {
                "text": s.text,
                "offset_ms": s.offset_ms,
                "duration_ms": s.duration_ms,
                "confidence": s.confidence,
                "speaker": getattr(s, "speaker", None),
                "channel": getattr(s, "channel", None),
            }
            for s in result.segments
        ],
        "request_ids": list(result.request_ids),
        "model": result.model,
        "processed_at": dt.datetime.now(dt.UTC),
        # The service's, when it redacted (--redact_on server); else filled when the job redacts (beam.redacting).
        "entities": [
            {"type": e.type, "start_ms": e.start_ms, "end_ms": e.end_ms, "confidence": e.confidence}
            for e in getattr(result, "entities", ())
        ],
        **talk_summary(result.segments, result.words, int(result.audio_duration_ms)),
    }


def _union_ms(spans: list[tuple[int, int]]) -> int:
    return sum(end - start for start, end in widen(spans, pad_ms=0))


def talk_summary(segments: Sequence[Any], words: Sequence[Any], audio_duration_ms: int) -> dict[str, Any]:
    """A row's ``speakers`` (speaker, channel, talk_ms, words; by first appearance), ``silence_ms`` (audio no
    segment spans) and ``overlap_ms`` (time spanned by the segments of two or more speakers at once)."""
    spans: dict[tuple[str | None, int | None], list[tuple[int, int]]] = {}
    for s in segments:
        key = (getattr(s, "speaker", None), getattr(s, "channel", None))
        spans.setdefault(key, []).append((s.offset_ms, s.offset_ms + s.duration_ms))
    counts = collections.Counter((getattr(w, "speaker", None), getattr(w, "channel", None)) for w in words)
    every = [span for group in spans.values() for span in group]
    speech = _union_ms(every)
    # A sweep over each speaker's spans: where two or more speakers are active at once.
    events = sorted((t, d) for group in spans.values() for a, b in widen(group, pad_ms=0) for t, d in ((a, 1), (b, -1)))
    overlap, active, last = 0, 0, 0
    for t, d in events:
        if active >= 2:
            overlap += t - last
        active, last = active + d, t
    return {
        "speakers": [
            {"speaker": k[0], "channel": k[1], "talk_ms": _union_ms(group), "words": counts.get(k, 0)}
            for k, group in spans.items()
        ],
        "silence_ms": max(0, audio_duration_ms - speech),
        "overlap_ms": max(0, overlap),
    }


def text_sha256(text: str) -> str:
    """The manifest's ``text_sha256`` of a record's text."""
    return hashlib.sha256(text.encode()).hexdigest()


def manifest_row(record_id: str, uri: str, result: Any, duration_ms: int, text_sha256: str) -> dict[str, Any]:
    """A ``MANIFEST_SCHEMA`` row for one written audio object from a client ``SynthesisResult``."""
    return {
        "id": record_id,
        "uri": uri,
        "bytes": len(result.audio),
        "duration_ms": duration_ms,
        "voice_id": result.voice_id,
        "format": result.format,
        "sample_rate": result.sample_rate,
        "text_sha256": text_sha256,
    }


def dead_letter(stage: str, record: Any, exc: BaseException, attempts: int | None = None) -> dict[str, Any]:
    """The ``DEAD_LETTER_SCHEMA`` row for a record that failed with ``exc``."""
    if isinstance(exc, VoxBeamError):
        code = exc.code
        attempts = attempts or getattr(exc, "attempts", None) or 1
    elif isinstance(exc, FileNotFoundError):
        code = "NOT_FOUND"
    elif isinstance(exc, OSError):
        code = "UNREADABLE"
    else:
        code = "INTERNAL_ERROR"
    return {
        "stage": stage,
        "input": json.dumps(record, sort_keys=True, default=str),
        "error_code": code,
        "error_message": redact(describe_os_error(exc) if isinstance(exc, OSError) else str(exc))[:2000]
        or type(exc).__name__,
        "attempts": int(attempts or 1),
        "failed_at": dt.datetime.now(dt.UTC),
    }


def object_name(record_id: str) -> str:
    """A path-safe object name for a record id, at most 100 characters; distinct ids get distinct names.

    An id of up to 100 safe characters is its own name. Any other id becomes its safe characters
    (at most 80) and ``~`` and 16 hex digits of its SHA-256: no safe id contains ``~``, so the two
    kinds never meet, and two hashed names collide only if 64 bits of SHA-256 do.
    """
    if len(record_id) <= _MAX_NAME and _SAFE_ID.fullmatch(record_id):
        return record_id
    safe = _SAFE.sub("_", record_id).strip("._")[:80] or "record"
    return f"{safe}~{hashlib.sha256(record_id.encode('utf-8', 'surrogatepass')).hexdigest()[:16]}"


def caption_basename(source_uri: str) -> str:
    """The caption files' name for a source: its base name made safe, plus a hash of the whole URI."""
    base = source_uri.rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return f"{_SAFE.sub('_', base)[:80]}-{hashlib.sha256(source_uri.encode()).hexdigest()[:8]}"
