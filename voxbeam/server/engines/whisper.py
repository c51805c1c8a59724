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

Which model files are loaded: ``whisper_models``; speech regions, round cuts, times snapped to
speech and segments made finals: ``whisper_timing``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from faster_whisper import BatchedInferencePipeline, WhisperModel
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.vad import get_vad_model

from voxbeam.audio import BYTES_PER_SAMPLE, PcmResampler
from voxbeam.server.engines import whisper_models
from voxbeam.server.engines.base import Recognized, SttEngine, SttModel, SttSettings, SttStream
from voxbeam.server.engines.whisper_timing import RATE, finals_from, ms, round_cut, speech_regions

ROUND_S = 40.0  # buffered audio that triggers a round: one window of speech and a pause after it
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


class WhisperEngine(SttEngine):
    name = "whisper"
    default_model = "tiny.en"

    @classmethod
    def resolve(cls, model: str | None) -> SttModel:
        return whisper_models.resolve(cls.name, model, cls.default_model)

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
            return [Recognized(text, False, ms(start / RATE), ms(len(audio) / RATE))] if text else []
        if regions is None:
            regions = speech_regions(audio)
        if not regions:  # the pipeline's VAD (the same Silero model and threshold) would find none either
            return []
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
            regions=regions,
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
