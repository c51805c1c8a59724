"""Whisper through CTranslate2 (faster-whisper): int8 on the CPU, batched over voice activity.

Bulk streams (audio much faster than real time) are decoded with faster-whisper's
``BatchedInferencePipeline`` a few windows' worth at a time: once ``ROUND_S`` of audio is buffered,
the speech that fills ``WINDOWS_PER_ROUND`` 30 s windows is cut off at a pause and handed back as a
``Deferred`` for whichever worker is free. So a long file's work is spread over its upload and over
every core, results flow while audio does, memory stays bounded, and ``flush`` has only the tail left.
Windows are decoded in batches: two or three cost ~20 % less CPU per window than one at a time. A short
file is decoded whole at its flush.

Live streams (audio at about real time) are endpointed on the same VAD as audio arrives: a greedy
partial every second of speech, and a final from the same pipeline as bulk finals. Finals are split
at sentence ends; ``text`` keeps Whisper's punctuation and casing, ``words`` the spoken words without
punctuation. The design in full: voxbeam/server/README.md, "Architecture".

Which model files are loaded: ``whisper_models``; speech regions, round cuts, times snapped to
speech and segments made finals: ``whisper_timing``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from faster_whisper import BatchedInferencePipeline
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.vad import get_vad_model

from voxbeam.audio import BYTES_PER_SAMPLE, PcmResampler
from voxbeam.protocol_controls import SttControls
from voxbeam.server.engines import whisper_models
from voxbeam.server.engines.base import (
    Deferred,
    Recognized,
    SttEngine,
    SttModel,
    SttSettings,
    SttStream,
)
from voxbeam.server.engines.whisper_batch import OneWindowAtATime, transcribe_many
from voxbeam.server.engines.whisper_controls import best_language, decode_options, fitted
from voxbeam.server.engines.whisper_timing import RATE, finals_from, ms, round_cuts, speech_regions, vad_probabilities

WINDOWS_PER_ROUND = 3
# Buffered audio that triggers a round: its windows' worth and room to find a pause after them.
ROUND_S = WINDOWS_PER_ROUND * 30.0 + 10.0
BATCH_SIZE = 8
BEAM_SIZE = 5
# A recognition session that ends with at most this much audio still buffered (a short request, or the
# tail of a file) is decoded at its flush by its own worker, beside whatever batch that worker's
# decoding thread has in hand, instead of waiting in the queue behind other sessions' rounds.
INLINE_FINAL_S = 10.0
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


class WhisperEngine(SttEngine):
    name = "whisper"
    default_model = "tiny.en"
    # Partials re-encode the utterance so far every second, and a final is decoded alone, not in a
    # batch: bench/fairness.py measured 5.6 (2 cores, tiny.en).
    live_cost = 5.5

    @classmethod
    def resolve(cls, model: str | None) -> SttModel:
        return whisper_models.resolve(cls.name, model, cls.default_model)

    def __init__(self, settings: SttSettings) -> None:
        logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # it logs every call at INFO
        self.settings = settings
        self.model = OneWindowAtATime(
            settings.model.path,
            device="cpu",
            compute_type="int8",
            cpu_threads=settings.threads,
            # Two model workers (the weights are shared): a worker decodes deferred windows in a thread
            # beside its streams, whose own decoding (live finals, a short request's flush) then runs at
            # the same time instead of waiting for the batch.
            num_workers=2,
            local_files_only=True,
        )
        # One pipeline per thread that decodes: a pipeline keeps per-call state (the last word's end).
        self._pipelines = {beside: (BatchedInferencePipeline(self.model), threading.Lock()) for beside in (False, True)}
        self.vad = get_vad_model()
        self.multilingual = bool(self.model.model.is_multilingual)
        self._tokenizers: dict[tuple[str, str], Any] = {}

    def open(
        self, *, language: str | None, sample_rate: int, words: bool, detect: bool, controls: SttControls | None = None
    ) -> SttStream:
        fit = fitted(self.model.hf_tokenizer, controls)
        return WhisperStream(self, language=language, sample_rate=sample_rate, words=words, detect=detect, controls=fit)

    def decode(self, works: list[Any]) -> list[list[Recognized]]:
        # One batch decodes with one set of options: windows are batched with those that share theirs.
        by_options: dict[tuple[str | None, bool, SttControls], list[int]] = {}
        for i, window in enumerate(works):
            assert isinstance(window, _Window)
            by_options.setdefault((window.language, window.words, window.controls), []).append(i)
        out: list[list[Recognized]] = [[] for _ in works]
        for indexes in by_options.values():
            finals, _, _ = self.decode_windows([works[i] for i in indexes], beside=False)
            for i, found in zip(indexes, finals, strict=True):
                out[i] = found
        return out

    def decode_windows(
        self, windows: list[_Window], *, beside: bool
    ) -> tuple[list[list[Recognized]], str, float | None]:
        """Each window's finals, decoded in one batch; the language and, when it was detected, its probability.

        The windows share their language (None: detect it), whether words are timed and their controls.
        ``beside``: a stream's own decoding, beside the deferred batches (each kind has its pipeline).
        """
        first = windows[0]
        language = first.language if self.multilingual else "en"
        pipeline, lock = self._pipelines[beside]
        with lock:
            found, language, probability = transcribe_many(
                pipeline,
                [_float(w.pcm) for w in windows],
                first.controls.languages,
                language=language,
                batch_size=BATCH_SIZE,
                beam_size=BEAM_SIZE,
                word_timestamps=first.words,
                **decode_options(first.controls),
            )
        detected = None if first.language is not None or not self.multilingual else probability
        finals = []
        for window, segments in zip(windows, found, strict=True):
            p = window.probability if window.language is not None else detected
            finals.append(
                finals_from(
                    segments,
                    window.start_s,
                    words=window.words,
                    language=language if window.report else None,
                    probability=p if window.report else None,
                    regions=window.regions,
                )
            )
        return finals, language, first.probability if first.language is not None else detected

    def partial(self, audio: np.ndarray, language: str | None, controls: SttControls) -> str:
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
            probabilities = [(token[2:-2], p) for token, p in self.model.model.detect_language(encoded)[0]]
            language = (
                best_language(probabilities, controls.languages)[0] if controls.languages else probabilities[0][0]
            )
        tokenizer = self._tokenizer(language, controls.task or "transcribe")
        before = tokenizer.encode(" " + controls.prompt) if controls.prompt else []
        prompt = self.model.get_prompt(tokenizer, before, without_timestamps=True, hotwords=controls.hotwords)
        result = self.model.model.generate(encoded, [prompt], beam_size=1, suppress_blank=True)
        return str(tokenizer.decode(result[0].sequences_ids[0])).strip()

    def _tokenizer(self, language: str, task: str) -> Any:
        tokenizer = self._tokenizers.get((language, task))
        if tokenizer is None:
            tokenizer = self._tokenizers[language, task] = Tokenizer(
                self.model.hf_tokenizer, self.multilingual, task=task, language=language
            )
        return tokenizer

    def speech_probabilities(self, audio: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        """Silero's speech probability for each 32 ms window of ``audio`` after its first (whole windows; the
        first is look-behind), carrying its recurrent ``state`` from the call before (None: a stream's start):
        a stream scored push by push gets what its whole audio scored at once would (``whisper_timing``)."""
        return vad_probabilities(self.vad.session, audio, state)


def _float(pcm: bytes | bytearray, start: int = 0, end: int | None = None) -> np.ndarray:
    """Samples ``start``..``end`` of s16le ``pcm`` as float32 in [-1, 1)."""
    return np.frombuffer(pcm, dtype="<i2")[start:end].astype(np.float32) / 32768.0


@dataclass(frozen=True)
class _Window:
    """A bulk stretch of audio cut off by its stream, with all its decoding needs (see ``Deferred``)."""

    pcm: bytes  # 16 kHz s16le
    start_s: float  # where it starts in its recognition session
    regions: list[tuple[float, float]]  # speech in it, relative to its start
    language: str | None  # None: detect it
    words: bool
    report: bool  # finals carry the language (it was detected, or left to the engine)
    probability: float | None  # of the language, when it was detected earlier
    controls: SttControls  # prompt, hotwords, task, candidate languages (fitted to the model)


class WhisperStream(SttStream):
    """One session's audio: buffered for bulk rounds, or endpointed live."""

    def __init__(
        self,
        engine: WhisperEngine,
        *,
        language: str | None,
        sample_rate: int,
        words: bool,
        detect: bool,
        controls: SttControls,
    ) -> None:
        self._engine = engine
        self._controls = controls
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
        self._vad_state: Any = None  # live: Silero's recurrent state after the last window scored
        self._utt: int | None = None  # live: window index where the open utterance starts
        self._silence = 0  # live: windows of silence since the utterance's last speech
        self._partial_at = 0  # live: window index of the last partial

    # -- SttStream ----------------------------------------------------------------------

    def push(self, pcm: bytes, live: bool) -> list[Recognized | Deferred]:
        self._buf += self._resampler.push(pcm)
        if live:
            return list(self._live())
        out: list[Recognized | Deferred] = []
        while len(self._buf) >= ROUND_S * RATE * BYTES_PER_SAMPLE and self._round(out):
            pass
        return out

    def finish(self, live: bool) -> list[Recognized | Deferred]:
        self._buf += self._resampler.flush()
        out: list[Recognized | Deferred]
        if live and self._probs:
            out = list(self._live())
            if self._utt is not None:
                out += self._final_live(len(self._probs))
        else:
            out = self._bulk()
        self._reset()
        return out

    def close(self) -> None:
        self._buf = bytearray()

    # -- bulk ---------------------------------------------------------------------------

    def _audio(self, start: int = 0, end: int | None = None) -> np.ndarray:
        """Buffered samples ``start``..``end`` (relative to ``_start``) as float32."""
        return _float(self._buf, start, end)

    def _bulk(self) -> list[Recognized | Deferred]:
        """Everything buffered, decoded here when it is little, else deferred (the end of a recognition session)."""
        inline = len(self._buf) <= INLINE_FINAL_S * RATE * BYTES_PER_SAMPLE
        out = self._cut(None, final=True, inline=inline) if self._buf else []
        self._start += len(self._buf) // BYTES_PER_SAMPLE  # after the last cut: silence
        self._buf = bytearray()
        return out

    def _round(self, out: list[Recognized | Deferred]) -> bool:
        """Cut off the buffered speech that fills a round's windows; False when it must wait."""
        before = len(self._buf)
        out += self._cut(WINDOWS_PER_ROUND, final=False)
        return len(self._buf) < before

    def _cut(self, windows: int | None, *, final: bool, inline: bool = False) -> list[Recognized | Deferred]:
        """The buffer's first ``windows`` windows of speech (see ``round_cuts``), taken: nothing when it must wait."""
        audio = self._audio()
        regions = speech_regions(audio)
        out: list[Recognized | Deferred] = []
        done = 0.0
        for cut in round_cuts(regions, len(audio) / RATE, windows, final=final):
            inside = [(max(lo, done) - done, min(hi, cut) - done) for lo, hi in regions if lo < cut and hi > done]
            out += self._take(int(cut * RATE) - int(done * RATE), inside, inline=inline)
            done = cut
        return out

    def _take(self, n: int, regions: list[tuple[float, float]], *, inline: bool = False) -> list[Recognized | Deferred]:
        """The first ``n`` buffered samples, dropped from the buffer and decoded: here while the language
        is still to be found (what follows needs it) or when ``inline``, else deferred to whichever worker is free."""
        pcm = bytes(self._buf[: n * BYTES_PER_SAMPLE])
        del self._buf[: n * BYTES_PER_SAMPLE]
        start, self._start = self._start, self._start + n
        window = self._window(pcm, start, regions)
        if window is None:
            return []
        if self._language is None or inline:
            return list(self._decode(window))
        return [Deferred(window, n / RATE)]

    def _window(self, pcm: bytes, start: int, regions: list[tuple[float, float]] | None = None) -> _Window | None:
        """``pcm`` (starting at sample ``start``) with what decoding it needs; None when it holds no speech."""
        if len(pcm) < RATE // 10 * BYTES_PER_SAMPLE:
            return None
        if regions is None:
            regions = speech_regions(_float(pcm))
        if not regions:  # the pipeline's VAD (the same Silero model and threshold) would find none either
            return None
        report = self._detect or self._requested is None
        return _Window(
            pcm, start / RATE, regions, self._language, self._words, report, self._probability, self._controls
        )

    def _decode(self, window: _Window | None) -> list[Recognized]:
        """The window's finals, here and now; the first one fixes the language of what follows."""
        if window is None:
            return []
        finals, self._language, self._probability = self._engine.decode_windows([window], beside=True)
        return finals[0]

    # -- live ---------------------------------------------------------------------------

    def _live(self) -> list[Recognized]:
        """Score new windows, close utterances that ended, and give the open one a partial."""
        done = len(self._probs)
        available = len(self._buf) // BYTES_PER_SAMPLE // WINDOW
        if available > done:
            chunk = self._audio(max(0, done - 1) * WINDOW, available * WINDOW)
            chunk = chunk if done else np.concatenate([np.zeros(WINDOW, np.float32), chunk])  # silence before
            probs, self._vad_state = self._engine.speech_probabilities(chunk, self._vad_state)
            self._probs.extend(float(x) for x in probs)
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
            out += self._partial(self._audio(lo, len(self._probs) * WINDOW), self._start + lo)
        self._trim()
        return out

    def _final_live(self, end_window: int) -> list[Recognized]:
        """The open utterance's finals, from its start (with a little pre-roll) to ``end_window``."""
        assert self._utt is not None
        lo = max(0, self._utt * WINDOW - int(PAD_S * RATE))
        hi = min(len(self._buf) // BYTES_PER_SAMPLE, end_window * WINDOW + int(PAD_S * RATE))
        self._utt, self._silence = None, 0
        return self._decode(
            self._window(bytes(self._buf[lo * BYTES_PER_SAMPLE : hi * BYTES_PER_SAMPLE]), self._start + lo)
        )

    def _partial(self, audio: np.ndarray, start: int) -> list[Recognized]:
        if len(audio) < RATE // 10:
            return []
        text = self._engine.partial(audio[-WINDOW_FRAMES * RATE // 100 :], self._language, self._controls)
        return [Recognized(text, False, ms(start / RATE), ms(len(audio) / RATE))] if text else []

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
