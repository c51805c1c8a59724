"""Personal data in transcripts: found in timed words, masked in words and text, offline.

Shared by client and server, so it imports only the standard library and ``phonenumbers``. The input
is what a Whisper recognizer gives: words with punctuation attached ("Visa,", "4111."), numbers as
digits ("4111", "1,234", "555-0123") or spoken ("four one one one", "double five", "oh"). English
spoken forms are understood (digit words, "double"/"triple", teens and tens, "X hundred", "plus",
"dash", "at"/"dot"); written forms in any language. Cue words are English, plus the ids' own names.

Types (``ENTITY_TYPES``) and what it takes to be one:

- ``CARD_NUMBER``: 13-19 digits passing Luhn, starting with 2-6 (the payment-card industries of
  ISO/IEC 7812) unless a card cue is near.
- ``PHONE_NUMBER``: 7-17 digits that ``phonenumbers`` calls valid for the region (given, from the
  language, or "US"); a number it calls only possible counts when a phone cue ("call", "phone",
  "mobile"...) is near. A valid number right after "order", "invoice", "tracking", "reference"...
  with no phone cue is left alone (order numbers are often valid-looking 10-digit numbers).
- ``EMAIL``: written (``a.b@example.com``) or spoken ("a dot b at example dot com", "support at
  example.io"): a domain with a known TLD (or any two letters) after "at", and before it a local
  part that is not a function word or a verb that takes "at" ("we met at example dot com" stays).
  After an "email"/"address" cue, up to two more name words count ("my email is john smith at ...").
- ``IBAN``: country code, length for that country and the mod-97 check.
- ``IP_ADDRESS``: IPv4 and IPv6 as ``ipaddress`` parses them; IPv4 spoken with "dot"/"point" too.
- ``DATE_OF_BIRTH``: a full date (day and month, year optional: "March 3rd, 1985", "3/3/1985",
  "the third of March nineteen eighty five") with a birth cue ("born", "birth", "birthday", "DOB")
  within ``BIRTH_CUE_BEFORE`` words before it or ``CUE_AFTER`` after. Dates without a cue are not
  personal data here, and a year or month alone is never redacted ("born in 1985" stays: a year of
  birth is a weak identifier, and taking every year near "born" would take out too much). Cost: an
  unrelated date in the same breath as a cue is redacted ("I was born in Ohio, moved May 2nd").
- ``NATIONAL_ID``, only where a check exists, or a cue plus structure rules stand in for one.
  Without a cue: Spanish DNI and NIE (check letter; a cue as well when number and letter are
  separate words) and French NIR (mod-97 key, sex digit, month; Corsican 2A/2B not covered). With
  a cue, as their checks pass one random number in 10 to 23: Dutch BSN (11-proof), Indian Aadhaar
  (Verhoeff), Canadian SIN (Luhn), Belgian national number (mod 97, both centuries), and the US
  SSN, which has no check at all: "social security"/"SSN"/"social" near, area not 000, 666 or 9xx,
  group not 00, serial not 0000. The checks are a few lines each and written here: python-stdnum
  has them, but it is LGPL, and finding the numbers in speech would still be ours to do.

Not covered: spoken forms in other languages than English, spoken IPv6, number homophones
("to", "for"), and a misheard card number with no card cue near (it fails Luhn and stays).

The misheard digit policy. One misheard digit makes a real card number fail Luhn, and then it
leaks. So a digit run of at least 13 digits with a card cue ("card", "visa", "mastercard", "amex",
"credit", "debit", "expiry", "cvv"...) within ``CUE_BEFORE`` words before it or ``CUE_AFTER`` after
is redacted whole as ``CARD_NUMBER`` whether or not it passes Luhn: confidence 0.95 when part of it
passes, 0.6 when none does. A dropped or doubled digit (15 or 17 digits) is caught too, and so are
expiry date and CVV read on in the same run. The cost is precision: any long number near those
words goes, e.g. a 16-digit order number said right after "card" ("I paid by card, order
1234 5678 9012 3456") or a gift card's serial. Without a cue, Luhn (and the 2-6 start) decides: a
Luhn-invalid "order number 4111 1111 1111 1112" stays. IBANs get the same policy with an "IBAN"/
"bank"/"account" cue (a run starting with a country code, at most two characters short).

Live partials (``partial=True``): the number being spoken is not finished yet, so a digit run of at
least 4 digits at the very end of the text with a card, id or phone cue near is redacted (0.5).

Confidence is per entity: checksum and cue 0.95, checksum or validity alone 0.85-0.9, structure
with a cue 0.8, cue only 0.5-0.6.

Redaction keeps timings: an entity's words become one placeholder word, ``[CARD_NUMBER]``, that spans
them (offset of the first, to the end of the last) and keeps the last one's trailing punctuation, so
captions and audio bleeps line up. Text (Whisper's punctuated text, which is not the words joined)
is redacted consistently by ``redact_text``: entities are found in the text's own tokens, the words'
entities are located in it by aligning normalised tokens, and both are replaced.

Nothing here keeps, logs or raises with a raw value: ``Entity`` holds a type, times, word indices
and a confidence only.

Profanity (``profanity=``): ``"mask"`` (first letter and asterisks), ``"remove"`` or ``"tag"``
(``[PROFANITY]``), from a short English list written for this module (strong words and two slurs;
mild ones like "damn" and ambiguous ones like "cock" are left out). Words Whisper already starred
("f***ing") count as profane.
"""

