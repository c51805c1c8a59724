"""Test material: English sentences rendered with eSpeak NG, resampled to 16 kHz WAV.

eSpeak NG is not thread-safe and keeps global state: call ``synth`` from one thread per process.
It also drives baseline 2 (eSpeak called directly, without the server).
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STT_RATE = 16000
VOICE = "en-us+klatt4"  # the server's default voice, vl-andrew
WPM = 175

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


def prosody(voice: str = VOICE, wpm: int = WPM) -> Any:
    """eSpeak NG settings for ``voice`` at ``wpm`` with the engine's default pitch and volume."""
    from voxbeam.server.engines.espeak import BASE_PITCH, BASE_RANGE, BASE_VOLUME, EspeakParameters

    return EspeakParameters(voice=voice, rate=wpm, pitch=BASE_PITCH, range=BASE_RANGE, volume=BASE_VOLUME)


def synth(text: str, voice: str = VOICE, wpm: int = WPM) -> tuple[bytes, int]:
    """(PCM s16le mono, its rate) from eSpeak NG called directly, through the server's ctypes binding."""
    from voxbeam.server.engines.espeak import get_synthesizer

    engine = get_synthesizer()
    return engine.synthesize(text, prosody(voice, wpm)), engine.sample_rate


_RENDERED: dict[str, bytes] = {}


def sentence_pcm(text: str) -> bytes:
    """One sentence as 16 kHz PCM (cached per process)."""
    from voxbeam.audio import resample

    pcm = _RENDERED.get(text)
    if pcm is None:
        raw, rate = synth(text)
        pcm = resample(raw, rate, STT_RATE)
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


def texts(count: int, sentences_per_text: int = 2) -> list[str]:
    """``count`` synthesis inputs of ``sentences_per_text`` sentences each."""
    return [
        " ".join(SENTENCES[(i * sentences_per_text + j) % len(SENTENCES)] for j in range(sentences_per_text))
        for i in range(count)
    ]


def chunks(pcm: bytes, chunk_ms: int = 100, rate: int = STT_RATE) -> list[bytes]:
    step = rate * chunk_ms // 1000 * 2
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]


def normalize(text: str) -> str:
    """Lower case, no punctuation: what word error rates are computed on."""
    keep = "".join(c.lower() if c.isalnum() or c.isspace() or c == "'" else " " for c in text)
    return " ".join(keep.split())


def wer(refs: list[str], hyps: list[str]) -> float:
    """Corpus word error rate (jiwer) over normalized texts."""
    import jiwer

    pairs = [(normalize(r), normalize(h)) for r, h in zip(refs, hyps, strict=True) if normalize(r)]
    if not pairs:
        return float("nan")
    return float(jiwer.wer([r for r, _ in pairs], [h for _, h in pairs]))
