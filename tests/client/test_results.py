"""The transcript a client builds from a service's finals: entities the service redacted."""

from __future__ import annotations

from voxbeam import protocol as p
from voxbeam.client.results import TranscriptBuilder


def _final(text: str, words: list[tuple[str, int, int]], entities: list[tuple[str, int, int]]) -> p.Transcript:
    return p.Transcript(
        "r1",
        text,
        True,
        offset=words[0][1] if words else 0,
        duration=words[-1][1] + words[-1][2] - words[0][1] if words else 0,
        words=tuple(p.TranscriptWord(w, at, length, 0.9) for w, at, length in words) if words else None,
        entities=tuple(p.TranscriptEntity(kind, a, b, 0.6) for kind, a, b in entities),
    )


def _entities(*finals: p.Transcript, offset_ms: int = 0) -> list[tuple[str, int, int]]:
    builder = TranscriptBuilder("en")
    builder.add(list(finals), "r1", offset_ms)
    return [(e.type, e.start_ms, e.end_ms) for e in builder.result(audio_duration_ms=9000, attempts=1).entities]


CARD_START = _final(
    "My card is [CARD_NUMBER].",
    [("My", 0, 200), ("card", 200, 300), ("is", 500, 200), ("[CARD_NUMBER].", 700, 1500)],
    [("CARD_NUMBER", 700, 2200)],
)


def test_a_value_redacted_in_two_finals_is_one_entity():
    # As one CI run saw it: Whisper wrote a full stop inside a card number, and a final ended there.
    rest = _final("[CARD_NUMBER].", [("[CARD_NUMBER].", 2400, 1300)], [("CARD_NUMBER", 2400, 3700)])
    assert _entities(CARD_START, rest) == [("CARD_NUMBER", 700, 3700)]
    assert _entities(CARD_START, rest, offset_ms=1000) == [("CARD_NUMBER", 1700, 4700)]


def test_values_with_words_between_or_of_another_type_stay_apart():
    said_between = _final(
        "and [CARD_NUMBER].", [("and", 2400, 200), ("[CARD_NUMBER].", 2600, 1300)], [("CARD_NUMBER", 2600, 3900)]
    )
    assert _entities(CARD_START, said_between) == [("CARD_NUMBER", 700, 2200), ("CARD_NUMBER", 2600, 3900)]
    between = _final("thanks.", [("thanks.", 2300, 300)], [])
    rest = _final("[CARD_NUMBER].", [("[CARD_NUMBER].", 2700, 1300)], [("CARD_NUMBER", 2700, 4000)])
    assert _entities(CARD_START, between, rest) == [("CARD_NUMBER", 700, 2200), ("CARD_NUMBER", 2700, 4000)]
    phone = _final("[PHONE_NUMBER].", [("[PHONE_NUMBER].", 2400, 1300)], [("PHONE_NUMBER", 2400, 3700)])
    assert _entities(CARD_START, phone) == [("CARD_NUMBER", 700, 2200), ("PHONE_NUMBER", 2400, 3700)]


def test_two_values_in_one_final_or_without_words_stay_apart():
    two = _final(
        "[CARD_NUMBER] [CARD_NUMBER]",
        [("[CARD_NUMBER]", 2400, 1300), ("[CARD_NUMBER]", 3700, 1300)],
        [("CARD_NUMBER", 2400, 3700), ("CARD_NUMBER", 3700, 5000)],
    )
    rest = _final("[CARD_NUMBER].", [("[CARD_NUMBER].", 2400, 1300)], [("CARD_NUMBER", 2400, 3700)])
    assert _entities(CARD_START, two) == [("CARD_NUMBER", 700, 3700), ("CARD_NUMBER", 3700, 5000)]
    wordless_start = _final("My card is [CARD_NUMBER].", [], [("CARD_NUMBER", 700, 2200)])
    wordless_rest = _final("[CARD_NUMBER].", [], [("CARD_NUMBER", 2400, 3700)])
    assert _entities(wordless_start, wordless_rest) == [("CARD_NUMBER", 700, 2200), ("CARD_NUMBER", 2400, 3700)]
    assert _entities(CARD_START, wordless_rest) == [("CARD_NUMBER", 700, 2200), ("CARD_NUMBER", 2400, 3700)]
    assert _entities(wordless_start, rest) == [("CARD_NUMBER", 700, 2200), ("CARD_NUMBER", 2400, 3700)]
