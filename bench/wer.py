"""Word error rate after a documented normalisation, and word-timing agreement between two systems.

Normalisation (applied to references and hypotheses alike, before splitting into words):

1. Typographic quotes become ASCII (``’`` -> ``'``), so ``beauty’s`` and ``beauty's`` agree.
2. A ``*`` or ``#`` standing alone becomes ``star`` / ``pound`` (how phone prompts say them).
3. OpenAI Whisper's ``EnglishTextNormalizer`` (the normaliser of the Whisper paper, appendix C, as
   packaged on PyPI by ``whisper-normalizer``; offline, its spelling table ships in the package):
   lower case; text in brackets and parentheses dropped; fillers (uh, um, hmm, ...) dropped;
   contractions and abbreviations spelled one way (``Mr.`` -> ``mister``, ``won't`` -> ``will not``);
   spelled-out numbers become digits (``ten`` -> ``10``, ``twenty twenty`` -> ``2020``; a lone ``one``
   stays a word and a lone ``1`` becomes ``one``), currency and percent signs spelled out;
   British spellings made American; every other punctuation mark and symbol removed; whitespace
   collapsed. Hyphenated words split (``ill-disposed`` -> ``ill disposed``).

WER is (substitutions + deletions + insertions) / reference words, summed over all clips of a set
(not a mean of per-clip rates), computed with ``jiwer``.

Word timing agreement: the two systems' words are normalised one by one, the sequences aligned with
``difflib.SequenceMatcher`` (no junk heuristic), and only words in equal runs are compared: the
absolute difference of their start times, in milliseconds.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

_QUOTES = str.maketrans({"’": "'", "‘": "'", "ʼ": "'", "“": '"', "”": '"'})


@functools.lru_cache(maxsize=1)
def _english() -> Any:
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalize(text: str) -> str:
    """The normalised form of ``text`` (see the module's docstring)."""
    text = text.translate(_QUOTES)
    text = re.sub(r"(?<!\S)\*(?!\S)", " star ", text)
    text = re.sub(r"(?<!\S)#(?!\S)", " pound ", text)
    return " ".join(str(_english()(text)).split())


def words(text: str) -> list[str]:
    return normalize(text).split()


@dataclass
class Score:
    """Word errors of a set of clips."""

    ref_words: int = 0
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    clips: int = 0

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        return self.errors / self.ref_words if self.ref_words else float("nan")

    def add(self, other: Score) -> Score:
        self.ref_words += other.ref_words
        self.substitutions += other.substitutions
        self.deletions += other.deletions
        self.insertions += other.insertions
        self.clips += other.clips
        return self

    def as_dict(self) -> dict[str, Any]:
        return {
            "wer": round(self.wer, 4),
            "ref_words": self.ref_words,
            "substitutions": self.substitutions,
            "deletions": self.deletions,
            "insertions": self.insertions,
            "clips": self.clips,
        }


def score(ref: str, hyp: str) -> Score:
    """The word errors of one hypothesis against its reference, after normalisation."""
    import jiwer

    r, h = normalize(ref), normalize(hyp)
    if not r:
        return Score(0, 0, 0, len(h.split()), 1)
    if not h:
        return Score(len(r.split()), 0, len(r.split()), 0, 1)
    out = jiwer.process_words(r, h)
    return Score(len(r.split()), out.substitutions, out.deletions, out.insertions, 1)


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus WER of hypotheses against references (equal lengths)."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    total = Score()
    for r, h in zip(refs, hyps, strict=True):
        total.add(score(r, h))
    return total.wer


# ---------------------------------------------------------------------------
# Word timings


def _keyed(timed: Iterable[tuple[str, float]]) -> list[tuple[str, float]]:
    """(normalised word, start) for each word that normalises to something."""
    out = []
    for word, start in timed:
        key = normalize(word)
        if key:
            out.append((key, float(start)))
    return out


def matched_starts(a: Iterable[tuple[str, float]], b: Iterable[tuple[str, float]]) -> list[tuple[float, float]]:
    """Pairs of start times of the words ``a`` and ``b`` share, after aligning the two sequences."""
    ka, kb = _keyed(a), _keyed(b)
    matcher = difflib.SequenceMatcher(None, [w for w, _ in ka], [w for w, _ in kb], autojunk=False)
    pairs = []
    for block in matcher.get_matching_blocks():
        for i in range(block.size):
            pairs.append((ka[block.a + i][1], kb[block.b + i][1]))
    return pairs


def monotonic_violations(starts: Sequence[float]) -> int:
    """How many times a word starts before the word before it."""
    return sum(1 for x, y in zip(starts, starts[1:], strict=False) if y < x)
