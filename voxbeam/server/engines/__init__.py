"""The engines behind the server's seam (``base.py``). Adding one: a module here and a line below."""

from __future__ import annotations

import importlib

from voxbeam.server.engines.base import SttEngine, TtsEngine
from voxbeam.server.engines.models import materialize, sha256_of
from voxbeam.server.errors import ConfigError

# name -> "module:class", and the pip command that installs what the module imports.
STT_ENGINES: dict[str, tuple[str, str]] = {
    "whisper": ("voxbeam.server.engines.whisper:WhisperEngine", "pip install 'voxbeam[server]'"),
    "pocketsphinx": ("voxbeam.server.engines.pocketsphinx:PocketsphinxEngine", "pip install 'voxbeam[pocketsphinx]'"),
}
# In catalog order: a language's first voice is its default, so Piper's neural voices come first.
TTS_ENGINES: dict[str, tuple[str, str]] = {
    "piper": ("voxbeam.server.engines.piper:PiperEngine", "pip install 'voxbeam[server]'"),
    "espeak": ("voxbeam.server.engines.espeak:EspeakEngine", "pip install 'voxbeam[server]'"),
}
DEFAULT_STT_ENGINE = "whisper"


def _load(table: dict[str, tuple[str, str]], kind: str, name: str) -> type:
    if name not in table:
        raise ConfigError(f"unknown {kind} engine {name!r}; engines: {', '.join(table)}")
    target, pip = table[name]
    module, _, attr = target.partition(":")
    try:
        cls: type = getattr(importlib.import_module(module), attr)
    except ImportError as exc:
        raise ConfigError(f"the {name} engine cannot load ({exc}): {pip}") from None
    return cls


def diarizer() -> tuple[str | None, str]:
    """The speaker model diarization runs (``diarization.py``, ``speaker.py``): its label when installed and
    verified, else None, and one line saying which (server process, at start; workers load it on first use)."""
    from voxbeam.server.engines.speaker import RESEMBLYZER  # numpy, only when asked

    try:
        path = materialize(RESEMBLYZER) / "pretrained.pt"
    except ConfigError as exc:  # ModelError: not installed, or not the pinned weights
        return None, f"speaker diarization off: {exc}"
    label = f"{RESEMBLYZER.name}@sha256:{sha256_of(path)[:12]}"
    return label, f"speaker diarization: {label}"


def stt_engine(name: str) -> type[SttEngine]:
    return _load(STT_ENGINES, "STT", name)


def tts_engine(name: str) -> type[TtsEngine]:
    return _load(TTS_ENGINES, "TTS", name)
