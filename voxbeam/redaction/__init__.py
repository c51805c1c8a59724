"""Personal data in transcripts: found in timed words, masked in words and text, offline.

Shared by client and server, so it imports only the standard library and ``phonenumbers``.
``find(words, types)`` gives each entity's type, times, word indices and confidence, never its
value; ``redact`` replaces each entity's words by one placeholder word spanning their time
(``[CARD_NUMBER]``), and the text consistently; ``redact_text`` does the same to text alone.
``Policy`` holds what to redact and applies it to a final or, more strictly, to a live partial (the
server's ``redact`` init extension and the jobs share it).
Types, spoken forms, checksums, cue words and the misheard-digit policy: docs/redaction.md.

Modules: ``_types`` (public types), ``_lexicon`` (shared vocabulary, scan state), ``_numbers``
(cards, phones, ids, IBANs), ``_checks`` (check digits), ``_addresses`` (email, IP, dates of
birth), ``_masking`` (placing entities in text, profanity), ``_api`` (the functions below), ``_policy`` (``Policy``).
"""

from voxbeam.redaction._api import find, redact, redact_text
from voxbeam.redaction._policy import Policy, as_words
from voxbeam.redaction._types import (
    DEFAULT_REGION,
    DIGIT_TYPES,
    ENTITY_TYPES,
    HELD,
    PROFANITY_MODES,
    PROFANITY_TAG,
    Entity,
    Redacted,
    TimedWord,
    WordLike,
    parse_types,
    region_for,
)

__all__ = [
    "DEFAULT_REGION",
    "DIGIT_TYPES",
    "ENTITY_TYPES",
    "HELD",
    "PROFANITY_MODES",
    "PROFANITY_TAG",
    "Entity",
    "Policy",
    "Redacted",
    "TimedWord",
    "WordLike",
    "as_words",
    "find",
    "parse_types",
    "redact",
    "redact_text",
    "region_for",
]
