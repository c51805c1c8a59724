"""The vocabulary every detector shares (cue words, number words, shapes) and the scan's common state."""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence

# A cue counts this many words before an entity's first word, or after its last.
CUE_BEFORE = 10
CUE_AFTER = 5
# Dates are common in speech, so a birth cue reaches less far back than the others.
BIRTH_CUE_BEFORE = 6

STRIP = " \t\r\n\"'“”‘’«»()[]{}<>,.;:!?¿¡…"
STRIP_IP = STRIP.replace(":", "")
TRAIL_CHARS = ".,;:!?…"
# Cue matching ignores dots and hyphens ("D.O.B.", "e-mail") but not apostrophes ("I'd" is not "ID").
KEY_DROP = re.compile(r"[.\-_]")


def cue_key(low: str) -> str:
    key = KEY_DROP.sub("", low)
    # "birthday's", "email's": the cue is the word before the contraction.
    return key[:-2] if key.endswith(("'s", "’s")) else key


def trail(word: str) -> str:
    return word[len(word.rstrip(TRAIL_CHARS)) :]


# Cue words by what they announce.
CUE_WORDS = {
    "card": "card cards visa mastercard master amex credit debit expiry expiration expires cvv cvc maestro jcb "
    "diners unionpay",
    "phone": "phone telephone call calling called mobile cell cellphone landline tel fax whatsapp dial ring "
    "text reach extension ext contact",
    "not_phone": "order invoice tracking reference ref ticket confirmation case account policy serial sku item "
    "transaction booking",
    "birth": "born birth birthday birthdate dob bday",
    "email": "email mail address",
    "ssn": "ssn social",
    "sin": "sin insurance",
    "bsn": "bsn burgerservicenummer sofinummer",
    "aadhaar": "aadhaar aadhar adhaar uid uidai",
    "be_id": "rijksregisternummer register registre",
    "es_id": "dni nie nif documento identidad",
    "id": "id identity identification national citizen",
    "iban": "iban bank account",
    "ip": "ip ipv4 server host hostname gateway router ping connect dns subnet",
}
CUES: dict[str, tuple[str, ...]] = {}
for _cat, _ws in CUE_WORDS.items():
    for _w in _ws.split():
        CUES[_w] = (*CUES.get(_w, ()), _cat)

UNITS = {
    "zero": 0, "oh": 0, "o": 0, "nought": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
    "six": 6, "seven": 7, "eight": 8, "nine": 9,
}  # fmt: skip
TEENS = {
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19,
}  # fmt: skip
TENS = {"twenty": 2, "thirty": 3, "forty": 4, "fifty": 5, "sixty": 6, "seventy": 7, "eighty": 8, "ninety": 9}
REPEAT = {"double": 2, "triple": 3}
# Words that may sit inside a spoken or written number without ending it.
JOINERS = frozenset({"-", "–", "—", "dash", "hyphen", "uh", "um", "er", "erm", "ah", "hmm"})
DOTS = frozenset({"dot", "point"})
LETTER_WORDS = {"zed": "Z"}

IPV4_SHAPE = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}", re.ASCII)
DATE_TOKEN = re.compile(r"(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4}|\d{2})|(\d{4})-(\d{1,2})-(\d{1,2})", re.ASCII)


def tens_digits(w: str, nxt: str) -> str | None:
    """Two digits for "forty", "forty one" (with ``nxt``) or "forty-one"; None if ``w`` is not one."""
    if "-" in w:
        tens, _, unit = w.partition("-")
        if tens in TENS and unit in UNITS and unit not in ("oh", "o", "zero"):
            return f"{TENS[tens]}{UNITS[unit]}"
        return None
    if w not in TENS:
        return None
    if nxt in UNITS and nxt not in ("oh", "o", "zero", "nought"):
        return f"{TENS[w]}{UNITS[nxt]}"
    return f"{TENS[w]}0"


class Words:
    """A word list's normalised forms and cue positions, and the spans detectors find in it."""

    def __init__(
        self, raw: Sequence[str], wanted: frozenset[str], region: str, partial: bool, open_end: bool = False
    ) -> None:
        self.n = len(raw)
        self.raw = raw
        self.core = [w.strip(STRIP) for w in raw]
        self.low = [c.lower() for c in self.core]
        self.wanted = wanted
        self.region = region
        self.partial = partial
        self.open_end = open_end  # a final that more may follow (a live session's): its last number may go on
        self.cues: dict[str, list[int]] = {}
        for i, low in enumerate(self.low):
            for cat in CUES.get(cue_key(low), ()):
                self.cues.setdefault(cat, []).append(i)
        self.found: list[tuple[int, int, str, float]] = []

    def _add(self, first: int, last: int, kind: str, confidence: float) -> None:
        self.found.append((first, last, kind, confidence))

    def _near(self, cats: Iterable[str], a: int, b: int, before: int = CUE_BEFORE, after: int = CUE_AFTER) -> bool:
        for cat in cats:
            at = self.cues.get(cat)
            if at:
                k = bisect.bisect_left(at, a - before)
                if k < len(at) and at[k] <= b + after:
                    return True
        return False
