"""eSpeak NG through ctypes (espeakng-loader's bundled library and data): formant voices, fast.

It speaks the languages Piper has no voice for here (the spec's ``vl-xiaoxiao``, zh-CN) and is
the fast mode for English. eSpeak NG keeps global state and is not thread-safe: a process holds
exactly one ``Synthesizer`` and calls it from one thread (the worker's loop).
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from voxbeam.audio import BYTES_PER_SAMPLE
from voxbeam.server.engines.base import TTS_PARAMETERS, Catalog, Prosody, TtsEngine, Voice
from voxbeam.server.engines.styles import ROLES, STYLES
from voxbeam.server.errors import EngineError
from voxbeam.text import bounded, sentences

AUDIO_OUTPUT_SYNCHRONOUS = 2
POS_CHARACTER = 1
ESPEAK_CHARS_UTF8 = 1
ESPEAK_RATE, ESPEAK_VOLUME, ESPEAK_PITCH, ESPEAK_RANGE = 1, 2, 3, 4
EE_OK = 0
SAMPLE_RATE = 22050  # what espeak_Initialize reports for the bundled data
# Characters one espeak_Synth call renders at most (cut at clauses, words, then characters): its
# buffers hold the call's whole audio, about a minute of speech at this length.
MAX_CHARS = 200

# Engine baselines (eSpeak NG parameter units).
BASE_WPM = 175
BASE_PITCH = 50  # espeakPITCH 0-100
BASE_RANGE = 50  # espeakRANGE 0-100
BASE_VOLUME = 100  # espeakVOLUME 0-200
MIN_WPM, MAX_WPM = 80, 450

_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
_created = threading.Lock()
_instance: Synthesizer | None = None

_ALL = frozenset(TTS_PARAMETERS)
# (id, name, language, gender, eSpeak voice+variant, description); the first of a language is its default
# among eSpeak voices (Piper voices come first in the catalog).
_VOICES = (
    ("vl-andrew", "Andrew", "en-US", "Male", "en-us+klatt4", "Klatt synthesis, fast"),
    ("vl-brian", "Brian", "en-US", "Male", "en-us+klatt5", "Klatt synthesis, fast"),
    ("vl-jenny", "Jenny", "en-US", "Female", "en-us+f2", ""),
    ("vl-aria", "Aria", "en-US", "Female", "en-us+f5", ""),
    ("vl-guy", "Guy", "en-US", "Male", "en-us+m1", ""),
    ("vl-davis", "Davis", "en-US", "Male", "en-us+m3", "deeper male"),
    ("vl-libby", "Libby", "en-GB", "Female", "en+f2", "British"),
    ("vl-ryan", "Ryan", "en-GB", "Male", "en-gb-x-rp+m1", "British, received pronunciation"),
    ("vl-sonia", "Sonia", "en-GB", "Female", "en-gb-x-rp+f4", "British, received pronunciation"),
    ("vl-xiaoxiao", "Xiaoxiao", "zh-CN", "Female", "cmn+f2", "Mandarin Chinese"),
    ("vl-yunxi", "Yunxi", "zh-CN", "Male", "cmn+m1", "Mandarin Chinese"),
    ("vl-katja", "Katja", "de-DE", "Female", "de+f2", "German"),
    ("vl-conrad", "Conrad", "de-DE", "Male", "de+m1", "German"),
    ("vl-elvira", "Elvira", "es-ES", "Female", "es+f2", "Spanish"),
    ("vl-alvaro", "Alvaro", "es-ES", "Male", "es+m1", "Spanish"),
    ("vl-denise", "Denise", "fr-FR", "Female", "fr+f2", "French"),
    ("vl-henri", "Henri", "fr-FR", "Male", "fr+m1", "French"),
    ("vl-elsa", "Elsa", "it-IT", "Female", "it+f2", "Italian"),
    ("vl-diego", "Diego", "it-IT", "Male", "it+m1", "Italian"),
)


@dataclass(frozen=True)
class EspeakParameters:
    voice: str  # name+variant
    rate: int
    pitch: int
    range: int
    volume: int


def _clamp(value: float, lo: int, hi: int) -> int:
    return int(round(min(hi, max(lo, value))))


def parameters(voice: Voice, prosody: Prosody) -> EspeakParameters:
    """Speed, pitch, volume, style and role in eSpeak NG's units (words per minute, 0-100, 0-200)."""
    name, variant = voice.model.split("+", 1)
    pitch = BASE_PITCH + 50 * prosody.pitch
    rng = float(BASE_RANGE)
    rate = BASE_WPM * prosody.speed
    volume = BASE_VOLUME * prosody.volume
    if prosody.role is not None:
        role = ROLES[prosody.role]
        variant = role.variant
        pitch += role.pitch
    if prosody.style is not None:
        style, degree = STYLES[prosody.style], prosody.degree
        pitch += degree * style.pitch
        rng += degree * style.range
        rate *= 1 + degree * (style.rate - 1)
        volume *= max(0.0, 1 + degree * (style.volume - 1))
    return EspeakParameters(
        voice=f"{name}+{variant}",
        rate=_clamp(rate, MIN_WPM, MAX_WPM),
        pitch=_clamp(pitch, 0, 100),
        range=_clamp(rng, 0, 100),
        volume=_clamp(volume, 0, 200),
    )


