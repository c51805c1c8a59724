"""Test material: English sentences rendered with eSpeak NG (ctypes), resampled to 16 kHz WAV.

eSpeak NG is not thread-safe and keeps global state, so each process holds one ``Espeak``;
call it from one thread only. The same class drives baseline 2 (eSpeak called directly).
"""

from __future__ import annotations

import ctypes
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

_SYNTH_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_RATE = 1
_POS_CHARACTER = 1
_ESPEAK_CHARS_AUTO = 0


class Espeak:
    """eSpeak NG through ctypes: ``synth(text)`` returns s16le mono PCM at ``rate`` Hz."""

    _instance: Espeak | None = None

    def __init__(self) -> None:
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
        if rate <= 0:
            raise RuntimeError("espeak_Initialize failed")
        self.rate = int(rate)
        self._lib = lib
        self._buf: list[bytes] = []

        def _cb(wav: Any, n: int, _events: Any) -> int:
            if n > 0 and wav:
                self._buf.append(ctypes.string_at(wav, n * 2))
            return 0

        self._cb = _SYNTH_CB(_cb)  # keep a reference: eSpeak holds the pointer
        lib.espeak_SetSynthCallback(self._cb)
        self._voice: tuple[str, int] | None = None

    @classmethod
    def get(cls) -> Espeak:
        """The process's one instance."""
        if cls._instance is None:
            cls._instance = Espeak()
        return cls._instance

    def synth(self, text: str, voice: str = VOICE, wpm: int = WPM) -> bytes:
        if self._voice != (voice, wpm):
            if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"eSpeak NG has no voice {voice!r}")
            self._lib.espeak_SetParameter(_ESPEAK_RATE, wpm, 0)
            self._voice = (voice, wpm)
        self._buf.clear()
        data = text.encode("utf-8")
        self._lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_AUTO, None, None)
        out = b"".join(self._buf)
        self._buf.clear()
        return out


_RENDERED: dict[str, bytes] = {}


def sentence_pcm(text: str) -> bytes:
    """One sentence as 16 kHz PCM (cached per process)."""
    from voxbeam.audio import resample

    pcm = _RENDERED.get(text)
    if pcm is None:
        es = Espeak.get()
        pcm = resample(es.synth(text), es.rate, STT_RATE)
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
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


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
