"""Digit runs, written and spoken: cards, phone numbers, national ids, IBANs."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple, TypeVar

from voxbeam.redaction._checks import (
    IBAN_LENGTH,
    be_ok,
    bsn_ok,
    dni_ok,
    iban_ok,
    luhn,
    nir_ok,
    phone_status,
    ssn_ok,
    verhoeff,
)
from voxbeam.redaction._lexicon import (
    DATE_TOKEN,
    IPV4_SHAPE,
    JOINERS,
    LETTER_WORDS,
    REPEAT,
    TEENS,
    TENS,
    UNITS,
    Words,
    tens_digits,
)
from voxbeam.redaction._types import DIGIT_TYPES, HELD

WRITTEN_NUMBER = re.compile(r"\+?\d[\d,.\-()]*", re.ASCII)
NON_DIGIT = re.compile(r"\D", re.ASCII)
THOUSANDS = re.compile(r"\d{1,3}(?:,\d{3})+", re.ASCII)
ALNUM_UPPER = re.compile(r"[A-Z0-9]+")
# A live partial masks numbers from this many digits: fewer give away no more than a card's issuer prefix
# (which PCI DSS allows to be shown), and years, prices and counts below it stay readable while spoken.
PARTIAL_DIGITS = 4
# A partial's numbers this many words apart or fewer count as one: Whisper garbles a number still being
# said into pieces with stray words between ("41 for 11", "4 to 111"), each short of ``PARTIAL_DIGITS``.
PARTIAL_STRAY_WORDS = 1
# The cues that name a partial's number, surest first.
HELD_CUES = (
    (("card",), "CARD_NUMBER"),
    (("ssn", "sin", "bsn", "aadhaar", "id"), "NATIONAL_ID"),
    (("phone",), "PHONE_NUMBER"),
    (("iban",), "IBAN"),
)

# A run this long near a card cue is redacted as a card whatever its length or checksum: fast speech loses
# whole groups ("4,111, 1111,111" for four groups of four was heard once in 48 renders), and the part
# heard is still cardholder data. 10 digits: a 16-digit card with six lost, a 13-digit one with three.
CARD_CUED_DIGITS = 10
# Such a run short of 16 digits takes in the run after it across this many stray words: tiny.en heard the last
# group of "4111 1111 1111 1111" as "in 1,111", in the rest of a window it decoded again, and those four digits
# stood alone, readable. What it costs: a number said right after a short card ("..., expiring 0925") goes too.
CARD_STRAY_WORDS = 1
CARD_MAX_DIGITS = 19
# A country code, two check digits and the country's IBAN length give or take a character is an IBAN even
# when mod 97 fails and no cue was heard: Whisper doubles a zero ("IT60 X054 ... 0000000 ...") and hears
# "IBAN" as "Ivan" or leaves the carrier phrase out, and the rest is still the account number. Nothing
# else said has that shape; its confidence says the check failed.
IBAN_SHAPE_CONFIDENCE = 0.5
# A run of this many digits or more, longer than any card (19) or phone number (17), is a bank account number
# heard without its country code: tiny.en lost the "ES9" of "ES91 2100 0418 ..." and heard 22 digits. It goes
# as an IBAN, unless a word just before it names another kind of number ("order", "tracking", "reference")
# and none names a bank account.
# What it costs: a long tracking or parcel number said with no such word goes too.
ACCOUNT_DIGITS = 20
ACCOUNT_CONFIDENCE = 0.4
# The SSN has no check digit, so a misheard one cannot be told from a real one: near an SSN cue, a run of
# one digit fewer or more than its nine is redacted too (tiny.en heard "219 09 9999" as "2 1 9 0 9 9 9 9"),
# and so is a nine-digit one its issuing rules reject. What it costs: any 8-10 digit number said near
# "social" goes, unless it is a valid phone number (then it is one).
SSN_CUED_DIGITS = range(8, 11)


def written_digits(core: str) -> str | None:
    """The digits of a written number ("4111", "1,234", "555-0123", "+44"); None for decimals, dates, IPs
    (also with hyphens inside octets, as Whisper writes digits: "1-98.51.100.23")."""
    if not WRITTEN_NUMBER.fullmatch(core):
        return None
    if core.count(".") == 1 or IPV4_SHAPE.fullmatch(core.replace("-", "")) or DATE_TOKEN.fullmatch(core):
        return None
    return NON_DIGIT.sub("", core)


def _partial_digits(core: str) -> str | None:
    """Every digit of a word, however written: a partial holds back a number still being said, and Whisper may
    write it half-heard as a decimal, a price or a date ("4.1111", "$4,111", "4/11/11") that a final reads as
    no digit run."""
    return NON_DIGIT.sub("", core) or None


def _hyphenated_digits(word: str) -> str | None:
    """The digits of number words said one by one and written joined ("four-one-one-one", "oh-eleven")."""
    parts = word.split("-")
    if len(parts) < 2 or not all(p in UNITS or p in TEENS for p in parts):
        return None
    return "".join(str(UNITS[p]) if p in UNITS else str(TEENS[p]) for p in parts)


class Group(NamedTuple):
    """Consecutive words that read as one block of digits ("4111", "double five", "forty one")."""

    first: int
    last: int
    digits: str
    plus: bool  # a "+"/"plus" before it: an international number
    weak: bool  # only "oh"/"o", which is also an interjection
    cut: bool  # a pause (comma, joiner) before it: where a phone number may start
    counted: bool  # written with thousands separators ("2,125,550"): a quantity, never a phone number


class Piece(NamedTuple):
    first: int
    last: int
    chars: str


Spanned = TypeVar("Spanned", Group, Piece)  # words first..last


def card_edges(run: list[Group]) -> dict[int, set[int]]:
    """Where a card may start and end in a run, as group indices (end exclusive): the whole run, or the run
    less its first or last pause-separated part ("4111 1111 1111 1111, 123" with its CVV read on). Never a
    window inside the digits: any 13-16 of a longer run pass Luhn one time in ten, so an IBAN's digits or a
    16-digit order number read one digit at a time would always hold a "card"."""
    cuts = [k for k in range(1, len(run)) if run[k].cut]
    starts = {0} | set(cuts[:1])
    ends = {len(run)} | set(cuts[-1:])
    return {a: {b for b in ends if b > a} for a in starts}


class NumberScan(Words):
    """The detectors over digit groups."""

    def _groups(self) -> list[Group]:
        low, core, raw = self.low, self.core, self.raw
        out: list[Group] = []
        plus = False
        i = 0
        while i < self.n:
            w = low[i]
            start = i
            digits: str | None = None
            weak = False
            count = False
            any_digits = _partial_digits(core[i]) if self.partial else None  # see ``_partial_digits``
            if (w and w[0] in "0123456789+") or any_digits:
                digits = written_digits(core[i]) or any_digits
                plus = plus or core[i].startswith("+")
                count = bool(THOUSANDS.fullmatch(core[i]))
                i += 1
            elif w in UNITS:
                nxt = low[i + 1] if i + 1 < self.n else ""
                if nxt == "hundred" and w not in ("oh", "o"):
                    after = low[i + 2] if i + 2 < self.n else ""
                    if after in TEENS:
                        digits, i = f"{UNITS[w]}{TEENS[after]}", i + 3
                    elif after in TENS:
                        unit = UNITS.get(low[i + 3], 0) if i + 3 < self.n and low[i + 3] not in ("oh", "o") else 0
                        digits, i = f"{UNITS[w]}{TENS[after]}{unit}", i + (4 if unit else 3)
                    else:
                        digits, i = f"{UNITS[w]}00", i + 2
                else:
                    digits, weak, i = str(UNITS[w]), w in ("oh", "o"), i + 1
            elif w in TEENS:
                digits, i = str(TEENS[w]), i + 1
            elif "-" in w and (spelled := _hyphenated_digits(w)):
                digits, weak, i = spelled, all(p in ("oh", "o") for p in w.split("-")), i + 1
            elif w in TENS or "-" in w:
                digits, i = tens_digits(w, low[i + 1] if i + 1 < self.n else ""), i + 1
                if digits is not None and len(digits) == 2 and digits[1] != "0" and "-" not in w:
                    i += 1
            elif w in REPEAT and i + 1 < self.n and low[i + 1] in UNITS:
                digits, i = str(UNITS[low[i + 1]]) * REPEAT[w], i + 2
            elif w == "plus" and i + 1 < self.n:
                plus = True
                i += 1
                continue
            else:
                i += 1
            if digits:
                had_plus = plus or (start > 0 and low[start - 1] == "plus")
                cut = start == 0 or raw[start - 1].endswith((",", ";", ":")) or low[start - 1] in JOINERS
                first = start - 1 if had_plus and start > 0 and low[start - 1] == "plus" else start
                out.append(Group(first, i - 1, digits, had_plus, weak, cut, count))
            plus = False
        return out

    def _runs(self, groups: list[Group]) -> list[list[Group]]:
        """Groups next to each other (or with only joiners between) as runs; runs of only "oh" dropped."""
        out: list[list[Group]] = []
        for r in self._chains(groups):
            if all(g.weak for g in r):
                continue
            if out and self._card_tail(out[-1], r):
                out[-1] = out[-1] + r
            else:
                out.append(r)
        return out

    def _card_tail(self, card: list[Group], tail: list[Group]) -> bool:
        """``tail`` is what is left of a card that ``card`` began: see ``CARD_STRAY_WORDS``."""
        have = sum(len(g.digits) for g in card)
        if not CARD_CUED_DIGITS <= have < 16 or have + sum(len(g.digits) for g in tail) > CARD_MAX_DIGITS:
            return False
        return tail[0].first - card[-1].last - 1 <= CARD_STRAY_WORDS and self._near(
            ("card",), card[0].first, card[-1].last
        )

    def _chains(self, items: Sequence[Spanned]) -> list[list[Spanned]]:
        """``items`` next to each other (or with only joiners between) as runs."""
        runs: list[list[Spanned]] = []
        for item in items:
            if runs and self._joined(runs[-1][-1].last, item.first):
                runs[-1].append(item)
            else:
                runs.append([item])
        return runs

    def _joined(self, last: int, first: int) -> bool:
        gap = range(last + 1, first)
        return len(gap) <= 2 and all(self.low[k] in JOINERS for k in gap)

    def _numeric(self, run: list[Group]) -> None:
        offs = [0]
        for g in run:
            offs.append(offs[-1] + len(g.digits))
        digits = "".join(g.digits for g in run)
        first, last = run[0].first, run[-1].last
        total = len(digits)
        if self.partial and self.wanted & DIGIT_TYPES:
            self._held(first, last, total)
        elif self.open_end and last == self.n - 1 and (named := self._cue_type(first, last)) is not None:
            # The number may go on in the next final, which reads this one again (``find``'s ``before``): what
            # was said of it so far goes as what its cue names, however short.
            self._add(first, last, named, 0.5)
        if total < 7:
            return
        luhn_found = False
        edges = card_edges(run)
        for a in range(len(run)):
            for b in range(a, len(run)):
                size = offs[b + 1] - offs[a]
                if size > CARD_MAX_DIGITS:
                    break
                s = digits[offs[a] : offs[b + 1]]
                f, t = run[a].first, run[b].last
                if size >= 13 and a in edges and b + 1 in edges[a] and luhn(s):
                    cue = self._near(("card",), f, t)
                    if cue or s[0] in "23456":
                        luhn_found = True
                        self._add(f, t, "CARD_NUMBER", 0.95 if cue else 0.9)
                self._national(s, f, t)
        if total >= CARD_CUED_DIGITS and self._near(("card",), first, last):
            self._add(first, last, "CARD_NUMBER", 0.95 if luhn_found else 0.6 if total >= 13 else 0.5)
        if total in SSN_CUED_DIGITS and self._near(("ssn",), first, last):
            self._add(first, last, "NATIONAL_ID", 0.5)
        if total >= ACCOUNT_DIGITS and (self._near(("iban",), first, last) or not self._named_other(first, last)):
            self._add(first, last, "IBAN", ACCOUNT_CONFIDENCE)
        self._phones(run, offs, digits)

    def _held_together(self, runs: list[list[Group]]) -> None:
        """A partial's runs ``PARTIAL_STRAY_WORDS`` apart or closer, held as one number (``_held``)."""
        if not (self.partial and self.wanted & DIGIT_TYPES):
            return
        near: list[list[Group]] = []
        for run in [*runs, None]:
            if run and near and run[0].first - near[-1][-1].last - 1 <= PARTIAL_STRAY_WORDS:
                near.append(run)
                continue
            if len(near) > 1:
                self._held(near[0][0].first, near[-1][-1].last, sum(len(g.digits) for r in near for g in r))
            near = [run] if run else []

    def _held(self, first: int, last: int, total: int) -> None:
        """A live partial's number, masked wherever it is: it may still grow into an entity, or a cue said
        after it make it one. Named by a cue near it, else ``HELD`` (kept even when the cue's type is not
        wanted). Under ``PARTIAL_DIGITS`` only at the partial's end right after a cue ("my card number is 4")."""
        cue = self._cue_type(first, last)
        if total < PARTIAL_DIGITS and (cue is None or last != self.n - 1):
            return
        if cue is not None:
            self._add(first, last, cue, 0.5)
        self._add(first, last, HELD, 0.0)

    def _cue_type(self, first: int, last: int) -> str | None:
        """The type the surest cue near a number names, if any."""
        return next((kind for cats, kind in HELD_CUES if self._near(cats, first, last)), None)

    def _national(self, s: str, f: int, t: int) -> None:
        size = len(s)
        if size == 9:
            if self._near(("ssn",), f, t) and ssn_ok(s):
                self._add(f, t, "NATIONAL_ID", 0.8)
            if self._near(("sin",), f, t) and s[0] not in "08" and luhn(s):
                self._add(f, t, "NATIONAL_ID", 0.85)
            if self._near(("bsn", "id"), f, t) and bsn_ok(s):
                self._add(f, t, "NATIONAL_ID", 0.85)
        elif size == 11:
            if self._near(("be_id", "id"), f, t) and be_ok(s):
                self._add(f, t, "NATIONAL_ID", 0.85)
        elif size == 12:
            if s[0] in "23456789" and self._near(("aadhaar", "id"), f, t) and verhoeff(s):
                self._add(f, t, "NATIONAL_ID", 0.85)
        elif size == 15 and nir_ok(s):
            self._add(f, t, "NATIONAL_ID", 0.92)

    def _named_other(self, first: int, last: int) -> bool:
        """A word just before a number names it as no personal one ("order", "tracking", "reference")."""
        return self._near(("not_phone",), first, last, before=4, after=0)

    def _phones(self, run: list[Group], offs: list[int], digits: str) -> None:
        first, last = run[0].first, run[-1].last
        cue = self._near(("phone",), first, last)
        if not cue and self._named_other(first, last):
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
                status = phone_status(s, self.region)
                if status == 2:
                    self._add(run[a].first, run[b].last, "PHONE_NUMBER", 0.95 if cue else 0.85)
                    break
                if status == 1 and possible is None:
                    possible = b
            else:
                if possible is not None and cue:
                    self._add(run[a].first, run[possible].last, "PHONE_NUMBER", 0.6)

    def _alphanumeric(self, groups: list[Group]) -> None:
        """IBANs and Spanish DNI/NIE: digit groups and upper-case letters/codes ("DE89", "NWBK", "Z")."""
        pieces: list[Piece] = []
        by_first = {g.first: g for g in groups}
        i = 0
        has_letter = False
        while i < self.n:
            g = by_first.get(i)
            if g is not None:
                pieces.append(Piece(g.first, g.last, g.digits))
                i = g.last + 1
                continue
            chars = LETTER_WORDS.get(self.low[i]) or self.core[i].replace("-", "")
            if len(chars) == 1 and chars.isalpha():
                chars = chars.upper()  # a letter spelled out: Whisper writes some in lower case ("6 0 x 0 5")
            if len(chars) <= 34 and ALNUM_UPPER.fullmatch(chars) and not chars.isdigit():
                pieces.append(Piece(i, i, chars))
                has_letter = True
            i += 1
        if not has_letter:
            return
        for run in self._chains(pieces):
            chars = "".join(p.chars for p in run)
            if len(chars) < 9 or chars.isdigit():
                continue
            offs = [0]
            for p in run:
                offs.append(offs[-1] + len(p.chars))
            at = {o: k for k, o in enumerate(offs)}
            for a, p in enumerate(run):
                start = offs[a]
                need = IBAN_LENGTH.get(chars[start : start + 2])
                if need is not None and chars[start + 2 : start + 4].isdigit():
                    b = at.get(start + need)
                    near = next((at[start + k] for k in (need + 1, need, need - 1) if start + k in at), None)
                    cued = self._near(("iban",), p.first, run[-1].last)
                    if b is not None and iban_ok(chars[start : start + need]):
                        self._add(p.first, run[b - 1].last, "IBAN", 0.95)
                    elif near is not None:  # see ``IBAN_SHAPE_CONFIDENCE``
                        self._add(p.first, run[near - 1].last, "IBAN", 0.6 if cued else IBAN_SHAPE_CONFIDENCE)
                    elif len(chars) - start >= need - 2 and cued:
                        self._add(p.first, run[-1].last, "IBAN", 0.6)
                end = offs[a + 1]
                if end >= 9 and chars[end - 1].isalpha() and (end - 9) in at and dni_ok(chars[end - 9 : end]):
                    first = run[at[end - 9]].first
                    # Written as one word ("12345678Z") the form speaks for itself; spread over words, a cue must.
                    if first == p.first or self._near(("es_id", "id"), first, p.last):
                        self._add(first, p.last, "NATIONAL_ID", 0.9)
