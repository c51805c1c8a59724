"""Whisper through CTranslate2 (faster-whisper): int8 on the CPU, batched over voice activity.

Bulk streams (audio much faster than real time) are decoded with faster-whisper's
``BatchedInferencePipeline`` a few windows' worth at a time: once ``ROUND_S`` of audio is buffered,
the speech that fills ``WINDOWS_PER_ROUND`` 30 s windows is cut off at a pause and handed back as a
``Deferred`` for whichever worker is free. So a long file's work is spread over its upload and over
every core, results flow while audio does, memory stays bounded, and ``flush`` has only the tail left.
Windows are decoded in batches: two or three cost ~20 % less CPU per window than one at a time. A short
file is decoded whole at its flush.

Live streams (audio at about real time) are endpointed on the same VAD as audio arrives. By default
(``whisper_utterance``) each utterance gets a greedy partial every second and, when it ends, a final from
the same pipeline as bulk finals. With ``voxbeam serve --live_decoding incremental`` (``whisper_live``)
the open utterance is decoded again every half second and words are committed once two decodes agree:
finals sentence by sentence while the speech goes on. Finals are split at sentence ends; ``text`` keeps
Whisper's punctuation and casing, ``words`` the spoken words without punctuation. The design in full:
voxbeam/server/README.md, "Architecture".

Which model files are loaded: ``whisper_models``; speech regions, round cuts, times snapped to
speech and segments made finals: ``whisper_timing``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from faster_whisper import BatchedInferencePipeline
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.vad import get_vad_model

from voxbeam.audio import BYTES_PER_SAMPLE, PcmResampler
from voxbeam.protocol_controls import SttControls
from voxbeam.server.engines import whisper_hypothesis, whisper_models
from voxbeam.server.engines.base import (
    Deferred,
    Recognized,
    SttEngine,
    SttModel,
    SttSettings,
    SttStream,
)
from voxbeam.server.engines.whisper_batch import OneWindowAtATime, transcribe_many
from voxbeam.server.engines.whisper_controls import decode_options, detect, fitted
from voxbeam.server.engines.whisper_hypothesis import Word
from voxbeam.server.engines.whisper_live import MAX_BUFFER_S, LiveSession, live_final
from voxbeam.server.engines.whisper_timing import RATE, finals_from, round_cuts, speech_regions
from voxbeam.server.engines.whisper_utterance import UtteranceSession, guess
from voxbeam.server.engines.whisper_vad import vad_probabilities

WINDOWS_PER_ROUND = 3
# Buffered audio that triggers a round: its windows' worth and room to find a pause after them.
ROUND_S = WINDOWS_PER_ROUND * 30.0 + 10.0
BATCH_SIZE = 8
BEAM_SIZE = 5
# A recognition session that ends with at most this much audio still buffered (a short request, or the
# tail of a file) is decoded at its flush by its own worker, beside whatever batch that worker's
# decoding thread has in hand, instead of waiting in the queue behind other sessions' rounds.
INLINE_FINAL_S = 10.0
# Audio a live session that is not live for now (a worker behind, a client sending in bulk) buffers unprocessed.
BACKLOG_S = 20.0


class WhisperEngine(SttEngine):
    name = "whisper"
    default_model = "tiny.en"
    # Partials re-encode the utterance so far every second, and a final is decoded alone, not in a
    # batch: bench/fairness.py measured 5.6 (2 cores, tiny.en).
    live_cost = 5.5
    # --live_decoding incremental decodes the open utterance again every half second: bench/live.py measured
    # 6.4, 7.4 and 8.5 (2 live streams on 2 cores, beside another engineer's load; 5.6 by utterance); with a
    # decode at each pause too, 9.4 twice on a quiet machine (9.0 without).
    INCREMENTAL_LIVE_COST = 9.5

    @classmethod
    def live_cost_with(cls, options: Mapping[str, Any]) -> float:
        return cls.INCREMENTAL_LIVE_COST if options.get("live_decoding") == "incremental" else cls.live_cost

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
        # Live streams commit words as they come (whisper_live) or are decoded utterance by utterance.
        self.incremental = settings.engine_options.get("live_decoding") == "incremental"
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

    def live_words(
        self,
        audio: np.ndarray,
        offset_s: float,
        said: str,
        known: tuple[str, float],
        language: str | None,
        controls: SttControls,
    ) -> tuple[list[Word], str, float | None]:
        """A live hypothesis of ``audio`` (a buffer of under 28 s at ``offset_s``; ``said``: the committed text
        before it; ``known``: in it, and where that ends, s into ``audio``): the words after ``known``, see
        ``whisper_hypothesis``; the language and, when it was detected here, its probability."""
        probability = None
        if not self.multilingual:
            language = "en"
        elif language is None:
            language, probability = detect(self.model, audio, controls.languages or ())
        tokenizer = self.tokenizer(language, controls.task or "transcribe")
        prompt = " ".join(p for p in (controls.prompt, said) if p)
        previous = tokenizer.encode(" " + prompt) if prompt else []
        words = whisper_hypothesis.decode(
            self.model,
            tokenizer,
            audio,
            offset_s,
            previous,
            hotwords=controls.hotwords,
            beam_size=BEAM_SIZE,
            prefix=known[0],
            prefix_end=known[1],
        )
        return words, language, probability

    def tokenizer(self, language: str, task: str) -> Any:
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


def _float(pcm: bytes | bytearray) -> np.ndarray:
    """s16le ``pcm`` as float32 in [-1, 1)."""
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


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
        self._max_buffer_s = min(MAX_BUFFER_S, engine.settings.max_utterance_s)
        self._reset()

    @property
    def _reports_language(self) -> bool:
        """Whether finals carry the language: detection was asked for, or the language left to the engine."""
        return self._detect or self._requested is None

    def _reset(self) -> None:
        self._language = self._requested  # None until detected
        self._probability: float | None = None
        self._buf = bytearray()  # bulk: 16 kHz s16le not yet cut off
        self._start = 0  # sample index of _buf[0] in this recognition session
        self._live: LiveSession | UtteranceSession | None = None  # once audio has come live, until the session's end

    # -- SttStream ----------------------------------------------------------------------

    def push(self, pcm: bytes, live: bool) -> list[Recognized | Deferred]:
        self._buf += self._resampler.push(pcm)
        if live or self._live is not None:
            session = self._live_session()
            # Not live now (the worker is behind, or the client sends faster than real time): buffered, and
            # endpointed once there is a backlog, so that a session that went on in bulk stays bounded.
            return list(session.push(self._take_buffer(), process=live or session.backlog_s >= BACKLOG_S))
        out: list[Recognized | Deferred] = []
        while len(self._buf) >= ROUND_S * RATE * BYTES_PER_SAMPLE and self._round(out):
            pass
        return out

    def finish(self, live: bool) -> list[Recognized | Deferred]:
        self._buf += self._resampler.flush()
        out: list[Recognized | Deferred]
        if self._live is not None:
            self._live.push(self._take_buffer(), process=False)
            out = list(self._live.finish())
        else:
            out = self._bulk()
        self._reset()
        return out

    def close(self) -> None:
        self._buf = bytearray()
        self._live = None

    # -- live -----------------------------------------------------------------------------

    def _live_session(self) -> LiveSession | UtteranceSession:
        """The live decoding of this recognition session (begun with the audio so far, taken from the buffer)."""
        if self._live is None and self._engine.incremental:
            self._live = LiveSession(
                self._hypothesis,
                self._engine.speech_probabilities,
                self._final,
                start=self._start,
                max_buffer_s=self._max_buffer_s,
            )
        elif self._live is None:
            self._live = UtteranceSession(
                lambda pcm, start: self._decode(self._window(pcm, start)),
                lambda audio: guess(self._engine, audio, self._language, self._controls),
                self._engine.speech_probabilities,
                start=self._start,
                max_utt_s=self._engine.settings.max_utterance_s,
            )
        return self._live

    def _take_buffer(self) -> bytes:
        pcm, self._buf = bytes(self._buf), bytearray()
        self._start += len(pcm) // BYTES_PER_SAMPLE
        return pcm

    def _hypothesis(self, audio: np.ndarray, offset_s: float, said: str, known: tuple[str, float]) -> list[Word]:
        engine = self._engine
        words, language, probability = engine.live_words(audio, offset_s, said, known, self._language, self._controls)
        if self._language is None:
            self._language, self._probability = language, probability
        return words

    def _final(self, words: list[Word]) -> Recognized:
        """Committed words (a sentence, or what an utterance ended with) as a final."""
        return live_final(
            words,
            with_words=self._words,
            language=self._language if self._reports_language else None,
            probability=self._probability,
        )

    # -- bulk ---------------------------------------------------------------------------

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
        # The buffer's samples as they are: a float32 copy of a 100 s round was 6.4 MB more beside decoding.
        samples = np.frombuffer(self._buf, dtype="<i2")
        regions, total = speech_regions(samples), len(samples) / RATE
        del samples  # a view of the buffer keeps it from being cut
        out: list[Recognized | Deferred] = []
        done = 0.0
        for cut in round_cuts(regions, total, windows, final=final):
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
        report = self._reports_language
        return _Window(
            pcm, start / RATE, regions, self._language, self._words, report, self._probability, self._controls
        )

    def _decode(self, window: _Window | None) -> list[Recognized]:
        """The window's finals, here and now; the first one fixes the language of what follows."""
        if window is None:
            return []
        finals, self._language, self._probability = self._engine.decode_windows([window], beside=True)
        return finals[0]
