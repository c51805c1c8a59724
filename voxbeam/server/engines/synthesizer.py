"""eSpeak NG through ctypes (espeakng-loader's bundled library and data).

eSpeak NG keeps global state and is not thread-safe: a process holds exactly one
``Synthesizer`` and calls it from one thread (the worker's loop).
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

from voxbeam.server.voices import Prosody

AUDIO_OUTPUT_SYNCHRONOUS = 2
POS_CHARACTER = 1
ESPEAK_CHARS_UTF8 = 1
ESPEAK_RATE, ESPEAK_VOLUME, ESPEAK_PITCH, ESPEAK_RANGE = 1, 2, 3, 4
EE_OK = 0

_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
_created = threading.Lock()
_instance: Synthesizer | None = None


class SynthesisError(Exception):
    pass


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
            raise SynthesisError(f"espeak_Initialize failed ({rate})")
        self.sample_rate: int = rate
        self._chunks: list[bytes] = []
        # Keep a reference: ctypes frees the trampoline if the callback object is collected.
        self._callback = _SynthCallback(self._on_audio)
        lib.espeak_SetSynthCallback(self._callback)
        self._prosody: Prosody | None = None  # what the engine is set to now

    def _on_audio(self, wav: Any, samples: int, events: Any) -> int:
        if samples > 0 and wav:
            self._chunks.append(ctypes.string_at(wav, samples * 2))
        return 0  # 0 = continue synthesis

    def synthesize(self, text: str, prosody: Prosody) -> bytes:
        """PCM s16le mono at ``self.sample_rate`` for ``text``."""
        lib = self._lib
        if prosody != self._prosody:
            self._prosody = None
            self._set_voice(prosody.espeak_voice)
            # Parameters after the voice: selecting a voice resets them to its defaults.
            for param, value in (
                (ESPEAK_RATE, prosody.rate),
                (ESPEAK_VOLUME, prosody.volume),
                (ESPEAK_PITCH, prosody.pitch),
                (ESPEAK_RANGE, prosody.range),
            ):
                lib.espeak_SetParameter(param, value, 0)
            self._prosody = prosody
        data = text.encode("utf-8")
        self._chunks = []
        status = lib.espeak_Synth(data, len(data) + 1, 0, POS_CHARACTER, 0, ESPEAK_CHARS_UTF8, None, None)
        if status != EE_OK:
            raise SynthesisError(f"espeak_Synth failed ({status})")
        pcm = b"".join(self._chunks)
        self._chunks = []
        return pcm

    def _set_voice(self, name: str) -> None:
        status = self._lib.espeak_SetVoiceByName(name.encode("ascii"))
        if status != EE_OK:
            raise SynthesisError(f"eSpeak NG has no voice {name!r} ({status})")


def get_synthesizer() -> Synthesizer:
    """The process's single synthesizer (eSpeak NG's state is global)."""
    global _instance
    with _created:
        if _instance is None:
            _instance = Synthesizer()
        return _instance