from __future__ import annotations

import bisect
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple, Protocol

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
# A cue counts this many words before an entity's first word, or after its last.
CUE_BEFORE = 10
CUE_AFTER = 5
# Dates are common in speech, so a birth cue reaches less far back than the others.
BIRTH_CUE_BEFORE = 6


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
_LANGUAGE_REGION = {
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
        region = sub.upper() if len(sub) == 2 and sub.isalpha() else _LANGUAGE_REGION.get(base.lower())
    region = (region or DEFAULT_REGION).upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"unknown phone region {region!r}")
    return region


def find(
    words: Sequence[WordLike],
    types: str | Iterable[str],
    *,
    region: str | None = None,
    language: str | None = None,
    partial: bool = False,
) -> list[Entity]:
    """Entities of ``types`` in ``words``: non-overlapping, in order."""
    wanted = _types(types)
    spans = _Scan([w.word for w in words], wanted, region_for(region, language), partial).spans()
    out = []
    for first, last, kind, confidence in spans:
        start = min(w.offset_ms for w in words[first : last + 1])
        end = max(w.offset_ms + w.duration_ms for w in words[first : last + 1])
        out.append(Entity(kind, start, end, confidence, first, last))
    return out


def redact(
    words: Sequence[WordLike],
    types: str | Iterable[str],
    *,
    text: str | None = None,
    region: str | None = None,
    language: str | None = None,
    profanity: str | None = None,
    partial: bool = False,
) -> Redacted:
    """``words`` (and ``text``, if given; else the redacted words joined) with entities replaced."""
    _check_profanity(profanity)
    types = _types(types)
    entities = find(words, types, region=region, language=language, partial=partial)
    starts = {e.first_word: e for e in entities}
    out: list[TimedWord] = []
    i = 0
    while i < len(words):
        entity = starts.get(i)
        if entity is not None:
            span = words[entity.first_word : entity.last_word + 1]
            out.append(
                TimedWord(
                    f"[{entity.type}]{_trail(span[-1].word)}",
                    entity.start_ms,
                    entity.end_ms - entity.start_ms,
                    min(w.confidence for w in span),
                )
            )
            i = entity.last_word + 1
            continue
        w = words[i]
        new = _swear(w.word, profanity) if profanity else w.word
        if new:
            out.append(TimedWord(new, w.offset_ms, w.duration_ms, w.confidence))
        elif _trail(w.word) and out and not _trail(out[-1].word):
            # A removed word's sentence punctuation stays, on the word before it (captions cut there).
            prev = out[-1]
            out[-1] = TimedWord(prev.word + _trail(w.word), prev.offset_ms, prev.duration_ms, prev.confidence)
        i += 1
    if text is None:
        new_text = " ".join(w.word for w in out)
    else:
        new_text = redact_text(
            text,
            types,
            words=words,
            entities=entities,
            region=region,
            language=language,
            profanity=profanity,
            partial=partial,
        )
    return Redacted(tuple(out), new_text, tuple(entities))


def redact_text(
    text: str,
    types: str | Iterable[str],
    *,
    words: Sequence[WordLike] | None = None,
    entities: Sequence[Entity] | None = None,
    region: str | None = None,
    language: str | None = None,
    profanity: str | None = None,
    partial: bool = False,
) -> str:
    """``text`` with entities replaced: those found in the text, and ``words``' ones located in it.

    Each replaced stretch of tokens becomes ``[TYPE]`` plus the last token's trailing punctuation.
    If a word entity cannot be placed in the text without taking much more than its own length (the
    text and the words disagree there), the text is rebuilt from the redacted words instead.
    """
    _check_profanity(profanity)
    wanted = _types(types)
    tokens = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    strs = [text[a:b] for a, b in tokens]
    spans: list[tuple[int, int, str]] = []
    same = False
    if words is not None and len(words):
        if entities is None:
            entities = find(words, wanted, region=region, language=language, partial=partial)
        wkeys, tkeys = _keys(w.word for w in words), _keys(strs)
        placed = _place(wkeys, tkeys, entities)
        if placed is None:
            return redact(words, wanted, region=region, language=language, profanity=profanity, partial=partial).text
        spans.extend(placed)
        # The same tokens (up to case and punctuation) hold the same entities: no need to look again.
        same = wkeys == tkeys
    if not same:
        found = _Scan(strs, wanted, region_for(region, language), partial).spans()
        spans.extend((a, b, kind) for a, b, kind, _ in found)
    merged: list[tuple[int, int, str]] = []
    for first, last, kind in sorted(spans):
        if merged and first <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(last, merged[-1][1]), merged[-1][2])
        else:
            merged.append((first, last, kind))
    out: list[str] = []
    pos = 0
    j = 0
    kept = False
    for k, (a, b) in enumerate(tokens):
        if j < len(merged) and merged[j][0] <= k:
            first, last, kind = merged[j]
            if k == first:
                out.append(text[pos:a])
                out.append(f"[{kind}]{_trail(strs[last])}")
            if k == last:
                j += 1
            pos, kept = b, True
            continue
        if profanity and (new := _swear(strs[k], profanity)) != strs[k]:
            if new:
                out.append(text[pos:a] + new)
                kept = True
            elif kept:
                # The space before a removed word goes; its sentence punctuation stays, on the word before.
                before = text[pos:a].rstrip()
                ends = before[-1:] if before else (out[-1][-1:] if out and out[-1] else "")
                out.append(before + ("" if ends and ends in _TRAIL_CHARS else _trail(strs[k])))
            else:
                b += len(text[b:]) - len(text[b:].lstrip())
            pos = b
            continue
        kept = True
    out.append(text[pos:])
    return "".join(out)


