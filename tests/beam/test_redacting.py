"""Transcript rows redacted (voxbeam.beam.redacting): segments, rows without words, regions, profanity."""

from __future__ import annotations

import pyarrow as pa
import pytest

from voxbeam.beam.redacting import Redaction, redact_row, unredacted_row
from voxbeam.beam.schema import TRANSCRIPT_SCHEMA, UNREDACTED_SCHEMA


def row_of(*segments: str, words: bool = True, language: str = "en") -> dict:
    """A transcript row whose segments are ``segments``, each word 300 ms long."""
    out_words, out_segments, t = [], [], 0
    for text in segments:
        start = t
        for w in text.split():
            out_words.append({"word": w.strip(".,"), "offset_ms": t, "duration_ms": 250, "confidence": 0.9})
            t += 300
        out_segments.append({"text": text, "offset_ms": start, "duration_ms": t - start, "confidence": 0.9})
    return {
        "source_uri": "a.wav", "source_size": 1, "source_generation_or_mtime": "1", "language": language,
        "text": " ".join(segments), "confidence": 0.9, "audio_duration_ms": t,
        "words": out_words if words else [], "segments": out_segments, "request_ids": ["r"], "model": "m",
        "processed_at": None, "entities": [],
    }  # fmt: skip


def test_a_number_said_across_two_segments_is_one_entity_masked_in_both():
    row = row_of("My card number is 4111 1111", "1111 1111, thanks.")
    out = redact_row(row, Redaction.of("all"))
    assert [s["text"] for s in out["segments"]] == ["My card number is [CARD_NUMBER]", "[CARD_NUMBER], thanks."]
    assert out["text"] == "My card number is [CARD_NUMBER], thanks."
    assert [w["word"] for w in out["words"]] == ["My", "card", "number", "is", "[CARD_NUMBER]", "thanks"]
    assert out["entities"] == [{"type": "CARD_NUMBER", "start_ms": 1200, "end_ms": 2350, "confidence": 0.95}]
    assert [(s["offset_ms"], s["duration_ms"]) for s in out["segments"]] == [
        (s["offset_ms"], s["duration_ms"]) for s in row["segments"]
    ]
    pa.Table.from_pylist([out], schema=TRANSCRIPT_SCHEMA)  # the row still fits its schema
    assert row["text"] == "My card number is 4111 1111 1111 1111, thanks."  # the input row is left alone


def test_without_word_timings_the_segments_times_stand_in():
    row = row_of("Hello there.", "Call me on 212 555 1234 today.", words=False)
    out = redact_row(row, Redaction.of("PHONE_NUMBER"))
    assert out["words"] == []
    assert out["segments"][1]["text"] == "Call me on [PHONE_NUMBER] today."
    (entity,) = out["entities"]
    assert (entity["type"], entity["start_ms"], entity["end_ms"]) == ("PHONE_NUMBER", 600, 2700)


@pytest.mark.parametrize(
    ("language", "region", "redacted"),
    [("en-GB", None, True), ("en-US", None, False), ("en-US", "GB", True), ("xx-QQ", None, False)],
)
def test_phone_numbers_are_looked_for_in_the_rows_language_region_unless_one_is_given(language, region, redacted):
    row = row_of("Our office is 020 7946 0018 in London.", language=language)
    out = redact_row(row, Redaction.of("PHONE_NUMBER", phone_region=region))
    assert ("[PHONE_NUMBER]" in out["text"]) is redacted, out["text"]


def test_profanity_alone_masks_without_entities():
    out = redact_row(row_of("What the fuck is this."), Redaction.of(profanity="tag"))
    assert out["text"] == "What the [PROFANITY] is this." and out["entities"] == []
    assert "[PROFANITY]" in out["segments"][0]["text"] and "[PROFANITY]" in [w["word"] for w in out["words"]]


def test_the_unredacted_row_keeps_only_its_own_columns():
    row = row_of("My SSN is 123 45 6789.")
    assert list(unredacted_row(row)) == UNREDACTED_SCHEMA.names
    assert "entities" not in UNREDACTED_SCHEMA.names and "confidence" not in UNREDACTED_SCHEMA.names


def test_bad_settings_fail_when_the_transform_is_built():
    with pytest.raises(ValueError, match="SHOE"):
        Redaction.of("SHOE")
    with pytest.raises(ValueError, match="phone region"):
        Redaction.of("all", phone_region="QQ")
    with pytest.raises(ValueError, match="profanity"):
        Redaction.of("all", profanity="bleep")
    with pytest.raises(ValueError, match="keep_original"):
        Redaction.of(keep_original=True)
    assert not Redaction.of().enabled and not Redaction.of("").enabled
