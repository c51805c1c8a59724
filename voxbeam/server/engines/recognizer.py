"""Streaming speech recognition with pocketsphinx: endpointing, a decoder pool, transcripts.

A ``RecognitionStream`` is one STT session's state inside a worker process. Audio is
resampled to 16 kHz, cut into utterances by pocketsphinx's WebRTC-VAD ``Endpointer`` and
decoded. Finals are decoded in one batch per utterance (``full_utt``: cepstral mean over the
whole utterance, which recognises better than the live estimate and leaks no state between
sessions sharing a decoder). Partials come from a second, incremental pass on a decoder lent
to the utterance while a spare one is free; one decoder always stays free for finals, so a
final never waits for another session.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from voxbeam.audio import PcmResampler
from voxbeam.protocol import Transcript, Word

SAMPLE_RATE = 16000
FRAME_MS = 10  # pocketsphinx's frame rate is 100 frames per second
BYTES_PER_SAMPLE = 2
_ALT_PRON = re.compile(r"\(\d+\)$")


def new_decoder(*, partial: bool = False, seed: int = 1) -> Any:
    """A pocketsphinx decoder with the bundled en-US model.

    Dither is needed on synthetic audio: digital silence gives -inf log energies otherwise.
    A fixed seed makes results reproducible run to run. Decoders for partials run the first
    (tree) pass only, with a narrower search: its hypothesis is all a partial shows, and it
    ranks warp factors as well as a full decode does at a third of the cost.
    """
    from pocketsphinx import Decoder

    # topn 8 (not 4) Gaussians per frame: measured 19% -> 14% WER on our eSpeak test sets, ~5% slower.
    extra: dict[str, Any] = {"fwdflat": False, "bestpath": False, "maxhmmpf": 3000} if partial else {"topn": 8}
    return Decoder(samprate=SAMPLE_RATE, dither=True, seed=seed, loglevel="FATAL", **extra)


@dataclass(frozen=True)
class RecognizerSettings:
    decoders: int = 3
    max_utterance_s: float = 30.0
    partial_every_s: float = 0.6
    preroll_s: float = 0.2
    vad_window_s: float = 0.3
    vad_ratio: float = 0.9
    vad_mode: int = 0
    # Vocal tract length normalisation: the first utterance of each recognition session is
    # decoded with every warp factor and the most likely one is kept for the rest of it.
    warps: tuple[float, ...] = (1.0, 1.15, 1.3)
    min_vtln_s: float = 0.8  # shorter first utterances say too little about the voice
    vtln_window_s: float = 2.0  # score at most this much of it (bounds the cost)


def set_warp(decoder: Any, warp: float) -> None:
    """Frequency warp of the decoder's front end (inverse linear: f -> f / warp); cheap to switch."""
    value = f"{warp:g}"
    if decoder.config["warp_params"] != value:
        decoder.config["warp_params"] = value
        decoder.reinit_feat()


class DecoderPool:
    """A worker's decoders: one for finals and up to ``size - 1`` lent to open utterances for partials.

    The worker runs one request at a time and a final is decoded within one request, so a
    single final decoder never makes a final wait. Decoders are created on first need
    (each costs ~90 MB and ~0.6 s).
    """

    def __init__(
        self,
        size: int,
        final_factory: Callable[[], Any] = new_decoder,
        partial_factory: Callable[[], Any] = lambda: new_decoder(partial=True),
    ) -> None:
        if size < 1:
            raise ValueError("a decoder pool needs at least one decoder")
        self.size = size
        self._final_factory = final_factory
        self._partial_factory = partial_factory
        self._final: Any = None
        self._free: list[Any] = []
        self._partials = 0

    @property
    def created(self) -> int:
        return self._partials + (self._final is not None)

    @property
    def lent(self) -> int:
        return self._partials - len(self._free)

    def final(self) -> Any:
        if self._final is None:
            self._final = self._final_factory()
        return self._final

    def lend(self) -> Any | None:
        """A decoder for an utterance's partials, or None when all are lent (partials are best effort)."""
        if self._free:
            return self._free.pop()
        if self._partials < self.size - 1:
            decoder = self._partial_factory()
            self._partials += 1
            return decoder
        return None

    def give_back(self, decoder: Any) -> None:
        self._free.append(decoder)


def _words(decoder: Any, offset_samples: int) -> list[Word]:
    out: list[Word] = []
    base_ms = offset_samples * 1000 // SAMPLE_RATE
    for seg in decoder.seg():
        word = seg.word
        if word.startswith(("<", "[")):  # <s>, </s>, <sil>, [NOISE], [SPEECH] ...
            continue
        word = _ALT_PRON.sub("", word)
        out.append(
            Word(
                word=word,
                offset=base_ms + seg.start_frame * FRAME_MS,
                duration=(seg.end_frame - seg.start_frame + 1) * FRAME_MS,
                confidence=round(min(1.0, max(0.0, float(seg.prob))), 4),
            )
        )
    return out