# ---- internals -----------------------------------------------------------------------------------

_STRIP = " \t\r\n\"'“”‘’«»()[]{}<>,.;:!?¿¡…"
_STRIP_IP = _STRIP.replace(":", "")
_TRAIL_CHARS = ".,;:!?…"
# Cue matching ignores dots and hyphens ("D.O.B.", "e-mail") but not apostrophes ("I'd" is not "ID").
_KEY_DROP = re.compile(r"[.\-_]")
_ALIGN_DROP = re.compile(r"[\W_]+")
# How far (in words, and in text tokens) alignment looks ahead to find text and words agreeing again.
_RESYNC = 40


def _cue_key(low: str) -> str:
    key = _KEY_DROP.sub("", low)
    # "birthday's", "email's": the cue is the word before the contraction.
    return key[:-2] if key.endswith(("'s", "’s")) else key


def _trail(word: str) -> str:
    return word[len(word.rstrip(_TRAIL_CHARS)) :]


@lru_cache(maxsize=64)
def _types_of(spec: str) -> frozenset[str]:
    return parse_types(spec)


def _types(types: str | Iterable[str]) -> frozenset[str]:
    return _types_of(types) if isinstance(types, str) else parse_types(types)


def _check_profanity(mode: str | None) -> None:
    if mode is not None and mode not in PROFANITY_MODES:
        raise ValueError(f"unknown profanity mode {mode!r} (known: {', '.join(PROFANITY_MODES)})")


# Cue words by what they announce.
_CUE_WORDS = {
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
}
_CUES: dict[str, tuple[str, ...]] = {}
for _cat, _ws in _CUE_WORDS.items():
    for _w in _ws.split():
        _CUES[_w] = (*_CUES.get(_w, ()), _cat)

_UNITS = {
    "zero": 0, "oh": 0, "o": 0, "nought": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
    "six": 6, "seven": 7, "eight": 8, "nine": 9,
}  # fmt: skip
_TEENS = {
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19,
}  # fmt: skip
_TENS = {"twenty": 2, "thirty": 3, "forty": 4, "fifty": 5, "sixty": 6, "seventy": 7, "eighty": 8, "ninety": 9}
_REPEAT = {"double": 2, "triple": 3}
# Words that may sit inside a spoken or written number without ending it.
_JOINERS = frozenset({"-", "–", "—", "dash", "hyphen", "uh", "um", "er", "erm", "ah", "hmm"})
_DOTS = frozenset({"dot", "point"})
_LETTER_WORDS = {"zed": "Z"}

_WRITTEN_NUMBER = re.compile(r"\+?\d[\d,.\-()]*", re.ASCII)
_IPV4_SHAPE = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}", re.ASCII)
_IPV6_SHAPE = re.compile(r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:\.\d{1,3}){0,3}")
_DATE_TOKEN = re.compile(r"(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4}|\d{2})|(\d{4})-(\d{1,2})-(\d{1,2})", re.ASCII)
_NON_DIGIT = re.compile(r"\D", re.ASCII)
_THOUSANDS = re.compile(r"\d{1,3}(?:,\d{3})+", re.ASCII)
_ALNUM_UPPER = re.compile(r"[A-Z0-9]+")


def _written_digits(core: str) -> str | None:
    """The digits of a written number ("4111", "1,234", "555-0123", "+44"); None for decimals, dates, IPs."""
    if not _WRITTEN_NUMBER.fullmatch(core):
        return None
    if core.count(".") == 1 or _IPV4_SHAPE.fullmatch(core) or _DATE_TOKEN.fullmatch(core):
        return None
    return _NON_DIGIT.sub("", core)


class _Group(NamedTuple):
    """Consecutive words that read as one block of digits ("4111", "double five", "forty one")."""

    first: int
    last: int
    digits: str
    plus: bool  # a "+"/"plus" before it: an international number
    weak: bool  # only "oh"/"o", which is also an interjection
    cut: bool  # a pause (comma, joiner) before it: where a phone number may start
    counted: bool  # written with thousands separators ("2,125,550"): a quantity, never a phone number


class _Piece(NamedTuple):
    first: int
    last: int
    chars: str


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


_VERHOEFF_D = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 0, 6, 7, 8, 9, 5], [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7], [4, 0, 1, 2, 3, 9, 5, 6, 7, 8], [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2], [7, 6, 5, 9, 8, 2, 1, 0, 4, 3], [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
]  # fmt: skip
_VERHOEFF_P = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 5, 7, 6, 2, 8, 3, 0, 9, 4], [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7], [9, 4, 5, 3, 1, 2, 6, 8, 7, 0], [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5], [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
]  # fmt: skip


def _verhoeff(digits: str) -> bool:
    c = 0
    for i, ch in enumerate(reversed(digits)):
        c = _VERHOEFF_D[c][_VERHOEFF_P[i % 8][ord(ch) - 48]]
    return c == 0


