"""Test material: English sentences in the server's default voice (Piper ``vl-joe``), 16 kHz WAV.

Sentences are rendered once through the server's own Piper binding
(``voxbeam.server.engines.piper``, the packaged ``en_US-joe-medium`` voice, one ONNX Runtime
thread) and kept in a cache on disk (``$VOXBEAM_CACHE_DIR/bench`` or ``~/.cache/voxbeam/bench``),
so a second run renders nothing. Piper samples noise while it renders: the same sentence can come
out slightly differently in another cache; throughput does not depend on that, and no figure
here is an accuracy claim (synthetic speech is plumbing material; accuracy on human speech is
another benchmark's business).

"Dense" files (``dense_files``) are minutes of continuous speech: sentences in a shuffled order
with short pauses, the kind of file a bulk transcription job gets.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STT_RATE = 16000
VOICE_ID = "vl-joe"  # the server's default voice: what the material is rendered with
DENSE_PAUSE_S = 0.25  # between sentences of a dense file: continuous speech, not separate utterances

SENTENCES = (
    "The weather is nice today.",
    "Please call me when you get home.",
    "I would like a cup of coffee.",
    "The meeting starts at nine in the morning.",
    "She opened the window and looked outside.",
    "We need to buy some bread and milk.",
    "The children are playing in the park.",
    "He reads a book every night before bed.",
    "Can you tell me where the station is?",
    "The train was late again this morning.",
    "My brother lives in a small town.",
    "They finished the project last week.",
    "It is going to rain this afternoon.",
    "I forgot my keys at the office.",
    "The dog ran across the street.",
    "Thank you very much for your help.",
    "Our team won the game on Saturday.",
    "The price of oil went up again.",
    "Please send the report by Friday.",
    "She plays the piano very well.",
    "The company hired ten new people.",
    "We will travel to the city next month.",
    "The store closes at six in the evening.",
    "He drove his car to the airport.",
    "The water in the lake is very cold.",
    "My sister works at the hospital.",
    "We had dinner with our friends last night.",
    "The teacher asked a difficult question.",
    "I need to finish this letter today.",
    "The phone rang twice and then stopped.",
    "They built a new school near the river.",
    "Please turn off the lights when you leave.",
)

# Short utterances (about a second) for quick mode, where many sessions need a file each.
SHORT = (
    "Thank you.",
    "Good morning.",
    "See you soon.",
    "Please sit down.",
    "Turn it off.",
    "Call me later.",
    "It is cold today.",
    "Open the door.",
)


_VOICE: Any = None
_ENGINE: Any = None
_RENDERED: dict[str, bytes] = {}


def _piper() -> tuple[Any, Any]:
    """The server's Piper engine with the default voice, loaded once per process."""
    global _VOICE, _ENGINE
    if _ENGINE is None:
        from voxbeam.server.engines.piper import PiperEngine

        catalog = PiperEngine.catalog(None)
        voice = next((v for v in catalog.voices if v.id == VOICE_ID), None)
        if voice is None:
            raise RuntimeError(f"the {VOICE_ID} voice did not load: {'; '.join(catalog.problems)}")
        _VOICE, _ENGINE = voice, PiperEngine(threads=1)
    return _VOICE, _ENGINE


def synth(text: str) -> tuple[bytes, int]:
    """(PCM s16le mono, its rate) of ``text`` in the default voice, from Piper called in this process."""
    from voxbeam.server.engines.base import Prosody

    voice, engine = _piper()
    return b"".join(engine.render(text, voice, Prosody())), voice.sample_rate


def cache_dir() -> Path:
    from voxbeam.server.engines.models import cache_dir as voxbeam_cache

    return voxbeam_cache() / "bench"


def sentence_pcm(text: str) -> bytes:
    """One sentence as 16 kHz PCM in the default voice (cached in this process and on disk)."""
    pcm = _RENDERED.get(text)
    if pcm is not None:
        return pcm
    from voxbeam.audio import resample
    from voxbeam.server.engines.piper import JOE

    key = hashlib.sha256(f"{JOE.files[0].sha256}|{STT_RATE}|{text}".encode()).hexdigest()[:32]
    path = cache_dir() / f"{key}.pcm"
    if path.is_file():
        pcm = path.read_bytes()
    else:
        raw, rate = synth(text)
        pcm = resample(raw, rate, STT_RATE)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(pcm)
        tmp.replace(path)
    _RENDERED[text] = pcm
    return pcm


def silence(seconds: float) -> bytes:
    return b"\0\0" * int(STT_RATE * seconds)


@dataclass(frozen=True)
class AudioFile:
    path: str
    seconds: float
    text: str


def write_wav(path: Path, pcm: bytes, rate: int = STT_RATE) -> None:
    from voxbeam.audio import encode

    path.write_bytes(encode(pcm, rate, "wav"))


def read_wav(path: str) -> bytes:
    with wave.open(path, "rb") as w:
        return w.readframes(w.getnframes())


