"""The public types: entity types, timed words, entities, results; the type and region arguments."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import phonenumbers

ENTITY_TYPES: tuple[str, ...] = (
    "CARD_NUMBER",
    "PHONE_NUMBER",
    "EMAIL",
    "IBAN",
    "IP_ADDRESS",
    "DATE_OF_BIRTH",
    "NATIONAL_ID",
)
PROFANITY_MODES: tuple[str, ...] = ("mask", "remove", "tag")
PROFANITY_TAG = "[PROFANITY]"
DEFAULT_REGION = "US"
# What a live partial masks a number with when no cue says what it is (docs/redaction.md#partials):
# never an entity's type, since it is not one yet.
HELD = "NUMBER"
# The types a digit run may grow into: while one is wanted, a partial masks its numbers of four digits or more.
DIGIT_TYPES = frozenset({"CARD_NUMBER", "PHONE_NUMBER", "NATIONAL_ID", "IBAN"})


class WordLike(Protocol):
    """Anything with a recognised word's attributes (the client's and server's word types have them)."""

    @property
    def word(self) -> str: ...
    @property
    def offset_ms(self) -> int: ...
    @property
    def duration_ms(self) -> int: ...
    @property
    def confidence(self) -> float: ...


@dataclass(frozen=True)
class TimedWord:
    word: str
    offset_ms: int
    duration_ms: int
    confidence: float = 1.0


@dataclass(frozen=True)
class Entity:
    """Where personal data is: word indices (inclusive) and times. Never the value itself."""

    type: str
    start_ms: int
    end_ms: int
    confidence: float
    first_word: int
    last_word: int


@dataclass(frozen=True)
class Redacted:
    """Words with each entity as one placeholder word (same span of time), the text, the entities."""

    words: tuple[TimedWord, ...]
    text: str
    entities: tuple[Entity, ...]


def parse_types(spec: str | Iterable[str]) -> frozenset[str]:
    """``"all"``, ``"EMAIL,PHONE_NUMBER"`` or a list of names (any case) as a set of entity types."""
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    out: set[str] = set()
    unknown: list[str] = []
    for name in (n.strip().upper() for n in names):
        if name == "ALL":
            out.update(ENTITY_TYPES)
        elif name in ENTITY_TYPES:
            out.add(name)
        elif name:
            unknown.append(name)
    if unknown:
        raise ValueError(f"unknown redaction type(s): {', '.join(unknown)} (known: all, {', '.join(ENTITY_TYPES)})")
    return frozenset(out)


# A language's usual region, for phone numbers when the caller names a language without one.
LANGUAGE_REGION = {
    "en": "US", "de": "DE", "fr": "FR", "es": "ES", "it": "IT", "nl": "NL", "pt": "PT", "pl": "PL",
    "sv": "SE", "da": "DK", "nb": "NO", "no": "NO", "nn": "NO", "fi": "FI", "cs": "CZ", "sk": "SK",
    "hu": "HU", "ro": "RO", "bg": "BG", "el": "GR", "tr": "TR", "ru": "RU", "uk": "UA", "he": "IL",
    "ar": "SA", "hi": "IN", "ja": "JP", "ko": "KR", "zh": "CN", "id": "ID", "ms": "MY", "th": "TH",
    "vi": "VN", "ca": "ES", "hr": "HR", "sl": "SI", "sr": "RS", "lt": "LT", "lv": "LV", "et": "EE",
}  # fmt: skip


def region_for(region: str | None = None, language: str | None = None) -> str:
    """The phone region: ``region`` if given, else the language's ("en-GB" -> GB, "de" -> DE), else US."""
    if region is None and language:
        base, _, sub = language.replace("_", "-").partition("-")
        sub = sub.split("-")[-1] if sub else ""
        region = sub.upper() if len(sub) == 2 and sub.isalpha() else LANGUAGE_REGION.get(base.lower())
    region = (region or DEFAULT_REGION).upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"unknown phone region {region!r}")
    return region