def _ssn_ok(s: str) -> bool:
    return s[:3] not in ("000", "666") and s[0] != "9" and s[3:5] != "00" and s[5:] != "0000"


def _bsn_ok(s: str) -> bool:
    return s != "000000000" and (sum(int(s[i]) * (9 - i) for i in range(8)) - int(s[8])) % 11 == 0


def _be_ok(s: str) -> bool:
    """Belgian national number: YYMMDD, serial, and 97 - (first nine mod 97); born 2000+ with a 2 before."""
    if int(s[2:4]) > 12 or int(s[4:6]) > 31:
        return False
    check = int(s[9:])
    return check in (97 - int(s[:9]) % 97, 97 - int("2" + s[:9]) % 97)


def _nir_ok(s: str) -> bool:
    """French NIR: sex (1, 2; 7, 8 provisional), YY, MM, place, order, key = 97 - (first 13 mod 97)."""
    month = int(s[3:5])
    if s[0] not in "1278" or not (1 <= month <= 12 or month == 20 or 30 <= month <= 42 or month >= 50):
        return False
    return int(s[13:]) == 97 - int(s[:13]) % 97


_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"
_DNI = re.compile(r"\d{8}[A-Z]|[XYZ]\d{7}[A-Z]")


def _dni_ok(s: str) -> bool:
    """Spanish DNI (8 digits and letter) or NIE (X/Y/Z, 7 digits, letter): the letter is number mod 23."""
    if not _DNI.fullmatch(s):
        return False
    number = str("XYZ".find(s[0])) + s[1:8] if s[0] in "XYZ" else s[:8]
    return _DNI_LETTERS[int(number) % 23] == s[8]


# IBAN lengths by country (SWIFT IBAN registry).
_IBAN_LENGTH = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
    "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip


def _iban_ok(s: str) -> bool:
    if not (s[2:4].isdigit() and s.isalnum()):
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


@lru_cache(maxsize=8192)
def _phone(digits: str, region: str) -> int:
    """2: valid for ``region``, 1: possible only, 0: neither."""
    try:
        number = phonenumbers.parse(digits, region)
    except phonenumbers.NumberParseException:
        return 0
    if phonenumbers.is_valid_number(number):
        return 2
    return 1 if phonenumbers.is_possible_number(number) else 0


_MONTHS = {
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3, "april": 4, "apr": 4, "may": 5,
    "june": 6, "jun": 6, "july": 7, "jul": 7, "august": 8, "aug": 8, "september": 9, "sep": 9, "sept": 9,
    "october": 10, "oct": 10, "november": 11, "nov": 11, "december": 12, "dec": 12,
}  # fmt: skip
_ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
    "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13, "fourteenth": 14,
    "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18, "nineteenth": 19,
    "twentieth": 20, "thirtieth": 30,
}  # fmt: skip
_DAY_NUMBER = re.compile(r"(\d{1,2})(?:st|nd|rd|th)?", re.ASCII)
_YEAR_NUMBER = re.compile(r"(?:19|20)\d\d", re.ASCII)

_TLDS = frozenset(
    "com org net edu gov mil int info biz io co ai app dev me tv xyz online site tech email name pro mobi".split()
)
_EMAIL_LOCAL = re.compile(r"[a-z0-9._%+-]+")
_DOMAIN = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)*")
_EMAIL_CONNECTORS = {"dot": ".", "period": ".", "underscore": "_", "dash": "-", "hyphen": "-"}
# Words that are no email's local part before "at": function words, and verbs that take "at".
_EMAIL_STOP = frozenset(
    (
        "is was were are am be been it's its it me my us him her them you we they he she i to at the a an and or of "
        "in on for from with by this that there here email mail address write send look looking looked visit "
        "visiting met meet meeting work works worked working find found available online stay staying stayed "
        "arrive arrived live lives lived based located shop sign signed log logged go went see seen buy bought "
        "sell sold up out off"
    ).split()
)

# Strong English profanity, written for this module (no external list): whole words only.
_PROFANE = frozenset(
    (
        "fuck fucks fucked fucker fuckers fucking fuckin fuckup fuckwit fuckhead motherfucker motherfuckers "
        "motherfucking shit shits shitty shitting shitted shithead shitheads bullshit horseshit bitch bitches "
        "bitching bitchy bastard bastards asshole assholes arsehole arseholes dumbass jackass cunt cunts "
        "dickhead dickheads wanker wankers wank wanking twat twats bollocks piss pissing slut sluts whore whores "
        "cocksucker cocksuckers nigger niggers faggot faggots"
    ).split()
)
_STARRED = re.compile(r"[a-z]\*{2,}[a-z]*")


def _swear(word: str, mode: str | None) -> str:
    """``word`` masked, tagged or removed ("") if profane; else itself."""
    core = word.strip(_STRIP)
    low = core.lower()
    if not core or not (low in _PROFANE or _STARRED.fullmatch(low)):
        return word
    if mode == "remove":
        return ""
    start = word.find(core)
    new = core[0] + "*" * (len(core) - 1) if mode == "mask" else PROFANITY_TAG
    return word[:start] + new + word[start + len(core) :]


def _keys(tokens: Iterable[str]) -> list[str]:
    return [_ALIGN_DROP.sub("", t.lower()) for t in tokens]


