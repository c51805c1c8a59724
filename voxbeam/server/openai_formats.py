"""A transcription's finals in OpenAI's response formats: json, text, srt, vtt, verbose_json; and its SSE events.

A final transcript (one sentence, as a WebSocket session gets it) is one segment; its words, when asked
for, are the ``words`` of ``verbose_json``. Times are seconds from the start of the file. OpenAI's
segment fields that Whisper's decoding here does not produce are filled plainly: ``tokens`` empty,
``temperature`` 0 (beam search), ``avg_logprob`` the log of the final's confidence (the mean word
probability), ``compression_ratio`` and ``no_speech_prob`` 0 (speech regions come from Silero VAD).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from voxbeam import protocol as p

FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
CONTENT_TYPES = {
    "json": "application/json",
    "verbose_json": "application/json",
    "text": "text/plain",
    "srt": "application/x-subrip",
    "vtt": "text/vtt",
}

# Whisper's languages, as OpenAI names them in verbose_json's ``language``.
_NAMES = (
    "en english zh chinese de german es spanish ru russian ko korean fr french ja japanese pt portuguese "
    "tr turkish pl polish ca catalan nl dutch ar arabic sv swedish it italian id indonesian hi hindi "
    "fi finnish vi vietnamese he hebrew uk ukrainian el greek ms malay cs czech ro romanian da danish "
    "hu hungarian ta tamil no norwegian th thai ur urdu hr croatian bg bulgarian lt lithuanian la latin "
    "mi maori ml malayalam cy welsh sk slovak te telugu fa persian lv latvian bn bengali sr serbian "
    "az azerbaijani sl slovenian kn kannada et estonian mk macedonian br breton eu basque is icelandic "
    "hy armenian ne nepali mn mongolian bs bosnian kk kazakh sq albanian sw swahili gl galician "
    "mr marathi pa punjabi si sinhala km khmer sn shona yo yoruba so somali af afrikaans oc occitan "
    "ka georgian be belarusian tg tajik sd sindhi gu gujarati am amharic yi yiddish lo lao uz uzbek "
    "fo faroese ht haitian_creole ps pashto tk turkmen nn nynorsk mt maltese sa sanskrit lb luxembourgish "
    "my myanmar bo tibetan tl tagalog mg malagasy as assamese tt tatar haw hawaiian ln lingala ha hausa "
    "ba bashkir jw javanese su sundanese yue cantonese"
).split()
LANGUAGE_NAMES = {code: name.replace("_", " ") for code, name in zip(_NAMES[::2], _NAMES[1::2], strict=True)}


def language_name(code: str | None) -> str:
    if not code:
        return "unknown"
    return LANGUAGE_NAMES.get(code.split("-")[0].lower(), code)


def full_text(finals: Sequence[p.Transcript]) -> str:
    """The transcript's text as VoxBeam's jobs write it: the finals' texts joined by a space."""
    return " ".join(f.text.strip() for f in finals if f.text.strip())


def _stamp(ms: int, comma: bool) -> str:
    h, rest = divmod(max(0, ms), 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, milli = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{',' if comma else '.'}{milli:03d}"


def captions(finals: Sequence[p.Transcript], fmt: str) -> str:
    """SRT or WebVTT, one cue per final."""
    cues = [f for f in finals if f.text.strip()]
    if fmt == "srt":
        blocks = [
            f"{i}\n{_stamp(f.offset, True)} --> {_stamp(f.offset + f.duration, True)}\n{f.text.strip()}\n"
            for i, f in enumerate(cues, 1)
        ]
        return "\n".join(blocks)
    blocks = [f"{_stamp(f.offset, False)} --> {_stamp(f.offset + f.duration, False)}\n{f.text.strip()}\n" for f in cues]
    return "WEBVTT\n\n" + "\n".join(blocks)


def verbose(
    finals: Sequence[p.Transcript], task: str, language: str | None, duration_s: float, granularities: set[str]
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "task": task,
        "language": language_name(language),
        "duration": round(duration_s, 3),
        "text": full_text(finals),
    }
    if "segment" in granularities or not granularities:
        doc["segments"] = [
            {
                "id": i,
                "seek": 0,
                "start": f.offset / 1000,
                "end": (f.offset + f.duration) / 1000,
                "text": " " + f.text.strip(),
                "tokens": [],
                "temperature": 0.0,
                "avg_logprob": round(math.log(f.confidence), 4) if f.confidence else 0.0,
                "compression_ratio": 0.0,
                "no_speech_prob": 0.0,
            }
            for i, f in enumerate(finals)
        ]
    if "word" in granularities:
        doc["words"] = [
            {"word": w.word, "start": w.offset / 1000, "end": (w.offset + w.duration) / 1000}
            for f in finals
            for w in f.words or ()
        ]
    return doc


def body(
    finals: Sequence[p.Transcript],
    fmt: str,
    task: str,
    language: str | None,
    duration_s: float,
    granularities: set[str],
) -> str:
    if fmt == "text":
        return full_text(finals) + "\n"
    if fmt in ("srt", "vtt"):
        return captions(finals, fmt)
    if fmt == "verbose_json":
        return json.dumps(verbose(finals, task, language, duration_s, granularities))
    return json.dumps({"text": full_text(finals), "usage": {"type": "duration", "seconds": math.ceil(duration_s)}})


def sse(event: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(event)}\n\n".encode()
