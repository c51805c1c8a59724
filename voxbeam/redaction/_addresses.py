"""Email and IP addresses, written and spoken; dates of birth."""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple

from voxbeam.redaction._lexicon import (
    BIRTH_CUE_BEFORE,
    CUES,
    DATE_TOKEN,
    DOTS,
    IPV4_SHAPE,
    JOINERS,
    STRIP_IP,
    TEENS,
    TENS,
    UNITS,
    Words,
    cue_key,
    tens_digits,
)
from voxbeam.redaction._numbers import Group

IPV6_SHAPE = re.compile(r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:\.\d{1,3}){0,3}")
MONTHS = {
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3, "april": 4, "apr": 4, "may": 5,
    "june": 6, "jun": 6, "july": 7, "jul": 7, "august": 8, "aug": 8, "september": 9, "sep": 9, "sept": 9,
    "october": 10, "oct": 10, "november": 11, "nov": 11, "december": 12, "dec": 12,
}  # fmt: skip
ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
    "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13, "fourteenth": 14,
    "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18, "nineteenth": 19,
    "twentieth": 20, "thirtieth": 30,
}  # fmt: skip
DAY_NUMBER = re.compile(r"(\d{1,2})(?:st|nd|rd|th)?", re.ASCII)
YEAR_NUMBER = re.compile(r"(?:19|20)\d\d", re.ASCII)

TLDS = frozenset(
    "com org net edu gov mil int info biz io co ai app dev me tv xyz online site tech email name pro mobi".split()
)
EMAIL_LOCAL = re.compile(r"[a-z0-9._%+-]+")
DOMAIN = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)*")
EMAIL_CONNECTORS = {"dot": ".", "period": ".", "underscore": "_", "dash": "-", "hyphen": "-"}
# Words that are no email's local part before "at": function words, and verbs that take "at".
EMAIL_STOP = frozenset(
    (
        "is was were are am be been it's its it me my us him her them you we they he she i to at the a an and or of "
        "in on for from with by this that there here email mail address write send look looking looked visit "
        "visiting met meet meeting work works worked working find found available online stay staying stayed "
        "arrive arrived live lives lived based located shop sign signed log logged go went see seen buy bought "
        "sell sold up out off"
    ).split()
)


# Whisper writes a spoken octet of two or three number words as two numbers ("one seventy-two" as "1.72",
# "twenty" as "2.0"): tiny.en and base each split one of "172.16.4.20" so. Near an IP cue, five numbers that
# are four octets once two neighbours join are an IP address. What it costs: a five-part version string said
# near "server" or "host" goes; without a cue, five parts stay ("10.0.0.1.5").
SPLIT_OCTET_CONFIDENCE = 0.5

# A spoken address's top-level label is a short word Whisper does not expect, so it writes another: tiny.en
# and base both heard "voxbeam dot io" as "box beam dot eagle" or "boxbeam.eagle". After "at" and a local
# part, a domain whose last label is any plain word counts, at this confidence. What it costs: "X at Y dot Z"
# said with no address meant ("aim at Jupiter dot" ...) goes, when X, Y and Z are no function words.
MISHEARD_DOMAIN_CONFIDENCE = 0.5

# A word of digits and dots between them, as written ("1-98.51.100.23" once its hyphens are gone).
DOTTED_TOKEN = re.compile(r"[\d.]*\d[\d.]*", re.ASCII)
DOTTED_PART = re.compile(r"\d+|\.", re.ASCII)
DOTTED_STRIP = STRIP_IP.replace(".", "")


class _Digits(NamedTuple):
    first: int
    last: int
    digits: str
    whole: bool  # all of its words' digits: no written dot beside it ("1.5 2.5" is no octet "52")


def _octet(pieces: list[_Digits]) -> bool:
    s = "".join(p.digits for p in pieces)
    return bool(s) and len(s) <= 3 and int(s) <= 255 and (s == "0" or s[0] != "0")