class RecognitionStream:
    """One session's recognizer: push audio, get transcripts; flush ends a recognition session."""

    def __init__(
        self,
        pool: DecoderPool,
        sample_rate: int,
        settings: RecognizerSettings = RecognizerSettings(),
        *,
        with_words: bool = True,
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._with_words = with_words
        self._rate = sample_rate
        self._resampler = PcmResampler(sample_rate, SAMPLE_RATE)
        self._carry = b""
        self._reset()
        self.audio_samples = 0  # input samples received over the stream's life (for accounting)

    # -- public API ---------------------------------------------------------------------

    def push(self, data: bytes) -> list[Transcript]:
        """Feed PCM s16le mono at the session rate (any length; odd bytes carry over)."""
        if self._carry:
            data = self._carry + data
            self._carry = b""
        if len(data) % 2:
            self._carry = data[-1:]
            data = data[:-1]
        self.audio_samples += len(data) // 2
        out: list[Transcript] = []
        self._feed(self._resampler.push(data), out)
        return out

    def flush(self) -> tuple[list[Transcript], bool]:
        """Finish the recognition session: every remaining final, and whether a stray byte was dropped."""
        odd = bool(self._carry)
        self._carry = b""
        out: list[Transcript] = []
        self._feed(self._resampler.flush(), out)
        rest = bytes(self._pending)
        if self._utt_start is not None:
            if rest and self._ep.in_speech:
                self._ep.end_stream(rest)  # (it refuses an empty frame)
                self._hist += rest
                self._pos += len(rest) // BYTES_PER_SAMPLE
            self._end_utterance(self._pos, out)
        self._release_partial_decoder()
        self._reset()
        return out, odd

    def close(self) -> None:
        self._release_partial_decoder()

    @property
    def warp(self) -> float | None:
        """The recognition session's frequency warp, once estimated."""
        return self._warp

    # -- internals ----------------------------------------------------------------------

    def _reset(self) -> None:
        from pocketsphinx import Endpointer

        s = self._settings
        self._ep = Endpointer(window=s.vad_window_s, ratio=s.vad_ratio, vad_mode=s.vad_mode, sample_rate=SAMPLE_RATE)
        self._frame_bytes: int = self._ep.frame_bytes
        self._pending = bytearray()
        self._pos = 0  # 16 kHz samples given to the endpointer in this recognition session
        self._hist = bytearray()  # recent audio: the open utterance plus pre-roll
        self._hist_start = 0  # sample index of _hist[0]
        self._utt_start: int | None = None  # sample index where the open utterance's audio starts
        self._partial_decoder: Any = None
        self._fed = 0  # sample index up to which the partial decoder has audio
        self._partial_mark = 0
        self._last_partial = ""
        self._keep = int((s.preroll_s + s.vad_window_s + 0.1) * SAMPLE_RATE)
        self._warp: float | None = s.warps[0] if len(s.warps) == 1 else None
        self._max_utt = int(s.max_utterance_s * SAMPLE_RATE)

    def _feed(self, pcm: bytes, out: list[Transcript]) -> None:
        self._pending += pcm
        fb = self._frame_bytes
        while len(self._pending) >= fb:
            frame = bytes(self._pending[:fb])
            del self._pending[:fb]
            self._frame(frame, out)

    def _frame(self, frame: bytes, out: list[Transcript]) -> None:
        ep = self._ep
        was_speech = ep.in_speech
        speech = ep.process(frame)
        self._hist += frame
        self._pos += len(frame) // 2
        if speech is not None and not was_speech:
            self._begin_utterance(int(round(ep.speech_start * SAMPLE_RATE)))
        if speech is not None and not ep.in_speech:
            self._end_utterance(int(round(ep.speech_end * SAMPLE_RATE)), out)
        elif self._utt_start is not None:
            if self._pos - self._utt_start >= self._max_utt:
                # Bound memory and latency on endless speech: cut here, carry on in a new utterance.
                cut = self._pos
                self._end_utterance(cut, out)
                self._begin_utterance(cut, preroll=False)
            else:
                self._partial(out)
        if self._utt_start is None and len(self._hist) > 2 * self._keep * BYTES_PER_SAMPLE:
            drop = len(self._hist) // BYTES_PER_SAMPLE - self._keep
            del self._hist[: drop * BYTES_PER_SAMPLE]
            self._hist_start += drop

    def _slice(self, start: int, end: int) -> bytes:
        a = max(0, start - self._hist_start) * BYTES_PER_SAMPLE
        b = max(0, end - self._hist_start) * BYTES_PER_SAMPLE
        return bytes(self._hist[a:b])

    def _begin_utterance(self, speech_start: int, preroll: bool = True) -> None:
        start = speech_start - int(self._settings.preroll_s * SAMPLE_RATE) if preroll else speech_start
        self._utt_start = max(self._hist_start, start, 0)
        self._last_partial = ""
        if self._partial_decoder is None:
            self._partial_decoder = self._pool.lend()
        if self._partial_decoder is not None:
            set_warp(self._partial_decoder, self._warp or 1.0)
            self._partial_decoder.start_utt()
        self._fed = self._utt_start
        self._partial_mark = self._utt_start

    def _partial(self, out: list[Transcript]) -> None:
        dec = self._partial_decoder
        if dec is None or self._utt_start is None:
            return
        if self._pos - self._partial_mark < self._settings.partial_every_s * SAMPLE_RATE:
            return
        dec.process_raw(self._slice(self._fed, self._pos), False, False)
        self._fed = self._pos
        self._partial_mark = self._pos
        hyp = dec.hyp()
        text = hyp.hypstr.strip() if hyp is not None else ""
        if text and text != self._last_partial:
            self._last_partial = text
            offset = self._utt_start * 1000 // SAMPLE_RATE
            out.append(
                Transcript(
                    request_id="",
                    text=text,
                    is_final=False,
                    offset=offset,
                    duration=self._pos * 1000 // SAMPLE_RATE - offset,
                )
            )

    def _release_partial_decoder(self) -> None:
        if self._partial_decoder is not None:
            try:
                self._partial_decoder.end_utt()
            except RuntimeError:
                pass  # no utterance in progress
            self._pool.give_back(self._partial_decoder)
            self._partial_decoder = None

    def _end_utterance(self, end: int, out: list[Transcript]) -> None:
        start = self._utt_start
        if start is None:
            return
        self._utt_start = None
        # Give the decoder back between utterances so a pool of a few serves many sessions.
        self._release_partial_decoder()
        audio = self._slice(start, end)
        # Drop what the utterance consumed, keeping the tail as pre-roll for the next one.
        keep_from = max(self._hist_start, min(end, self._pos) - self._keep)
        del self._hist[: (keep_from - self._hist_start) * BYTES_PER_SAMPLE]
        self._hist_start = keep_from
        final = self._decode(audio, start)
        if final is not None:
            out.append(final)

    def _estimate_warp(self, audio: bytes, final: Any) -> float:
        """The most likely warp for this voice: score the utterance with each candidate.

        A first-pass-only decoder scores (the start of) it when one is free, at about a third
        of a full decode per warp; otherwise the final decoder does.
        """
        scorer = self._pool.lend() or final
        sample = audio[: int(self._settings.vtln_window_s * SAMPLE_RATE) * BYTES_PER_SAMPLE]
        try:
            scores = []
            for warp in self._settings.warps:
                set_warp(scorer, warp)
                scorer.start_utt()
                scorer.process_raw(sample, False, True)
                scorer.end_utt()
                hyp = scorer.hyp()
                scores.append((float(hyp.best_score) if hyp is not None else float("-inf"), warp))
        finally:
            if scorer is not final:
                self._pool.give_back(scorer)
        return max(scores)[1]

    def _decode(self, audio: bytes, start: int) -> Transcript | None:
        if len(audio) < SAMPLE_RATE // 10 * BYTES_PER_SAMPLE:  # < 100 ms cannot hold a word
            return None
        final = self._pool.final()
        warp = self._warp
        if warp is None:
            if len(audio) < self._settings.min_vtln_s * SAMPLE_RATE * BYTES_PER_SAMPLE:
                warp = 1.0  # and estimate on a later, longer utterance
            else:
                warp = self._estimate_warp(audio, final)
                self._warp = warp
        set_warp(final, warp)
        # A fresh front end per utterance: CMN and dither state left by earlier audio on this
        # decoder would otherwise change the result (pooled and fresh sessions must agree).
        final.reinit_feat()
        final.start_utt()
        final.process_raw(audio, False, True)
        final.end_utt()
        hyp = final.hyp()
        text = hyp.hypstr.strip() if hyp is not None else ""
        words = _words(final, start)
        if not text or not words:
            return None
        offset = words[0].offset
        end_ms = words[-1].offset + words[-1].duration
        confidence = round(sum(w.confidence for w in words) / len(words), 4)
        return Transcript(
            request_id="",
            text=text,
            is_final=True,
            offset=offset,
            duration=end_ms - offset,
            confidence=confidence,
            words=tuple(words) if self._with_words else None,
        )