class Synthesizer:
    """One eSpeak NG instance; ``synthesize`` returns PCM s16le mono at ``sample_rate`` (22050)."""

    def __init__(self) -> None:
        import espeakng_loader

        lib: Any = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
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
        lib.espeak_Synth.restype = ctypes.c_int
        self._lib = lib
        rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
        if rate <= 0:
            raise EngineError("INTERNAL_ERROR", f"espeak_Initialize failed ({rate})")
        self.sample_rate: int = rate
        self._chunks: list[bytes] = []
        # Keep a reference: ctypes frees the trampoline if the callback object is collected.
        self._callback = _SynthCallback(self._on_audio)
        lib.espeak_SetSynthCallback(self._callback)
        self._params: EspeakParameters | None = None  # what the engine is set to now

    def _on_audio(self, wav: Any, samples: int, events: Any) -> int:
        if samples > 0 and wav:
            self._chunks.append(ctypes.string_at(wav, samples * BYTES_PER_SAMPLE))
        return 0  # 0 = continue synthesis

    def synthesize(self, text: str, params: EspeakParameters) -> bytes:
        """PCM s16le mono at ``self.sample_rate`` for ``text``."""
        lib = self._lib
        if params != self._params:
            self._params = None
            status = lib.espeak_SetVoiceByName(params.voice.encode("ascii"))
            if status != EE_OK:
                raise EngineError("INTERNAL_ERROR", f"eSpeak NG has no voice {params.voice!r} ({status})")
            # Parameters after the voice: selecting a voice resets them to its defaults.
            for param, value in (
                (ESPEAK_RATE, params.rate),
                (ESPEAK_VOLUME, params.volume),
                (ESPEAK_PITCH, params.pitch),
                (ESPEAK_RANGE, params.range),
            ):
                lib.espeak_SetParameter(param, value, 0)
            self._params = params
        data = text.encode("utf-8")
        self._chunks = []
        status = lib.espeak_Synth(data, len(data) + 1, 0, POS_CHARACTER, 0, ESPEAK_CHARS_UTF8, None, None)
        if status != EE_OK:
            raise EngineError("INTERNAL_ERROR", f"espeak_Synth failed ({status})")
        pcm = b"".join(self._chunks)
        self._chunks = []
        return pcm


def get_synthesizer() -> Synthesizer:
    """The process's single synthesizer (eSpeak NG's state is global)."""
    global _instance
    with _created:
        if _instance is None:
            _instance = Synthesizer()
        return _instance


class EspeakEngine(TtsEngine):
    name = "espeak"

    @classmethod
    def catalog(cls, voices_dir: str | None) -> Catalog:
        return Catalog(
            tuple(
                Voice(id_, name, language, gender, cls.name, model, SAMPLE_RATE, _ALL, description)
                for id_, name, language, gender, model, description in _VOICES
            )
        )

    def __init__(self, threads: int) -> None:
        self.synth = get_synthesizer()

    def render(self, text: str, voice: Voice, prosody: Prosody) -> Iterator[bytes]:
        params = parameters(voice, prosody)
        for sentence in sentences(text):
            yield b"".join(self.synth.synthesize(piece, params) for piece in bounded(sentence, MAX_CHARS))