class AddressScan(Words):
    """The detectors over addresses and dates."""

    def _ips(self, groups: list[Group]) -> None:
        for i, word in enumerate(self.raw):
            # Colons belong to IPv6 addresses ("::1"), so only other punctuation comes off.
            core = word.strip(STRIP_IP)
            if len(core) > 2 and (IPV4_SHAPE.fullmatch(core) or IPV6_SHAPE.fullmatch(core)):
                try:
                    ipaddress.ip_address(core)
                except ValueError:
                    continue
                self._add(i, i, "IP_ADDRESS", 0.9)
        self._dotted_ips(groups)

    def _dotted_ips(self, groups: list[Group]) -> None:
        """IPv4 as Whisper writes what it heard: "dot"/"point" or written dots between octets, and digits
        split by spaces or hyphens inside an octet ("1 9 2 dot 168", "1-98.51.100.23", "1-9-2.0.2.4-5").
        Exactly four octets between breaks ("3.10.2" and "1 dot 2 dot 3 dot 4 dot 5" stay); a stray number
        said just before the first is left out of it ("port 22 10 dot 0 dot 0 dot 1")."""
        chains: list[list[_Digits]] = []  # digit pieces of one octet each; [] for a dot
        by_first = {g.first: g for g in groups}

        def flush() -> None:
            self._ipv4_of(chains)
            chains.clear()

        def digits(piece: _Digits) -> None:
            if chains and chains[-1]:
                prev = chains[-1][-1]
                if prev.last != piece.first and not (prev.whole or piece.whole):
                    flush()  # "1.5 2.5": two decimals, not one octet "52"
            if not chains or not chains[-1]:
                chains.append([])
            chains[-1].append(piece)

        def dot() -> None:
            if chains and not chains[-1]:
                flush()  # two dots in a row
            chains.append([])

        i = 0
        while i < self.n:
            word = self.raw[i].strip(DOTTED_STRIP)
            token = word.strip(".").replace("-", "")
            g = by_first.get(i)
            if word.startswith("."):
                flush()  # a written dot with a space after it ends a sentence ("Count 1. 2. 3. 4.")
            if "." in token and DOTTED_TOKEN.fullmatch(token):
                for part in DOTTED_PART.findall(token):
                    if part == ".":
                        dot()
                    else:
                        digits(_Digits(i, i, part, False))
                i += 1
            elif g is not None:
                digits(_Digits(g.first, g.last, g.digits, True))
                i = g.last + 1
                word = self.raw[g.last].strip(DOTTED_STRIP)
            elif self.low[i] in DOTS:
                dot()
                i += 1
            elif self.low[i] in JOINERS:
                i += 1
            else:
                flush()
                i += 1
            if word.endswith("."):
                flush()
        flush()

    def _ipv4_of(self, chains: list[list[_Digits]]) -> None:
        while chains and not chains[0]:
            chains.pop(0)
        while chains and not chains[-1]:
            chains.pop()
        octets = chains[::2]
        if any(not c for c in octets) or any(chains[1::2]):
            return
        if len(octets) == 5:
            self._split_octet(octets)
        if len(octets) != 4:
            return
        first = next((k for k in range(len(octets[0])) if _octet(octets[0][k:])), None)
        last = next((k for k in range(len(octets[3]), 0, -1) if _octet(octets[3][:k])), None)
        if first is None or last is None or not all(_octet(c) for c in octets[1:3]):
            return
        self._add(octets[0][first].first, octets[3][last - 1].last, "IP_ADDRESS", 0.85)

    def _split_octet(self, octets: list[list[_Digits]]) -> None:
        """Five numbers with dots between, near an IP cue, that are four octets once two neighbours join: see
        ``SPLIT_OCTET_CONFIDENCE``."""
        first, last = octets[0][0].first, octets[-1][-1].last
        if not self._near(("ip",), first, last):
            return
        for k in range(4):
            joined = [*octets[:k], octets[k] + octets[k + 1], *octets[k + 2 :]]
            if all(_octet(c) for c in joined):
                self._add(first, last, "IP_ADDRESS", SPLIT_OCTET_CONFIDENCE)
                return

    def _emails(self) -> None:
        low, core = self.low, self.core
        for i, w in enumerate(low):
            if "@" in w and w != "@":
                local, _, domain = w.partition("@")
                end = self._domain(i + 1, domain) if EMAIL_LOCAL.fullmatch(local) else None
                if end is not None:
                    self._add(i, end, "EMAIL", 0.95)
                elif self.partial:  # an address still being said ("john.smith@exam"): "@" is no other word's
                    self._add(i, i, "EMAIL", 0.5)
            elif w in ("at", "@") and 0 < i:
                end = self._domain(i + 1, "") if i < self.n - 1 else None
                if end is None and self.partial and i >= self.n - 2:
                    # A partial ending on "... smith at" or "... smith at exam": the domain may still come.
                    end = self.n - 1
                confidence = 0.85 if "@" not in core[i] else 0.95
                if end is None and (end := self._misheard_domain(i + 1)) is not None:
                    confidence = MISHEARD_DOMAIN_CONFIDENCE
                if end is None:
                    continue
                start = self._local(i)
                if start is not None:
                    self._add(start, end, "EMAIL", confidence)
            elif "." in w and self._near(("email",), i, i, after=0):
                # A misheard "at" ("john.smith.example.com" for john.smith@example.com): right after an
                # email cue, a written domain counts. Cost: a bare domain said as one's email provider goes too.
                end = self._domain(i, "")
                if end is not None:
                    self._add(i, end, "EMAIL", 0.6)

    def _domain(self, k: int, written: str) -> int | None:
        """The last word of a domain starting with ``written`` (after "@") or at word ``k``; None if none."""
        labels = written.split(".") if written else []
        if written and not DOMAIN.fullmatch(written):
            return None
        end = k - 1
        if not labels:
            if k >= self.n or not DOMAIN.fullmatch(self.low[k]):
                return None
            labels = self.low[k].split(".")
            end = k
        while end + 2 < self.n and self.low[end + 1] in DOTS and DOMAIN.fullmatch(self.low[end + 2]):
            labels.extend(self.low[end + 2].split("."))
            end += 2
        tld = labels[-1]
        if len(labels) < 2 or not all(labels) or not (tld in TLDS or (len(tld) == 2 and tld.isalpha())):
            return None
        return end

    def _misheard_domain(self, k: int) -> int | None:
        """The last word of a domain from word ``k`` whose top-level label was misheard: one or two words, a
        dot, a word ("box beam dot eagle"), or one written word "name.word" ("boxbeam.eagle")."""
        low = self.low

        def plain(label: str) -> bool:
            return label.isalpha() and label not in EMAIL_STOP and label not in DOTS and cue_key(label) not in CUES

        if k < self.n and "." in low[k]:
            labels = low[k].split(".")
            return k if len(labels) == 2 and all(plain(x) for x in labels) else None
        for dot in (k + 1, k + 2):
            if dot + 1 < self.n and low[dot] in DOTS and all(plain(low[j]) for j in (*range(k, dot), dot + 1)):
                return dot + 1
        return None

    def _local(self, at: int) -> int | None:
        """Where a spoken email's local part starts (back from "at"); None if the word before is no local part."""
        low = self.low
        k = at - 1
        if low[k] in EMAIL_STOP or not EMAIL_LOCAL.fullmatch(low[k]):
            return None
        joined = False
        while k >= 2 and low[k - 1] in EMAIL_CONNECTORS and EMAIL_LOCAL.fullmatch(low[k - 2]):
            if low[k - 2] in EMAIL_STOP:
                break
            k -= 2
            joined = True
        if not joined and self._near(("email",), k, k, after=0):
            # "my email is john smith at ...": the name before "at" is all of it, up to a stop word.
            for _ in range(2):
                prev = low[k - 1] if k > 0 else ""
                if not prev.isalpha() or prev in EMAIL_STOP or cue_key(prev) in CUES:
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
            m = DATE_TOKEN.fullmatch(w)
            if m:
                if m.group(1):
                    a, b = int(m.group(1)), int(m.group(2))
                    ok = (1 <= a <= 12 and 1 <= b <= 31) or (1 <= b <= 12 and 1 <= a <= 31)
                else:
                    ok = 1 <= int(m.group(5)) <= 12 and 1 <= int(m.group(6)) <= 31
                span = (i, i) if ok else None
            elif w in MONTHS:
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
                    if k < self.n and low[k] in MONTHS:
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
        m = DAY_NUMBER.fullmatch(w)
        if m:
            value = int(m.group(1))
        elif w in ORDINALS:
            value = ORDINALS[w]
        elif w in TEENS:
            value = TEENS[w]
        elif w in UNITS and w not in ("zero", "oh", "o", "nought"):
            value = UNITS[w]
        elif "-" in w:
            tens, _, unit = w.partition("-")
            if tens in ("twenty", "thirty"):
                value = TENS[tens] * 10 + (ORDINALS.get(unit) or UNITS.get(unit) or 0)
        elif w in ("twenty", "thirty"):
            nxt = self.low[k + 1] if k + 1 < self.n else ""
            ones = ORDINALS.get(nxt) or UNITS.get(nxt) or 0
            value = TENS[w] * 10 + (ones if ones < 10 else 0)
            end += 0 < ones < 10
        return end if value is not None and 1 <= value <= 31 else None

    def _year(self, k: int) -> int | None:
        """The last word of a year starting at ``k`` ("1985", "nineteen eighty five", "two thousand and five")."""
        if k >= self.n:
            return None
        low = self.low
        w = low[k]
        nxt = low[k + 1] if k + 1 < self.n else ""
        if YEAR_NUMBER.fullmatch(w):
            return k
        if w in ("nineteen", "twenty") or w.startswith(("nineteen-", "twenty-")):
            rest = nxt
            if "-" in w:
                return k if tens_digits(w.partition("-")[2], "") else None
            if rest in TEENS:
                return k + 1
            if rest in TENS or "-" in rest:
                two = tens_digits(rest, low[k + 2] if k + 2 < self.n else "")
                if two is None:
                    return None
                return k + 1 if "-" in rest or two[1] == "0" else k + 2
            if rest in ("oh", "o") and k + 2 < self.n and low[k + 2] in UNITS:
                return k + 2
            return None
        if w == "two" and nxt == "thousand":
            end = k + 1
            j = k + 2 + (k + 2 < self.n and low[k + 2] == "and")
            if j < self.n and (low[j] in UNITS or low[j] in TEENS):
                return j
            if j < self.n and (low[j] in TENS or "-" in low[j]):
                two = tens_digits(low[j], low[j + 1] if j + 1 < self.n else "")
                if two is not None:
                    return j if "-" in low[j] or two[1] == "0" else j + 1
            return end
        return None
