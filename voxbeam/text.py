"""Text handling for synthesis, shared by client and server: chunk joining, sentences, validation."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

from voxbeam.protocol import ErrorCode, ProtocolError

# A sentence ends at ., !, ? or ; followed by space, or at CJK end punctuation.
_SENTENCE_END = re.compile(r"[.!?;][\"')\]]*\s+|[。！？；]")
# Where a sentence too long for one piece is cut first: after a clause mark (comma, colon, dash,
# their CJK forms), where a speaker pauses anyway; then between words; then between characters
# (scripts written without spaces).
_CLAUSE_END = re.compile(r"[,:\u2013\u2014][\"')\]]*\s+|\s[-\u2013\u2014]\s+|[，、：]")
_WORD_END = re.compile(r"\s+")
# Text without any sentence end is still cut past this many characters.
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
    return bounded(sentence, MAX_PIECE)


def bounded(text: str, limit: int) -> list[str]:
    """``text`` in consecutive pieces of at most ``limit`` characters that join back into it.

    Each cut is the last clause mark within the limit, else the last space, else the limit itself.
    """
    out = []
    while len(text) > limit:
        cut = _last_end(_CLAUSE_END, text, limit) or _last_end(_WORD_END, text, limit) or limit
        out.append(text[:cut])
        text = text[cut:]
    out.append(text)
    return out


def _last_end(pattern: re.Pattern[str], text: str, limit: int) -> int:
    """The end of the last match of ``pattern`` that ends within ``text[:limit]`` (0: none)."""
    ends = [m.end() for m in pattern.finditer(text, 0, limit + 1) if m.end() <= limit]
    return ends[-1] if ends else 0


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


# Languages written in Latin letters: a voice of one of them spells other scripts out letter by letter
# ("Chinese letter, Chinese letter ..."), which is no reading of the text at all.
LATIN_LANGUAGES = frozenset(
    "ca cs cy da de en es et eu fi fr ga gl hr hu id is it lt lv ms mt nl no pl pt ro sk sl sq sv sw tr vi".split()
)
# Unicode names start with the script ("CJK UNIFIED IDEOGRAPH-6211", "HIRAGANA LETTER A").
_SCRIPT_NAMES = {"CJK": "Han", "HANGUL": "Hangul", "HIRAGANA": "Hiragana", "KATAKANA": "Katakana"}
# Letters of another script a text may carry before it counts as written in that script (names, quotes).
FOREIGN_LETTERS_ALLOWED = 8


def unreadable_script(text: str, language: str) -> str | None:
    """The script most of ``text``'s letters are in, when a voice of ``language`` cannot read it; else None.

    Only voices of Latin-script languages are judged: more letters of other scripts than Latin ones
    (and more than a few) means the voice would spell the text out rather than read it.
    """
    if language.replace("_", "-").split("-")[0].lower() not in LATIN_LANGUAGES:
        return None
    scripts: Counter[str] = Counter()
    for ch in text:
        if ch.isalpha():
            scripts[unicodedata.name(ch, "UNKNOWN").split(" ")[0]] += 1
    latin = scripts.pop("LATIN", 0)
    foreign = sum(scripts.values())
    if foreign <= max(latin, FOREIGN_LETTERS_ALLOWED):
        return None
    script = scripts.most_common(1)[0][0]
    return _SCRIPT_NAMES.get(script, script.title())