def _align(wkeys: list[str], tkeys: list[str]) -> list[int | None]:
    """For each word, the text token it matches (None where the two differ), in one forward pass.

    Text and words differ only locally (punctuation, "4111" for "four one one one"), so after a
    difference the pass looks ahead for the nearest place where two consecutive keys agree again.
    """
    out: list[int | None] = [None] * len(wkeys)
    n, m = len(wkeys), len(tkeys)
    i = j = 0
    while i < n and j < m:
        if wkeys[i] == tkeys[j]:
            out[i] = j
            i, j = i + 1, j + 1
            continue
        found = None
        for d in range(1, 2 * _RESYNC + 1):
            for di in range(max(0, d - _RESYNC), min(d, _RESYNC) + 1):
                a, b = i + di, j + d - di
                if (
                    a < n
                    and b < m
                    and wkeys[a]
                    and wkeys[a] == tkeys[b]
                    and (a + 1 == n or b + 1 == m or wkeys[a + 1] == tkeys[b + 1])
                ):
                    found = a, b
                    break
            if found:
                break
        if found is None:
            break  # lost: what follows stays unplaced, and entities there make the caller rebuild the text
        i, j = found
    return out


def _place(wkeys: list[str], tkeys: list[str], entities: Sequence[Entity]) -> list[tuple[int, int, str]] | None:
    """Token spans in the text for ``entities`` of the words, by aligned keys; None if one cannot be placed."""
    if not entities:
        return []
    to_token = list(range(len(wkeys))) if wkeys == tkeys else _align(wkeys, tkeys)
    known = [i for i, t in enumerate(to_token) if t is not None]
    out: list[tuple[int, int, str]] = []
    for e in entities:
        first = to_token[e.first_word]
        if first is None:
            k = bisect.bisect_left(known, e.first_word) - 1
            before = to_token[known[k]] if k >= 0 else None
            first = 0 if before is None else before + 1
        last = to_token[e.last_word]
        if last is None:
            k = bisect.bisect_right(known, e.last_word)
            after = to_token[known[k]] if k < len(known) else None
            last = len(tkeys) - 1 if after is None else after - 1
        if first > last:
            continue  # the text has nothing where the entity is
        if last - first + 1 > 3 * (e.last_word - e.first_word + 1) + 8:
            return None
        out.append((first, last, e.type))
    return out


