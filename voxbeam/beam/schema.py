"""Fixed pyarrow schemas of everything VoxBeam writes: transcripts, manifests, dead letters."""

from __future__ import annotations

import pyarrow as pa

# ``speaker`` (the service's label when it diarized, else null) and ``channel`` (null when the audio was
# mixed to mono) come last: readers of the fields before them are unaffected.
WORD = pa.struct(
    [
        ("word", pa.string()),
        ("offset_ms", pa.int64()),
        ("duration_ms", pa.int64()),
        ("confidence", pa.float32()),
        ("speaker", pa.string()),
        ("channel", pa.int32()),
    ]
)

SEGMENT = pa.struct(
    [
        ("text", pa.string()),
        ("offset_ms", pa.int64()),
        ("duration_ms", pa.int64()),
        ("confidence", pa.float32()),
        ("speaker", pa.string()),
        ("channel", pa.int32()),
    ]
)

# Personal data found by redaction: where and what type, never the value.
ENTITY = pa.struct(
    [
        ("type", pa.string()),
        ("start_ms", pa.int64()),
        ("end_ms", pa.int64()),
        ("confidence", pa.float32()),
    ]
)

_TIMESTAMP = pa.timestamp("ms", tz="UTC")

# Who spoke how much: one entry per speaker and channel among the segments (speaker null: not diarized;
# channel null: mixed to mono). talk_ms: the union of their segments' spans; words: their word count.
SPEAKER = pa.struct(
    [
        ("speaker", pa.string()),
        ("channel", pa.int32()),
        ("talk_ms", pa.int64()),
        ("words", pa.int64()),
    ]
)

# One row per transcribed file. Offsets are absolute milliseconds from the start of the file.
TRANSCRIPT_SCHEMA = pa.schema(
    [
        ("source_uri", pa.string()),
        ("source_size", pa.int64()),
        ("source_generation_or_mtime", pa.string()),
        ("language", pa.string()),
        ("text", pa.string()),
        ("confidence", pa.float32()),
        ("audio_duration_ms", pa.int64()),
        ("words", pa.list_(WORD)),
        ("segments", pa.list_(SEGMENT)),
        ("request_ids", pa.list_(pa.string())),
        ("model", pa.string()),
        ("processed_at", _TIMESTAMP),
        # Redaction's finds (empty when the job redacts nothing); appended, so older readers keep working.
        ("entities", pa.list_(ENTITY)),
        # Appended too: talk per speaker; the audio no segment spans; the time two speakers' segments share.
        ("speakers", pa.list_(SPEAKER)),
        ("silence_ms", pa.int64()),
        ("overlap_ms", pa.int64()),
    ]
)

# With --redact_keep_original, under its own prefix: a redacted row's text, words and segments as recognised.
UNREDACTED_SCHEMA = pa.schema(
    [
        ("source_uri", pa.string()),
        ("source_size", pa.int64()),
        ("source_generation_or_mtime", pa.string()),
        ("language", pa.string()),
        ("text", pa.string()),
        ("words", pa.list_(WORD)),
        ("segments", pa.list_(SEGMENT)),
        ("processed_at", _TIMESTAMP),
    ]
)

# One row per rendered audio object.
MANIFEST_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("uri", pa.string()),
        ("bytes", pa.int64()),
        ("duration_ms", pa.int64()),
        ("voice_id", pa.string()),
        ("format", pa.string()),
        ("sample_rate", pa.int32()),
        ("text_sha256", pa.string()),
    ]
)

# With --redact_audio: one row per copy of an input, its redacted spans bleeped (beam.redacted_audio).
REDACTED_AUDIO_SCHEMA = pa.schema(
    [
        ("source_uri", pa.string()),
        ("source_generation_or_mtime", pa.string()),
        ("uri", pa.string()),
        ("bytes", pa.int64()),
        # The copy's file extension (the source's when its container is kept) and encoder ("copy": the bytes as
        # they were).
        ("format", pa.string()),
        ("codec", pa.string()),
        ("sample_rate", pa.int32()),
        ("channels", pa.int32()),
        ("container_kept", pa.bool_()),
        # tone, silence, or copy (no entities: nothing replaced).
        ("mode", pa.string()),
        # What was replaced, in ms from the start of the file: the entities' spans widened and merged.
        ("spans", pa.list_(pa.struct([("start_ms", pa.int64()), ("end_ms", pa.int64())]))),
    ]
)

# One row per input record that could not be processed. ``input`` is the record as JSON.
DEAD_LETTER_SCHEMA = pa.schema(
    [
        ("stage", pa.string()),
        ("input", pa.string()),
        ("error_code", pa.string()),
        ("error_message", pa.string()),
        ("attempts", pa.int32()),
        ("failed_at", _TIMESTAMP),
    ]
)

# Columns that identify a source version for incremental runs.
SOURCE_KEY_COLUMNS = ("source_uri", "source_size", "source_generation_or_mtime")
