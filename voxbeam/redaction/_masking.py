"""Placing entities in text that is not the words joined (token alignment), and profanity."""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence

from voxbeam.redaction._lexicon import STRIP
from voxbeam.redaction._types import PROFANITY_TAG, Entity

ALIGN_DROP = re.compile(r"[\W_]+")
# How far (in words, and in text tokens) alignment looks ahead to find text and words agreeing again.
RESYNC = 40

# Strong English profanity, written for this module (no external list): whole words only.
PROFANE = frozenset(
    (
        "fuck fucks fucked fucker fuckers fucking fuckin fuckup fuckwit fuckhead motherfucker motherfuckers "
        "motherfucking shit shits shitty shitting shitted shithead shitheads bullshit horseshit bitch bitches "
        "bitching bitchy bastard bastards asshole assholes arsehole arseholes dumbass jackass cunt cunts "
        "dickhead dickheads wanker wankers wank wanking twat twats bollocks piss pissing slut sluts whore whores "
        "cocksucker cocksuckers nigger niggers faggot faggots"
    ).split()
)
STARRED = re.compile(r"[a-z]\*{2,}[a-z]*")


def swear(word: str, mode: str | None) -> str:
    """``word`` masked, tagged or removed ("") if profane; else itself."""
    core = word.strip(STRIP)
    low = core.lower()
    if not core or not (low in PROFANE or STARRED.fullmatch(low)):
        return word
    if mode == "remove":
        return ""
    start = word.find(core)
    new = core[0] + "*" * (len(core) - 1) if mode == "mask" else PROFANITY_TAG
    return word[:start] + new + word[start + len(core) :]


def align_keys(tokens: Iterable[str]) -> list[str]:
    return [ALIGN_DROP.sub("", t.lower()) for t in tokens]


def align(wkeys: list[str], tkeys: list[str]) -> list[int | None]:
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
        for d in range(1, 2 * RESYNC + 1):
            for di in range(max(0, d - RESYNC), min(d, RESYNC) + 1):
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


def place(wkeys: list[str], tkeys: list[str], entities: Sequence[Entity]) -> list[tuple[int, int, str]] | None:
    """Token spans in the text for ``entities`` of the words, by aligned keys; None if one cannot be placed."""
    if not entities:
        return []
    to_token = list(range(len(wkeys))) if wkeys == tkeys else align(wkeys, tkeys)
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


def to_words(
    wkeys: list[str], tkeys: list[str], spans: Sequence[tuple[int, int, str, float]]
) -> list[tuple[int, int, str, float]]:
    """Word spans for token ``spans`` of the text, by aligned keys (``place`` the other way round).

    Words that align with no token next to a span go with it: where the two differ, the words
    are masked rather than left to leak ("example com" for the text's "example.com").
    """
    to_token = align(wkeys, tkeys)
    known = [(t, i) for i, t in enumerate(to_token) if t is not None]
    tokens = [t for t, _ in known]
    out = []
    for a, b, kind, confidence in spans:
        k = bisect.bisect_left(tokens, a)
        first = known[k - 1][1] + 1 if k > 0 else 0
        m = bisect.bisect_right(tokens, b)
        last = known[m][1] - 1 if m < len(known) else len(wkeys) - 1
        if first <= last:
            out.append((first, last, kind, confidence))
    return out