class _Scan:
    """One pass over a word list: normalised forms, digit groups, runs, then each detector."""

    def __init__(self, raw: Sequence[str], wanted: frozenset[str], region: str, partial: bool) -> None:
        self.n = len(raw)
        self.raw = raw
        self.core = [w.strip(_STRIP) for w in raw]
        self.low = [c.lower() for c in self.core]
        self.wanted = wanted
        self.region = region
        self.partial = partial
        self.cues: dict[str, list[int]] = {}
        for i, low in enumerate(self.low):
            for cat in _CUES.get(_cue_key(low), ()):
                self.cues.setdefault(cat, []).append(i)
        self.found: list[tuple[int, int, str, float]] = []

    def spans(self) -> list[tuple[int, int, str, float]]:
        """Non-overlapping (first, last, type, confidence) of the wanted types.

        Overlapping finds merge into one span, named by the longest (then surest) of them; every type
        is looked for, so that asking for fewer types does not turn, say, an IBAN's digits into a card.
        """
        if not self.wanted or not self.n:
            return []
        groups = self._groups()
        for run in self._runs(groups):
            self._numeric(run)
        self._alphanumeric(groups)
        self._ips(groups)
        self._emails()
        self._dates()
        out: list[tuple[int, int, str, float]] = []
        best: tuple[int, int, str, float] | None = None
        for first, last, kind, conf in sorted(self.found):
            if out and first <= out[-1][1]:
                assert best is not None
                if (last - first, conf) > (best[1] - best[0], best[3]):
                    best = (first, last, kind, conf)
                out[-1] = (out[-1][0], max(last, out[-1][1]), best[2], best[3])
            else:
                best = (first, last, kind, conf)
                out.append(best)
        return [s for s in out if s[2] in self.wanted]

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

    # -- numbers

    def _groups(self) -> list[_Group]:
        low, core, raw = self.low, self.core, self.raw
        out: list[_Group] = []
        plus = False
        i = 0
        while i < self.n:
            w = low[i]
            start = i
            digits: str | None = None
            weak = False
            count = False
            if w and w[0] in "0123456789+":
                digits = _written_digits(core[i])
                plus = plus or core[i].startswith("+")
                count = bool(_THOUSANDS.fullmatch(core[i]))
                i += 1
            elif w in _UNITS:
                nxt = low[i + 1] if i + 1 < self.n else ""
                if nxt == "hundred" and w not in ("oh", "o"):
                    after = low[i + 2] if i + 2 < self.n else ""
                    if after in _TEENS:
                        digits, i = f"{_UNITS[w]}{_TEENS[after]}", i + 3
                    elif after in _TENS:
                        unit = _UNITS.get(low[i + 3], 0) if i + 3 < self.n and low[i + 3] not in ("oh", "o") else 0
                        digits, i = f"{_UNITS[w]}{_TENS[after]}{unit}", i + (4 if unit else 3)
                    else:
                        digits, i = f"{_UNITS[w]}00", i + 2
                else:
                    digits, weak, i = str(_UNITS[w]), w in ("oh", "o"), i + 1
            elif w in _TEENS:
                digits, i = str(_TEENS[w]), i + 1
            elif w in _TENS or "-" in w:
                digits, i = _tens(w, low[i + 1] if i + 1 < self.n else ""), i + 1
                if digits is not None and len(digits) == 2 and digits[1] != "0" and "-" not in w:
                    i += 1
            elif w in _REPEAT and i + 1 < self.n and low[i + 1] in _UNITS:
                digits, i = str(_UNITS[low[i + 1]]) * _REPEAT[w], i + 2
            elif w == "plus" and i + 1 < self.n:
                plus = True
                i += 1
                continue
            else:
                i += 1
            if digits:
                had_plus = plus or (start > 0 and low[start - 1] == "plus")
                cut = start == 0 or raw[start - 1].endswith((",", ";", ":")) or low[start - 1] in _JOINERS
                first = start - 1 if had_plus and start > 0 and low[start - 1] == "plus" else start
                out.append(_Group(first, i - 1, digits, had_plus, weak, cut, count))
            plus = False
        return out

    def _runs(self, groups: list[_Group]) -> list[list[_Group]]:
        """Groups next to each other (or with only joiners between) as runs; runs of only "oh" dropped."""
        runs: list[list[_Group]] = []
        for g in groups:
            if runs and self._joined(runs[-1][-1].last, g.first):
                runs[-1].append(g)
            else:
                runs.append([g])
        return [r for r in runs if not all(g.weak for g in r)]

    def _joined(self, last: int, first: int) -> bool:
        gap = range(last + 1, first)
        return len(gap) <= 2 and all(self.low[k] in _JOINERS for k in gap)

    def _numeric(self, run: list[_Group]) -> None:
        offs = [0]
        for g in run:
            offs.append(offs[-1] + len(g.digits))
        digits = "".join(g.digits for g in run)
        first, last = run[0].first, run[-1].last
        total = len(digits)
        if self.partial and last == self.n - 1 and total >= 4:
            for cats, kind in (("card",), "CARD_NUMBER"), (("ssn", "sin", "bsn", "aadhaar", "id"), "NATIONAL_ID"):
                if self._near(cats, first, last):
                    self._add(first, last, kind, 0.5)
                    break
            else:
                if self._near(("phone",), first, last):
                    self._add(first, last, "PHONE_NUMBER", 0.5)
        if total < 7:
            return
        luhn_found = False
        for a in range(len(run)):
            for b in range(a, len(run)):
                size = offs[b + 1] - offs[a]
                if size > 19:
                    break
                s = digits[offs[a] : offs[b + 1]]
                f, t = run[a].first, run[b].last
                if size >= 13 and _luhn(s):
                    cue = self._near(("card",), f, t)
                    if cue or s[0] in "23456":
                        luhn_found = True
                        self._add(f, t, "CARD_NUMBER", 0.95 if cue else 0.9)
                self._national(s, f, t)
        if total >= 13 and self._near(("card",), first, last):
            self._add(first, last, "CARD_NUMBER", 0.95 if luhn_found else 0.6)
        self._phones(run, offs, digits)

    def _national(self, s: str, f: int, t: int) -> None:
        size = len(s)
        if size == 9:
            if self._near(("ssn",), f, t) and _ssn_ok(s):
                self._add(f, t, "NATIONAL_ID", 0.8)
            if self._near(("sin",), f, t) and s[0] not in "08" and _luhn(s):
                self._add(f, t, "NATIONAL_ID", 0.85)
            if self._near(("bsn", "id"), f, t) and _bsn_ok(s):
                self._add(f, t, "NATIONAL_ID", 0.85)
        elif size == 11:
            if self._near(("be_id", "id"), f, t) and _be_ok(s):
                self._add(f, t, "NATIONAL_ID", 0.85)
        elif size == 12:
            if s[0] in "23456789" and self._near(("aadhaar", "id"), f, t) and _verhoeff(s):
                self._add(f, t, "NATIONAL_ID", 0.85)
        elif size == 15 and _nir_ok(s):
            self._add(f, t, "NATIONAL_ID", 0.92)

    def _phones(self, run: list[_Group], offs: list[int], digits: str) -> None:
        first, last = run[0].first, run[-1].last
        cue = self._near(("phone",), first, last)
        if not cue and self._near(("not_phone",), first, last, before=4, after=0):
            return
        for a in range(len(run)):
            if a > 2 and not (run[a].cut or run[a].plus):
                continue
            ends = []
            for b in range(a, len(run)):
                if run[b].counted or offs[b + 1] - offs[a] > 17:
                    break
                if offs[b + 1] - offs[a] >= 7:
                    ends.append(b)
            possible = None
            for b in reversed(ends):
                s = ("+" if run[a].plus else "") + digits[offs[a] : offs[b + 1]]
                status = _phone(s, self.region)
                if status == 2:
                    self._add(run[a].first, run[b].last, "PHONE_NUMBER", 0.95 if cue else 0.85)
                    break
                if status == 1 and possible is None:
                    possible = b
            else:
                if possible is not None and cue:
                    self._add(run[a].first, run[possible].last, "PHONE_NUMBER", 0.6)

    def _alphanumeric(self, groups: list[_Group]) -> None:
        """IBANs and Spanish DNI/NIE: digit groups and upper-case letters/codes ("DE89", "NWBK", "Z")."""
        pieces: list[_Piece] = []
        by_first = {g.first: g for g in groups}
        i = 0
        has_letter = False
        while i < self.n:
            g = by_first.get(i)
            if g is not None:
                pieces.append(_Piece(g.first, g.last, g.digits))
                i = g.last + 1
                continue
            chars = _LETTER_WORDS.get(self.low[i]) or self.core[i].replace("-", "")
            if len(chars) <= 34 and _ALNUM_UPPER.fullmatch(chars) and not chars.isdigit():
                pieces.append(_Piece(i, i, chars))
                has_letter = True
            i += 1
        if not has_letter:
            return
        runs: list[list[_Piece]] = []
        for p in pieces:
            if runs and self._joined(runs[-1][-1].last, p.first):
                runs[-1].append(p)
            else:
                runs.append([p])
        for run in runs:
            chars = "".join(p.chars for p in run)
            if len(chars) < 9 or chars.isdigit():
                continue
            offs = [0]
            for p in run:
                offs.append(offs[-1] + len(p.chars))
            at = {o: k for k, o in enumerate(offs)}
            for a, p in enumerate(run):
                start = offs[a]
                need = _IBAN_LENGTH.get(chars[start : start + 2])
                if need is not None:
                    b = at.get(start + need)
                    if b is not None and _iban_ok(chars[start : start + need]):
                        self._add(p.first, run[b - 1].last, "IBAN", 0.95)
                    elif len(chars) - start >= need - 2 and self._near(("iban",), p.first, run[-1].last):
                        self._add(p.first, run[-1].last, "IBAN", 0.6)
                end = offs[a + 1]
                if end >= 9 and chars[end - 1].isalpha() and (end - 9) in at and _dni_ok(chars[end - 9 : end]):
                    first = run[at[end - 9]].first
                    # Written as one word ("12345678Z") the form speaks for itself; spread over words, a cue must.
                    if first == p.first or self._near(("es_id", "id"), first, p.last):
                        self._add(first, p.last, "NATIONAL_ID", 0.9)

    # -- addresses

    def _ips(self, groups: list[_Group]) -> None:
        for i, word in enumerate(self.raw):
            # Colons belong to IPv6 addresses ("::1"), so only other punctuation comes off.
            core = word.strip(_STRIP_IP)
            if len(core) > 2 and (_IPV4_SHAPE.fullmatch(core) or _IPV6_SHAPE.fullmatch(core)):
                try:
                    ipaddress.ip_address(core)
                except ValueError:
                    continue
                self._add(i, i, "IP_ADDRESS", 0.9)
        by_first = {g.first: g for g in groups}
        lasts = {g.last for g in groups}
        for g in groups:
            if g.first > 0 and (self.low[g.first - 1] in _DOTS or g.first - 1 in lasts):
                continue  # inside a longer number, not its start
            k = g.first
            parts = 0
            while parts < 4:
                digits = ""
                while k in by_first:
                    digits += by_first[k].digits
                    k = by_first[k].last + 1
                if not digits or len(digits) > 3 or int(digits) > 255 or (len(digits) > 1 and digits[0] == "0"):
                    break
                parts += 1
                if parts < 4:
                    if k < self.n and self.low[k] in _DOTS:
                        k += 1
                    else:
                        break
            fifth = k + 1 < self.n and self.low[k] in _DOTS and (k + 1) in by_first
            if parts == 4 and not fifth:
                self._add(g.first, k - 1, "IP_ADDRESS", 0.85)

    def _emails(self) -> None:
        low, core = self.low, self.core
        for i, w in enumerate(low):
            if "@" in w and w != "@":
                local, _, domain = w.partition("@")
                if not _EMAIL_LOCAL.fullmatch(local):
                    continue
                end = self._domain(i + 1, domain)
                if end is not None:
                    self._add(i, end, "EMAIL", 0.95)
            elif w in ("at", "@") and 0 < i < self.n - 1:
                end = self._domain(i + 1, "")
                if end is None:
                    continue
                start = self._local(i)
                if start is not None:
                    self._add(start, end, "EMAIL", 0.85 if "@" not in core[i] else 0.95)

    def _domain(self, k: int, written: str) -> int | None:
        """The last word of a domain starting with ``written`` (after "@") or at word ``k``; None if none."""
        labels = written.split(".") if written else []
        if written and not _DOMAIN.fullmatch(written):
            return None
        end = k - 1
        if not labels:
            if k >= self.n or not _DOMAIN.fullmatch(self.low[k]):
                return None
            labels = self.low[k].split(".")
            end = k
        while end + 2 < self.n and self.low[end + 1] in _DOTS and _DOMAIN.fullmatch(self.low[end + 2]):
            labels.extend(self.low[end + 2].split("."))
            end += 2
        tld = labels[-1]
        if len(labels) < 2 or not all(labels) or not (tld in _TLDS or (len(tld) == 2 and tld.isalpha())):
            return None
        return end

    def _local(self, at: int) -> int | None:
        """Where a spoken email's local part starts (back from "at"); None if the word before is no local part."""
        low = self.low
        k = at - 1
        if low[k] in _EMAIL_STOP or not _EMAIL_LOCAL.fullmatch(low[k]):
            return None
        joined = False
        while k >= 2 and low[k - 1] in _EMAIL_CONNECTORS and _EMAIL_LOCAL.fullmatch(low[k - 2]):
            if low[k - 2] in _EMAIL_STOP:
                break
            k -= 2
            joined = True
        if not joined and self._near(("email",), k, k, after=0):
            # "my email is john smith at ...": the name before "at" is all of it, up to a stop word.
            for _ in range(2):
                prev = low[k - 1] if k > 0 else ""
                if not prev.isalpha() or prev in _EMAIL_STOP or _cue_key(prev) in _CUES:
                    break
                k -= 1
        return k

    # -- dates of birth

    def _dates(self) -> None:
        low = self.low
        for i, w in enumerate(low):
            if not w:
                continue
            span: tuple[int, int] | None = None
            m = _DATE_TOKEN.fullmatch(w)
            if m:
                if m.group(1):
                    a, b = int(m.group(1)), int(m.group(2))
                    ok = (1 <= a <= 12 and 1 <= b <= 31) or (1 <= b <= 12 and 1 <= a <= 31)
                else:
                    ok = 1 <= int(m.group(5)) <= 12 and 1 <= int(m.group(6)) <= 31
                span = (i, i) if ok else None
            elif w in _MONTHS:
                # MONTH [the] DAY [YEAR]
                k = i + 1 + (i + 1 < self.n and low[i + 1] == "the")
                day = self._day(k)
                year = self._year(k) if k < self.n and not self.raw[k].endswith(",") else None
                # "March nineteen eighty five" is a month and year, not March 19th.
                if day is not None and (year is None or year < day):
                    span = (i, self._year(day) or day - 1)
            else:
                # DAY [of] MONTH [YEAR]
                day = self._day(i)
                if day is not None:
                    k = day + (day < self.n and low[day] == "of")
                    if k < self.n and low[k] in _MONTHS:
                        span = (i, self._year(k + 1) or k)
            if span and self._near(("birth",), span[0], span[1], before=BIRTH_CUE_BEFORE):
                self._add(span[0], span[1], "DATE_OF_BIRTH", 0.85)

    def _day(self, k: int) -> int | None:
        """The word after a day of the month starting at ``k`` ("3rd", "third", "twenty first"), or None."""
        if k >= self.n:
            return None
        w = self.low[k]
        value = None
        end = k + 1
        m = _DAY_NUMBER.fullmatch(w)
        if m:
            value = int(m.group(1))
        elif w in _ORDINALS:
            value = _ORDINALS[w]
        elif w in _TEENS:
            value = _TEENS[w]
        elif w in _UNITS and w not in ("zero", "oh", "o", "nought"):
            value = _UNITS[w]
        elif "-" in w:
            tens, _, unit = w.partition("-")
            if tens in ("twenty", "thirty"):
                value = _TENS[tens] * 10 + (_ORDINALS.get(unit) or _UNITS.get(unit) or 0)
        elif w in ("twenty", "thirty"):
            nxt = self.low[k + 1] if k + 1 < self.n else ""
            ones = _ORDINALS.get(nxt) or _UNITS.get(nxt) or 0
            value = _TENS[w] * 10 + (ones if ones < 10 else 0)
            end += 0 < ones < 10
        return end if value is not None and 1 <= value <= 31 else None

    def _year(self, k: int) -> int | None:
        """The last word of a year starting at ``k`` ("1985", "nineteen eighty five", "two thousand and five")."""
        if k >= self.n:
            return None
        low = self.low
        w = low[k]
        nxt = low[k + 1] if k + 1 < self.n else ""
        if _YEAR_NUMBER.fullmatch(w):
            return k
        if w in ("nineteen", "twenty") or w.startswith(("nineteen-", "twenty-")):
            rest = nxt
            if "-" in w:
                return k if _tens(w.partition("-")[2], "") else None
            if rest in _TEENS:
                return k + 1
            if rest in _TENS or "-" in rest:
                two = _tens(rest, low[k + 2] if k + 2 < self.n else "")
                if two is None:
                    return None
                return k + 1 if "-" in rest or two[1] == "0" else k + 2
            if rest in ("oh", "o") and k + 2 < self.n and low[k + 2] in _UNITS:
                return k + 2
            return None
        if w == "two" and nxt == "thousand":
            end = k + 1
            j = k + 2 + (k + 2 < self.n and low[k + 2] == "and")
            if j < self.n and (low[j] in _UNITS or low[j] in _TEENS):
                return j
            if j < self.n and (low[j] in _TENS or "-" in low[j]):
                two = _tens(low[j], low[j + 1] if j + 1 < self.n else "")
                if two is not None:
                    return j if "-" in low[j] or two[1] == "0" else j + 1
            return end
        return None


def _tens(w: str, nxt: str) -> str | None:
    """Two digits for "forty", "forty one" (with ``nxt``) or "forty-one"; None if ``w`` is not one."""
    if "-" in w:
        tens, _, unit = w.partition("-")
        if tens in _TENS and unit in _UNITS and unit not in ("oh", "o", "zero"):
            return f"{_TENS[tens]}{_UNITS[unit]}"
        return None
    if w not in _TENS:
        return None
    if nxt in _UNITS and nxt not in ("oh", "o", "zero", "nought"):
        return f"{_TENS[w]}{_UNITS[nxt]}"
    return f"{_TENS[w]}0"
