"""pocketsphinx: small, streaming, no ONNX runtime; English only (its bundled en-US model).

A ``RecognitionStream`` is one STT session's state inside a worker process. Audio is resampled to
16 kHz and cut into utterances by pocketsphinx's WebRTC-VAD ``Endpointer``. An utterance is decoded
in three steps:

1. a minimum noise floor is topped up (digital silence and synthetic speech have spectral holes the
   acoustic model never saw: 0.28 -> 0.15 word error rate on eSpeak NG speech; recordings with a
   background of their own are left alone);
2. the cepstral mean is estimated by a cheap pass with a one-word grammar on a fresh front end, so
   nothing leaks from earlier utterances or sessions;
3. the utterance is decoded with the live mean seeded from that estimate.

The mean is the whole utterance's, except where a live session's flush cuts one short: there it is
that of its first ``cmn_window_s``. That exception lets a live session decode an utterance as it
arrives, on a lent decoder, with partials from its hypothesis and only the tail left at the flush.
Everything else, bulk included, is decoded whole when it ends, on the worker's reserved decoder. The
result depends on the audio and the flush alone, in any chunking, on any decoder: pooled and fresh
sessions give the same transcripts. The decoders and their pool: ``pocketsphinx_decoders``.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pocketsphinx

from voxbeam.audio import BYTES_PER_SAMPLE, PcmResampler
from voxbeam.server.engines.base import Recognized, SttEngine, SttModel, SttSettings, SttStream, WordTiming
from voxbeam.server.engines.models import sha256_of
from voxbeam.server.engines.pocketsphinx_decoders import CMN_SEARCH, SAMPLE_RATE, DecoderPool
from voxbeam.server.errors import ModelError

FRAME_MS = 10  # pocketsphinx's frame rate is 100 frames per second
MODEL_NAME = "en-us"
_ALT_PRON = re.compile(r"\(\d+\)$")


@dataclass(frozen=True)
class RecognizerSettings:
    """pocketsphinx's own settings and tuning (``SttSettings`` sets the longest utterance, and its
    ``engine_options`` the decoders)."""

    # Decoders per worker (each ~90 MB), lent to live utterances.
    decoders: int = 3
    max_utterance_s: float = 30.0
    partial_every_s: float = 0.6
    preroll_s: float = 0.2
    vad_window_s: float = 0.3
    vad_ratio: float = 0.9
    vad_mode: int = 0
    # Standard deviation of the added noise floor, in 16-bit sample units (60 is about -55 dBFS).
    noise_floor: float = 60.0
    cmn_window_s: float = 1.0  # live utterances: the mean is seeded from their first second


class NoiseFloor:
    """A minimum noise floor: Gaussian noise from a fixed seed, indexed from an utterance's start.

    Recordings with a background of their own at ``level`` or above get nothing; digital silence
    and synthetic speech get noise up to ``level`` (so results are reproducible, and recordings
    that already match the acoustic model's training conditions are left alone).
    """

    def __init__(self, level: float, seconds: float) -> None:
        self.level = level
        self._unit = np.random.default_rng(20261127).standard_normal(int(seconds * SAMPLE_RATE)).astype(np.float32)

    def sigma_for(self, pcm: bytes) -> float:
        """The noise to add to an utterance whose (start of) audio is ``pcm``."""
        if self.level <= 0:
            return 0.0
        x = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
        frames = len(x) // 160  # 10 ms
        if frames == 0:
            return self.level
        rms = np.sqrt(np.mean(np.square(x[: frames * 160].reshape(frames, 160)), axis=1))
        background = float(np.percentile(rms, 5))
        return float(np.sqrt(max(0.0, self.level**2 - background**2)))

    def add(self, pcm: bytes, start: int, sigma: float) -> bytes:
        """``pcm`` (s16le) plus noise of ``sigma`` for samples ``start``.. of its utterance."""
        if sigma <= 0 or not pcm:
            return pcm
        x = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
        n = len(self._unit)
        if start + len(x) <= n:
            unit = self._unit[start : start + len(x)]
        else:  # longer than the table: it wraps
            unit = self._unit[np.arange(start, start + len(x)) % n]
        return np.clip(np.rint(x + sigma * unit), -32768, 32767).astype("<i2").tobytes()


def _words(decoder: Any, offset_samples: int) -> list[WordTiming]:
    out: list[WordTiming] = []
    base_ms = offset_samples * 1000 // SAMPLE_RATE
    for seg in decoder.seg():
        word = seg.word
        if word.startswith(("<", "[")):  # <s>, </s>, <sil>, [NOISE], [SPEECH] ...
            continue
        word = _ALT_PRON.sub("", word)
        out.append(
            WordTiming(
                word=word,
                offset_ms=base_ms + seg.start_frame * FRAME_MS,
                duration_ms=(seg.end_frame - seg.start_frame + 1) * FRAME_MS,
                confidence=round(min(1.0, max(0.0, float(seg.prob))), 4),
            )
        )
    return out


class _Utterance:
    """An open utterance: where it starts, and its live decoder if it has one."""

    def __init__(self, start: int, decoder: Any | None) -> None:
        self.start = start
        self.decoder = decoder
        self.fed = start  # sample index up to which the live decoder has audio (once started)
        self.started = False  # the live decoder has its mean and an utterance in progress
        self.partial_mark = start
        self.last_partial = ""
        self.noise = 0.0  # sigma of the noise added to this utterance (fixed when decoding starts)

    def stop(self) -> None:
        """End the live decoder's utterance, if it has one in progress."""
        if self.started:
            assert self.decoder is not None
            self.decoder.end_utt()
            self.started = False


class RecognitionStream(SttStream):
    """One session's recognizer: push audio, get transcripts; finish ends a recognition session."""

    def __init__(
        self,
        pool: DecoderPool,
        sample_rate: int,
        settings: RecognizerSettings = RecognizerSettings(),
        *,
        with_words: bool = True,
        detect: bool = False,
        noise: NoiseFloor | None = None,
    ) -> None:
        self._pool = pool
        self._detect = detect
        self._settings = settings
        self._with_words = with_words
        self._noise = noise or NoiseFloor(settings.noise_floor, settings.max_utterance_s + 5)
        self._resampler = PcmResampler(sample_rate, SAMPLE_RATE)
        self._cmn_samples = int(settings.cmn_window_s * SAMPLE_RATE)
        self._max_utt = int(settings.max_utterance_s * SAMPLE_RATE)
        # The endpointer may end an utterance up to its window back: live decoding stays behind that.
        self._lag = int((settings.vad_window_s + 0.05) * SAMPLE_RATE)
        self._keep = int((settings.preroll_s + settings.vad_window_s + 0.1) * SAMPLE_RATE)
        self._utt: _Utterance | None = None
        self._live = False
        self._reset()

    # -- public API ---------------------------------------------------------------------

    def push(self, pcm: bytes, live: bool = False) -> list[Recognized]:
        """Feed PCM s16le mono at the session rate (whole samples).

        ``live``: the audio arrives at about real time, so an utterance may get a decoder of its own
        (partials, and a final right after the end of speech).
        """
        self._live = live
        out: list[Recognized] = []
        self._feed(self._resampler.push(pcm), out)
        utt = self._utt
        if utt is not None and utt.decoder is None and live:
            utt.decoder = self._pool.lend()  # it catches up from the utterance's start
        if utt is not None and utt.decoder is not None:
            self._advance(utt, self._pos - self._lag, out)
        return out

    def finish(self, live: bool = False) -> list[Recognized]:
        """Finish the recognition session: every remaining final.

        ``live``: the session is live, so an utterance the flush cuts short is finished from the
        start of it (its first ``cmn_window_s``), on its live decoder when it has one: only the tail
        is left to decode while the client waits.
        """
        out: list[Recognized] = []
        self._feed(self._resampler.flush(), out)
        rest = bytes(self._pending)
        if self._utt is not None:
            if rest and self._ep.in_speech:
                self._ep.end_stream(rest)  # (it refuses an empty frame)
                self._hist += rest
                self._pos += len(rest) // BYTES_PER_SAMPLE
            self._end_utterance(self._pos, out, cut_live=live)
        self._reset()
        return out

    def close(self) -> None:
        if self._utt is not None:
            self._release(self._utt)
            self._utt = None

    # -- endpointing --------------------------------------------------------------------

    def _reset(self) -> None:
        from pocketsphinx import Endpointer

        s = self._settings
        self._ep = Endpointer(window=s.vad_window_s, ratio=s.vad_ratio, vad_mode=s.vad_mode, sample_rate=SAMPLE_RATE)
        self._frame_bytes: int = self._ep.frame_bytes
        self._pending = bytearray()
        self._pos = 0  # 16 kHz samples given to the endpointer in this recognition session
        self._hist = bytearray()  # recent audio: the open utterance plus pre-roll
        self._hist_start = 0  # sample index of _hist[0]
        self._utt = None

    def _feed(self, pcm: bytes, out: list[Recognized]) -> None:
        self._pending += pcm
        fb = self._frame_bytes
        while len(self._pending) >= fb:
            frame = bytes(self._pending[:fb])
            del self._pending[:fb]
            self._frame(frame, out)

    def _frame(self, frame: bytes, out: list[Recognized]) -> None:
        ep = self._ep
        was_speech = ep.in_speech
        speech = ep.process(frame)
        self._hist += frame
        self._pos += len(frame) // BYTES_PER_SAMPLE
        if speech is not None and not was_speech:
            self._begin_utterance(int(round(ep.speech_start * SAMPLE_RATE)))
        if speech is not None and not ep.in_speech:
            self._end_utterance(int(round(ep.speech_end * SAMPLE_RATE)), out)
        elif self._utt is not None and self._pos - self._utt.start >= self._max_utt:
            # Bound memory and latency on endless speech: cut here, carry on in a new utterance.
            cut = self._pos
            self._end_utterance(cut, out)
            self._begin_utterance(cut, preroll=False)
        if self._utt is None and len(self._hist) > 2 * self._keep * BYTES_PER_SAMPLE:
            drop = len(self._hist) // BYTES_PER_SAMPLE - self._keep
            del self._hist[: drop * BYTES_PER_SAMPLE]
            self._hist_start += drop

    def _slice(self, start: int, end: int) -> bytes:
        a = max(0, start - self._hist_start) * BYTES_PER_SAMPLE
        b = max(0, end - self._hist_start) * BYTES_PER_SAMPLE
        return bytes(self._hist[a:b])

    def _noisy(self, utt_start: int, start: int, end: int, sigma: float) -> bytes:
        return self._noise.add(self._slice(start, end), start - utt_start, sigma)

    def _begin_utterance(self, speech_start: int, preroll: bool = True) -> None:
        start = speech_start - int(self._settings.preroll_s * SAMPLE_RATE) if preroll else speech_start
        start = max(self._hist_start, start, 0)
        self._utt = _Utterance(start, self._pool.lend() if self._live else None)

    def _end_utterance(self, end: int, out: list[Recognized], *, cut_live: bool = False) -> None:
        """The utterance's final, with the mean of the whole utterance, or of its start when ``cut_live``."""
        utt = self._utt
        if utt is None:
            return
        self._utt = None
        dec = utt.decoder
        try:
            if cut_live and dec is not None and utt.started and utt.fed <= end:
                self._advance(utt, end, out, partials=False)
                utt.stop()
                final = self._final(dec, utt.start)
            else:
                utt.stop()  # its partials were shown; the final is decoded whole
                mean_end = min(end, utt.start + self._cmn_samples) if cut_live else end
                final = self._decode_whole(dec or self._pool.reserved(), utt.start, end, mean_end)
        finally:
            self._release(utt)
        # Drop what the utterance consumed, keeping the tail as pre-roll for the next one.
        keep_from = max(self._hist_start, min(end, self._pos) - self._keep)
        del self._hist[: (keep_from - self._hist_start) * BYTES_PER_SAMPLE]
        self._hist_start = keep_from
        if final is not None:
            out.append(final)

    def _release(self, utt: _Utterance) -> None:
        if utt.decoder is not None:
            utt.stop()
            self._pool.give_back(utt.decoder)
            utt.decoder = None

    # -- decoding -----------------------------------------------------------------------

    def _start(self, decoder: Any, utt_start: int, cmn_end: int) -> float:
        """Seed the decoder's cepstral mean from the start of the utterance, then start decoding it.

        Returns the sigma of the noise floor for the utterance (decided from the same audio).
        """
        sigma = self._noise.sigma_for(self._slice(utt_start, cmn_end))
        decoder.activate_search(CMN_SEARCH)
        decoder.reinit_feat()  # the front end forgets earlier utterances (and sessions)
        decoder.start_utt()
        decoder.process_raw(self._noisy(utt_start, utt_start, cmn_end, sigma), True, True)
        mean = decoder.get_cmn(True)
        decoder.end_utt()
        decoder.activate_search("_default")
        decoder.reinit_feat()
        decoder.set_cmn(mean)
        decoder.start_utt()
        return sigma

    def _advance(self, utt: _Utterance, upto: int, out: list[Recognized], *, partials: bool = True) -> None:
        """Feed a live utterance's decoder up to sample ``upto``; a partial when one is due."""
        dec = utt.decoder
        assert dec is not None
        if not utt.started:
            if upto - utt.start < self._cmn_samples:
                return  # not enough audio for the mean yet (a shorter utterance is decoded whole)
            utt.noise = self._start(dec, utt.start, utt.start + self._cmn_samples)
            utt.started = True
        if upto > utt.fed:
            dec.process_raw(self._noisy(utt.start, utt.fed, upto, utt.noise), False, False)
            utt.fed = upto
        if not partials or upto - utt.partial_mark < self._settings.partial_every_s * SAMPLE_RATE:
            return
        utt.partial_mark = upto
        hyp = dec.hyp()
        text = hyp.hypstr.strip() if hyp is not None else ""
        if text and text != utt.last_partial:
            utt.last_partial = text
            offset = utt.start * 1000 // SAMPLE_RATE
            out.append(
                Recognized(text=text, is_final=False, offset_ms=offset, duration_ms=upto * 1000 // SAMPLE_RATE - offset)
            )

    def _decode_whole(self, decoder: Any, start: int, end: int, mean_end: int) -> Recognized | None:
        if end - start < SAMPLE_RATE // 10:  # < 100 ms cannot hold a word
            return None
        sigma = self._start(decoder, start, mean_end)
        decoder.process_raw(self._noisy(start, start, end, sigma), False, False)
        decoder.end_utt()
        return self._final(decoder, start)

    def _final(self, decoder: Any, start: int) -> Recognized | None:
        hyp = decoder.hyp()
        text = hyp.hypstr.strip() if hyp is not None else ""
        words = _words(decoder, start)
        if not text or not words:
            return None
        offset = words[0].offset_ms
        end_ms = words[-1].offset_ms + words[-1].duration_ms
        confidence = round(sum(w.confidence for w in words) / len(words), 4)
        return Recognized(
            text=text,
            is_final=True,
            offset_ms=offset,
            duration_ms=end_ms - offset,
            confidence=confidence,
            words=tuple(words) if self._with_words else None,
            language="en" if self._detect else None,
        )


class PocketsphinxEngine(SttEngine):
    name = "pocketsphinx"
    default_model = MODEL_NAME

    @classmethod
    def resolve(cls, model: str | None) -> SttModel:
        if model not in (None, MODEL_NAME):
            raise ModelError(
                f"pocketsphinx has one model, {MODEL_NAME!r} (its bundled US English model); not {model!r}"
            )
        directory = os.path.join(pocketsphinx.get_model_path(), MODEL_NAME)
        # The acoustic model's parameters and the language model identify it.
        digest = hashlib.sha256()
        for name in ("mdef", "means", "variances", "sendump", "transition_matrices"):
            digest.update(sha256_of(os.path.join(directory, MODEL_NAME, name)).encode())
        digest.update(sha256_of(os.path.join(directory, f"{MODEL_NAME}.lm.bin")).encode())
        return SttModel(cls.name, MODEL_NAME, directory, digest.hexdigest(), ("en",), detects_language=False)

    def __init__(self, settings: SttSettings) -> None:
        self.tuning = RecognizerSettings(
            decoders=settings.engine_options.get("decoders", RecognizerSettings.decoders),
            max_utterance_s=settings.max_utterance_s,
        )
        self.pool = DecoderPool(self.tuning.decoders)
        self.pool.reserved()  # loaded before the worker says ready: the first session must not pay the 0.6 s load
        self.noise = NoiseFloor(self.tuning.noise_floor, self.tuning.max_utterance_s + 5)

    def open(
        self, *, language: str | None, sample_rate: int, words: bool, detect: bool, controls: Any = None
    ) -> SttStream:
        return RecognitionStream(self.pool, sample_rate, self.tuning, with_words=words, detect=detect, noise=self.noise)
