"""A diarizing session's finals, labelled: each word's speaker from the turns, finals split where it changes.

The worker clusters the recognition session's speakers when it ends (``engines/diarization.py``), so a
diarizing session holds its finals until ``flush`` and sends them then, each with a ``speaker`` and each
word with its own. A final whose words change speaker becomes one final per stretch of one speaker.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from voxbeam import protocol as p
from voxbeam.server.engines.base import Recognized, WordTiming
from voxbeam.server.engines.diarization import Turn, assign_words


def split_at_speakers(r: Recognized, turns: Sequence[Turn]) -> list[tuple[Recognized, str | None]]:
    """``r`` as one final per stretch of one speaker (in order), each with that speaker.

    Without words, the final goes whole to the speaker whose turns it overlaps most; with no turns (no
    speech long enough to tell a voice by), its speaker is None.
    """
    if not turns:
        return [(r, None)]
    if not r.words:
        return [(r, assign_words([(r.offset_ms, r.offset_ms + r.duration_ms)], turns)[0])]
    labels = assign_words([(w.offset_ms, w.offset_ms + w.duration_ms) for w in r.words], turns)
    groups: list[tuple[str | None, list[WordTiming]]] = []
    for word, label in zip(r.words, labels, strict=True):
        if groups and groups[-1][0] == label:
            groups[-1][1].append(word)
        else:
            groups.append((label, [word]))
    if len(groups) == 1:
        return [(r, groups[0][0])]
    # The text's own tokens keep its casing and punctuation when they match the words one for one.
    tokens = r.text.split()
    own = len(tokens) == len(r.words)
    out, i = [], 0
    for label, words in groups:
        text = " ".join(tokens[i : i + len(words)]) if own else " ".join(w.word for w in words)
        i += len(words)
        start, end = words[0].offset_ms, max(w.offset_ms + w.duration_ms for w in words)
        part = dataclasses.replace(r, text=text, offset_ms=start, duration_ms=end - start, words=tuple(words))
        out.append((part, label))
    return out


def labelled(msg: p.Transcript, speaker: str | None, turns: Sequence[Turn], *, words: bool) -> p.Transcript:
    """A final's message with its ``speaker``, and each word's by its time (``words``: whether the client asked
    for word timings: the engine times a diarizing session's words either way)."""
    if not words:
        return dataclasses.replace(msg, speaker=speaker, words=None)
    timed = msg.words
    if timed:
        labels = assign_words([(w.offset, w.offset + w.duration) for w in timed], turns)
        timed = tuple(dataclasses.replace(w, speaker=s) for w, s in zip(timed, labels, strict=True))
    return dataclasses.replace(msg, speaker=speaker, words=timed)
