"""A redaction policy (types, phone region, profanity) and how it applies to a final and to a live partial.

One object for both ends: the jobs redact transcript rows with it (``voxbeam.beam.redacting``), ``voxbeam
serve`` each final and partial of a session that asked for it in its init.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from voxbeam.redaction._api import redact, redact_text
from voxbeam.redaction._types import (
    DEFAULT_REGION,
    PROFANITY_MODES,
    Redacted,
    TimedWord,
    WordLike,
    parse_types,
    region_for,
)


@dataclass(frozen=True)
class Policy:
    """Entity types to mask, the phone region (None: the language's, else US) and a profanity mode (None: kept).

    ``of`` checks the values (``ValueError`` naming the bad one), so a policy that exists is usable.
    """

    types: frozenset[str] = field(default_factory=frozenset)
    phone_region: str | None = None
    profanity: str | None = None

    @classmethod
    def of(
        cls, types: str | Iterable[str] | None = None, *, phone_region: str | None = None, profanity: str | None = None
    ) -> Policy:
        region = region_for(phone_region) if phone_region else None
        if profanity is not None and profanity not in PROFANITY_MODES:
            raise ValueError(f"unknown profanity mode {profanity!r} (known: {', '.join(PROFANITY_MODES)})")
        return cls(parse_types(types or ()), region, profanity)

    @property
    def enabled(self) -> bool:
        return bool(self.types) or self.profanity is not None

    def region(self, language: str | None) -> str:
        """The phone region for speech in ``language``: the policy's own, else the language's, else US."""
        if self.phone_region:
            return self.phone_region
        try:
            return region_for(None, language)
        except ValueError:  # a language tag naming a region phonenumbers does not know
            return DEFAULT_REGION

    def final(
        self,
        words: Sequence[WordLike] | None,
        text: str,
        *,
        offset_ms: int = 0,
        duration_ms: int = 0,
        language: str | None = None,
        before: Sequence[WordLike] | None = None,
    ) -> Redacted:
        """A final transcript redacted: its words (or, without any, its tokens spanning its time) and its text.

        ``before``: when it is one of a session's finals, the words said before it (see ``find``); None: it is
        the whole transcript."""
        timed: Sequence[WordLike] = words or as_words(text, offset_ms, duration_ms)
        region, more = self.region(language), before is not None
        return redact(
            timed, self.types, text=text, region=region, profanity=self.profanity, before=before or (), open_end=more
        )

    def partial(self, text: str, language: str | None = None) -> str:
        """A live partial's text redacted, with the stricter policy for speech still under way
        (``partial=True``: every number of four digits or more masked, addresses being said held back)."""
        return redact_text(text, self.types, region=self.region(language), profanity=self.profanity, partial=True)


def as_words(text: str, offset_ms: int, duration_ms: int, confidence: float = 0.0) -> list[TimedWord]:
    """Stand-in words for text without word timings: each token spans the text's whole time.

    Entities found in them carry that time, the most that can be said of where they are.
    """
    return [TimedWord(t, offset_ms, duration_ms, confidence) for t in text.split()]