def utterance(sentences: list[str], pause: float = 0.4) -> bytes:
    """Sentences with ``pause`` seconds of silence before, between and after."""
    parts = [silence(pause)]
    for s in sentences:
        parts += [sentence_pcm(s), silence(pause)]
    return b"".join(parts)


def make_files(
    directory: Path,
    count: int,
    sentences_per_file: int = 2,
    prefix: str = "f",
    sentences: tuple[str, ...] = SENTENCES,
    pause: float = 0.4,
) -> list[AudioFile]:
    """``count`` WAV files of ``sentences_per_file`` sentences each, cycling through ``sentences``."""
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(count):
        chosen = [sentences[(i * sentences_per_file + j) % len(sentences)] for j in range(sentences_per_file)]
        pcm = utterance(chosen, pause)
        path = directory / f"{prefix}{i:05d}.wav"
        write_wav(path, pcm)
        files.append(AudioFile(str(path), len(pcm) / 2 / STT_RATE, " ".join(chosen)))
    return files


def dense_pcm(seconds: float, seed: int, pause: float = DENSE_PAUSE_S) -> tuple[bytes, str]:
    """About ``seconds`` of continuous speech: every sentence in a shuffled order, again and again,
    ``pause`` seconds apart (whole sentences: it ends after the sentence that crosses ``seconds``)."""
    rng = random.Random(seed)
    parts: list[bytes] = []
    said: list[str] = []
    size = 0
    target = int(seconds * STT_RATE) * 2
    gap = silence(pause)
    while size < target:
        order = list(SENTENCES)
        rng.shuffle(order)
        for s in order:
            piece = sentence_pcm(s) + gap
            parts.append(piece)
            said.append(s)
            size += len(piece)
            if size >= target:
                break
    return gap + b"".join(parts), " ".join(said)


def dense_files(directory: Path, seconds: list[float], prefix: str = "dense") -> list[AudioFile]:
    """One WAV of dense speech per entry of ``seconds`` (each its own sentence order)."""
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for i, s in enumerate(seconds):
        pcm, text = dense_pcm(s, seed=i)
        path = directory / f"{prefix}{i:02d}.wav"
        write_wav(path, pcm)
        files.append(AudioFile(str(path), len(pcm) / 2 / STT_RATE, text))
    return files


def texts(count: int, sentences_per_text: int = 2) -> list[str]:
    """``count`` synthesis inputs of ``sentences_per_text`` sentences each."""
    return [
        " ".join(SENTENCES[(i * sentences_per_text + j) % len(SENTENCES)] for j in range(sentences_per_text))
        for i in range(count)
    ]


def chunks(pcm: bytes, chunk_ms: int = 100, rate: int = STT_RATE) -> list[bytes]:
    step = rate * chunk_ms // 1000 * 2
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]


_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen"
).split()
_TENS = "- - twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORDINAL = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth", "nine": "ninth"}
_ORDINAL |= {"twelve": "twelfth"}


def number_words(n: int) -> str:
    """An integer in words, American style without "and": 105 -> "one hundred five"."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    for scale, name in ((10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred")):
        if n >= scale:
            rest = n % scale
            return f"{number_words(n // scale)} {name}" + ("" if rest == 0 else " " + number_words(rest))
    raise AssertionError(n)


def ordinal_words(n: int) -> str:
    """1 -> "first", 21 -> "twenty first", 40 -> "fortieth"."""
    *head, last = number_words(n).split()
    if last in _ORDINAL:
        last = _ORDINAL[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return " ".join([*head, last])


def normalize(text: str) -> str:
    """What word error rates are computed on; both reference and hypothesis go through it.

    Lower case; digits become words ("12" -> "twelve", "1,500" -> "one thousand five hundred",
    "3rd" -> "third", "%" -> "percent"), so "nine" and "9" are the same word; hyphens and dashes
    become spaces; every other character that is not a letter, a digit, a space or an apostrophe
    inside a word is dropped. Nothing else (no spelling variants, no contractions) is mapped.
    """
    text = text.lower().replace("’", "'")
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    text = text.replace("%", " percent ")
    text = re.sub(r"\b(\d+)(st|nd|rd|th)\b", lambda m: f" {ordinal_words(int(m[1]))} ", text)
    text = re.sub(r"\d+", lambda m: f" {number_words(int(m[0]))} ", text)
    text = re.sub(r"[-‐-―]", " ", text)
    text = "".join(c if c.isalnum() or c.isspace() or c == "'" else " " for c in text)
    return " ".join(w.strip("'") for w in text.split() if w.strip("'"))


def wer(refs: list[str], hyps: list[str]) -> float:
    """Corpus word error rate (jiwer) over normalized texts."""
    import jiwer

    pairs = [(normalize(r), normalize(h)) for r, h in zip(refs, hyps, strict=True) if normalize(r)]
    if not pairs:
        return float("nan")
    return float(jiwer.wer([r for r, _ in pairs], [h or "-" for _, h in pairs]))
