"""Text handling for synthesis, shared by client and server: chunk joining, sentences, validation."""

from __future__ import annotations

import re

from voxbeam.protocol import ErrorCode, ProtocolError

# A sentence ends at ., !, ? or ; followed by space, or at CJK end punctuation.
_SENTENCE_END = re.compile(r"[.!?;][\"')\]]*\s+|[。！？；]")
# Text without any sentence end is still cut (at a space) past this many characters.
MAX_PIECE = 600


def join_chunk(text: str, chunk: str) -> str:
    """Append a streamed ``text`` chunk the way the spec's batch example intends.

    The spec sends "Hello", "world", "this is", "a test" as separate messages: chunks are words or
    phrases, so a space goes between two chunks unless one of them already has it there.
    """
    if text and chunk and not text[-1].isspace() and not chunk[0].isspace():
        return f"{text} {chunk}"
    return text + chunk


def sentences(text: str) -> list[str]:
    """``text`` cut into sentences (and pieces of at most ``MAX_PIECE`` characters), blanks dropped."""
    out: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        out.extend(_pieces(text[start : match.end()]))
        start = match.end()
    out.extend(_pieces(text[start:]))
    return [s for s in out if s.strip()]


def pack(text: str, limit: int) -> list[str]:
    """``text`` in utterances of at most ``limit`` characters, cut at sentence ends (or spaces)."""
    out: list[str] = []
    for sentence in sentences(text):
        if out and len(out[-1]) + len(sentence) <= limit:
            out[-1] += sentence
        else:
            out.extend(sentence[i : i + limit] for i in range(0, len(sentence), limit))
    return out


def _pieces(sentence: str) -> list[str]:
    out = []
    while len(sentence) > MAX_PIECE:
        cut = sentence.rfind(" ", 0, MAX_PIECE) + 1 or MAX_PIECE
        out.append(sentence[:cut])
        sentence = sentence[cut:]
    out.append(sentence)
    return out


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def speakable(text: str) -> str:
    """Control characters become spaces: they are not speech, and engines choke on some (NUL)."""
    return _CONTROL.sub(" ", text)


def check_text(text: str) -> None:
    """Refuse text that is not valid Unicode (lone surrogates cannot be encoded for any engine)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE, f"'text' is not valid Unicode (an unpaired surrogate at {exc.start})"
        ) from None
