"""find, redact and redact_text: the entities of a word list, and the words and text with them masked."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

from voxbeam.redaction._addresses import AddressScan
from voxbeam.redaction._lexicon import TRAIL_CHARS, trail
from voxbeam.redaction._masking import align_keys, place, swear, to_words
from voxbeam.redaction._numbers import NumberScan
from voxbeam.redaction._types import (
    HELD,
    PROFANITY_MODES,
    Entity,
    Redacted,
    TimedWord,
    WordLike,
    parse_types,
    region_for,
)


class Scan(NumberScan, AddressScan):
    """One pass over a word list: normalised forms, digit groups, runs, then each detector."""

    def spans(self) -> list[tuple[int, int, str, float]]:
        """Non-overlapping (first, last, type, confidence) of the wanted types.

        Overlapping finds merge into one span, named by the longest (then surest) of them; every type
        is looked for, so that asking for fewer types does not turn, say, an IBAN's digits into a card.
        A partial's held number (``HELD``) names a span only when nothing else does, and keeps it masked
        when the type that named it is not wanted.
        """
        if not self.wanted or not self.n:
            return []
        groups = self._groups()
        runs = self._runs(groups)
        for run in runs:
            self._numeric(run)
        self._held_together(runs)
        self._alphanumeric(groups)
        self._ips(groups)
        self._emails()
        self._dates()
        out: list[tuple[int, int, str, float]] = []
        held: list[bool] = []
        best: tuple[int, int, str, float] | None = None
        for first, last, kind, conf in sorted(self.found):
            if out and first <= out[-1][1]:
                assert best is not None
                if (kind != HELD, last - first, conf) > (best[2] != HELD, best[1] - best[0], best[3]):
                    best = (first, last, kind, conf)
                out[-1] = (out[-1][0], max(last, out[-1][1]), best[2], best[3])
                held[-1] = held[-1] or kind == HELD
            else:
                best = (first, last, kind, conf)
                out.append(best)
                held.append(kind == HELD)
        return [
            s if s[2] in self.wanted else (s[0], s[1], HELD, 0.0)
            for s, h in zip(out, held, strict=True)
            if s[2] in self.wanted or h
        ]


def find(
    words: Sequence[WordLike],
    types: str | Iterable[str],
    *,
    region: str | None = None,
    language: str | None = None,
    partial: bool = False,
    before: Sequence[WordLike] = (),
    open_end: bool = False,
) -> list[Entity]:
    """Entities of ``types`` in ``words``: non-overlapping, in order.

    For a session's finals one after another: ``before``, words said just before, read for context only; an
    entity that began in them is reported for its part in ``words``, so a number split over two finals is
    still found. ``open_end``: more may follow, so a number that ends ``words`` near its cue goes whatever its
    length.
    """
    wanted = _types(types)
    raw = [w.word for w in [*before, *words]]
    spans = Scan(raw, wanted, region_for(region, language), partial, open_end).spans()
    out = []
    for first_read, last_read, kind, confidence in spans:
        if last_read < len(before):
            continue
        first, last = max(first_read - len(before), 0), last_read - len(before)
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
    before: Sequence[WordLike] = (),
    open_end: bool = False,
) -> Redacted:
    """``words`` (and ``text``, if given; else the redacted words joined) with entities replaced; ``before`` and
    ``open_end`` as for ``find``."""
    _check_profanity(profanity)
    types = _types(types)
    entities = find(words, types, region=region, language=language, partial=partial, before=before, open_end=open_end)
    if text is not None and words:
        entities = _text_entities(words, text, entities, types, region_for(region, language), partial)
    starts = {e.first_word: e for e in entities}
    out: list[TimedWord] = []
    i = 0
    while i < len(words):
        entity = starts.get(i)
        if entity is not None:
            span = words[entity.first_word : entity.last_word + 1]
            out.append(
                TimedWord(
                    f"[{entity.type}]{trail(span[-1].word)}",
                    entity.start_ms,
                    entity.end_ms - entity.start_ms,
                    min(w.confidence for w in span),
                )
            )
            i = entity.last_word + 1
            continue
        w = words[i]
        new = swear(w.word, profanity) if profanity else w.word
        if new:
            out.append(TimedWord(new, w.offset_ms, w.duration_ms, w.confidence))
        elif trail(w.word) and out and not trail(out[-1].word):
            # A removed word's sentence punctuation stays, on the word before it (captions cut there).
            prev = out[-1]
            out[-1] = TimedWord(prev.word + trail(w.word), prev.offset_ms, prev.duration_ms, prev.confidence)
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


def _text_entities(
    words: Sequence[WordLike], text: str, entities: list[Entity], wanted: frozenset[str], region: str, partial: bool
) -> list[Entity]:
    """``entities`` and those only the text shows, on the words they cover (merged where they overlap).

    A recogniser's words can lose what its text keeps ("example com" for "example.com"), and a
    value found in the text must not stay readable in the words.
    """
    strs = text.split()
    wkeys, tkeys = align_keys(w.word for w in words), align_keys(strs)
    if wkeys == tkeys:
        return entities
    found = to_words(wkeys, tkeys, Scan(strs, wanted, region, partial).spans())
    if not found:
        return entities
    spans = sorted([(e.first_word, e.last_word, e.type, e.confidence) for e in entities] + found)
    merged: list[tuple[int, int, str, float]] = []
    for first, last, kind, confidence in spans:
        if merged and first <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(last, merged[-1][1]), merged[-1][2], merged[-1][3])
        else:
            merged.append((first, last, kind, confidence))
    out = []
    for first, last, kind, confidence in merged:
        span = words[first : last + 1]
        start, end = min(w.offset_ms for w in span), max(w.offset_ms + w.duration_ms for w in span)
        out.append(Entity(kind, start, end, confidence, first, last))
    return out


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
        wkeys, tkeys = align_keys(w.word for w in words), align_keys(strs)
        placed = place(wkeys, tkeys, entities)
        if placed is None:
            return redact(words, wanted, region=region, language=language, profanity=profanity, partial=partial).text
        spans.extend(placed)
        # The same tokens (up to case and punctuation) hold the same entities: no need to look again.
        same = wkeys == tkeys
    if not same:
        found = Scan(strs, wanted, region_for(region, language), partial).spans()
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
                out.append(f"[{kind}]{trail(strs[last])}")
            if k == last:
                j += 1
            pos, kept = b, True
            continue
        if profanity and (new := swear(strs[k], profanity)) != strs[k]:
            if new:
                out.append(text[pos:a] + new)
                kept = True
            elif kept:
                # The space before a removed word goes; its sentence punctuation stays, on the word before.
                before = text[pos:a].rstrip()
                ends = before[-1:] if before else (out[-1][-1:] if out and out[-1] else "")
                out.append(before + ("" if ends and ends in TRAIL_CHARS else trail(strs[k])))
            else:
                b += len(text[b:]) - len(text[b:].lstrip())
            pos = b
            continue
        kept = True
    out.append(text[pos:])
    return "".join(out)


@lru_cache(maxsize=64)
def _types_of(spec: str) -> frozenset[str]:
    return parse_types(spec)


def _types(types: str | Iterable[str]) -> frozenset[str]:
    return _types_of(types) if isinstance(types, str) else parse_types(types)


def _check_profanity(mode: str | None) -> None:
    if mode is not None and mode not in PROFANITY_MODES:
        raise ValueError(f"unknown profanity mode {mode!r} (known: {', '.join(PROFANITY_MODES)})")
