"""Live decoding by utterance (``--live_decoding utterance``, the default): each utterance decoded whole.

Silero endpoints the audio as it arrives; the open utterance gets a quick greedy partial every
``PARTIAL_EVERY_S`` (its last 30 s at most), and when it ends (``END_SILENCE_S`` of silence, or
``max_utterance_s`` of speech, or at ``flush``) it is decoded whole by the same pipeline as bulk finals.
Finals come only at utterance ends: continuous speech waits for its pause (``whisper_live`` commits as it goes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from voxbeam.audio import BYTES_PER_SAMPLE
from voxbeam.protocol_controls import SttControls
from voxbeam.server.engines.base import Recognized
from voxbeam.server.engines.whisper_controls import WINDOW_FRAMES, language_of, window_features
from voxbeam.server.engines.whisper_timing import RATE, clean_word, ms, token_limit
from voxbeam.server.engines.whisper_vad import SILENT_RUN_S, VAD_WINDOW, silent

# Endpointing on Silero's speech probability, 32 ms windows.
WINDOW = VAD_WINDOW
SPEECH_THRESHOLD = 0.5
SILENCE_THRESHOLD = 0.35
END_SILENCE_S = 0.6
PAD_S = 0.3  # audio kept before speech starts
PARTIAL_EVERY_S = 1.0
PARTIAL_MAX_S = 30.0
# Mel frames (10 ms each) a partial encodes: its audio + 1 s, at least 10 s (Whisper's window: 3000).
PARTIAL_MIN_FRAMES = 1000
PARTIAL_PAD_FRAMES = 100
# A partial is cut where it says again words it said before (``unlooped``): this many in a row, three of them
# different and one not a number.
LOOP_WORDS = 4
SILENT_WINDOWS = int(SILENT_RUN_S * RATE) // WINDOW

# (audio float32 whole windows, Silero's recurrent state) -> a probability per window after the first, new state.
Scorer = Callable[[np.ndarray, Any], tuple[np.ndarray, Any]]
# (an utterance's pcm, its first sample in the session) -> its finals.
UtteranceDecoder = Callable[[bytes, int], list[Recognized]]
# (audio float32) -> a quick guess at its text.
Guess = Callable[[np.ndarray], str]


class ScoredAudio:
    """A live session's buffered audio and Silero's speech probability for each of its whole windows."""

    def __init__(self, score: Scorer, *, start: int) -> None:
        self._score = score
        self._pcm = bytearray()  # 16 kHz s16le from sample _start of the session
        self._start = start
        self._probs: list[float] = []  # speech probability per window from _start
        self._vad_state: Any = None
        self._tail = np.zeros(WINDOW, np.float32)  # the last window scored (look-behind for the next)
        self._silent = 0  # windows of digital silence last scored, one push after another

    @property
    def backlog_s(self) -> float:
        """Audio buffered but not yet scored (pushed with ``process`` off)."""
        return (len(self._pcm) // BYTES_PER_SAMPLE - len(self._probs) * WINDOW) / RATE

    def _score_new(self) -> None:
        """Silero over the whole windows not yet scored."""
        done = len(self._probs)
        available = len(self._pcm) // BYTES_PER_SAMPLE // WINDOW
        if available <= done:
            return
        lo = max(0, done - 1) * WINDOW
        chunk = np.frombuffer(self._pcm, "<i2", count=available * WINDOW)[lo:].astype(np.float32) / 32768.0
        if not done and self._vad_state is None:
            chunk = np.concatenate([np.zeros(WINDOW, np.float32), chunk])  # silence before the session
        elif not done:  # the window before this one was cut off with the silence: its end still counts
            chunk = np.concatenate([self._tail, chunk])
        new = available - done
        self._silent = self._silent + new if silent(chunk[-new * WINDOW :]) else 0
        if self._silent >= SILENT_WINDOWS:
            # No speech, and Silero starts afresh after it (see ``SILENT_RUN_S``): a muted microphone for 30 s
            # left it hearing 264 of the next turn's 804 windows as speech, against 534 after 0.4 s.
            probs, self._vad_state = np.zeros(new, np.float32), None
        else:
            probs, self._vad_state = self._score(chunk, self._vad_state)
        self._probs.extend(float(x) for x in probs)
        self._tail = chunk[-WINDOW:]


class UtteranceSession(ScoredAudio):
    """One live recognition session decoded utterance by utterance (see the module's docstring)."""

    def __init__(self, decode: UtteranceDecoder, guess: Guess, score: Scorer, *, start: int, max_utt_s: float) -> None:
        super().__init__(score, start=start)
        self._decode, self._guess = decode, guess
        self._max_utt = int(max_utt_s * RATE)
        self._utt: int | None = None  # window index where the open utterance starts
        self._silence = 0  # windows of silence since the utterance's last speech
        self._partial_at = 0  # window index of the last partial

    def push(self, pcm: bytes, *, process: bool = True) -> list[Recognized]:
        """Buffer ``pcm``; with ``process``, score it, close utterances that ended and give the open one a partial."""
        self._pcm += pcm
        return self._live() if process else []

    def finish(self) -> list[Recognized]:
        """Every remaining final (the end of the recognition session)."""
        out = self._live()
        if self._utt is not None:
            out += self._final(len(self._probs))
        return out

    def _audio(self, start: int, end: int) -> np.ndarray:
        return np.frombuffer(self._pcm, "<i2")[start:end].astype(np.float32) / 32768.0

    def _live(self) -> list[Recognized]:
        done = len(self._probs)
        self._score_new()
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
                out += self._final(i + 1 - (self._silence if self._silence >= end_windows else 0))
        if self._utt is not None and (len(self._probs) - self._partial_at) * WINDOW >= PARTIAL_EVERY_S * RATE:
            self._partial_at = len(self._probs)
            lo = max(0, self._utt * WINDOW - int(PAD_S * RATE))
            out += self._partial(self._audio(lo, len(self._probs) * WINDOW), self._start + lo)
        self._trim()
        return out

    def _final(self, end_window: int) -> list[Recognized]:
        """The open utterance's finals, from its start (with a little pre-roll) to ``end_window``."""
        assert self._utt is not None
        lo = max(0, self._utt * WINDOW - int(PAD_S * RATE))
        hi = min(len(self._pcm) // BYTES_PER_SAMPLE, end_window * WINDOW + int(PAD_S * RATE))
        self._utt, self._silence = None, 0
        return self._decode(bytes(self._pcm[lo * BYTES_PER_SAMPLE : hi * BYTES_PER_SAMPLE]), self._start + lo)

    def _partial(self, audio: np.ndarray, start: int) -> list[Recognized]:
        if len(audio) < RATE // 10:
            return []
        text = self._guess(audio[-int(PARTIAL_MAX_S * RATE) :])
        return [Recognized(text, False, ms(start / RATE), ms(len(audio) / RATE))] if text else []

    def _trim(self) -> None:
        """Drop audio no utterance needs any more (keeping pre-roll), and its windows."""
        keep_from = self._utt if self._utt is not None else len(self._probs)
        drop = max(0, keep_from - int(PAD_S * RATE / WINDOW) - 1)
        if drop:
            del self._pcm[: drop * WINDOW * BYTES_PER_SAMPLE]
            del self._probs[:drop]
            self._start += drop * WINDOW
            if self._utt is not None:
                self._utt -= drop
            self._partial_at = max(0, self._partial_at - drop)


def guess(engine: Any, audio: np.ndarray, language: str | None, controls: SttControls) -> str:
    """A quick guess at ``audio`` (an utterance in progress, up to 30 s) by ``engine`` (a WhisperEngine):
    greedy, no timestamps, and no longer than the audio could hold (``token_limit``).

    The encoder sees only the audio plus a second of padding, not a whole 30 s window (costs a
    fraction: ~0.1 CPU s instead of ~0.9 for tiny.en); Whisper was trained on 30 s windows, so
    finals keep the full window, but a partial only has to be a good guess.
    """
    model = engine.model
    heard = len(audio) // model.feature_extractor.hop_length + 1
    frames = min(WINDOW_FRAMES, max(PARTIAL_MIN_FRAMES, heard + PARTIAL_PAD_FRAMES))
    encoded = model.encode(window_features(model, audio, frames))
    if not engine.multilingual:
        language = "en"
    elif language is None:
        language = language_of(model, encoded, controls.languages or ())[0]
    tokenizer = engine.tokenizer(language, controls.task or "transcribe")
    before = tokenizer.encode(" " + controls.prompt) if controls.prompt else []
    prompt = model.get_prompt(tokenizer, before, without_timestamps=True, hotwords=controls.hotwords)
    limit = token_limit(model, len(prompt), len(audio) / RATE)
    result = model.model.generate(encoded, [prompt], beam_size=1, suppress_blank=True, max_length=limit)
    return unlooped(str(tokenizer.decode(result[0].sequences_ids[0])).strip())


def unlooped(text: str) -> str:
    """``text`` up to where it starts saying again what it already said.

    With a second of padding after the audio, Whisper often runs out of speech and starts over: tiny.en's
    guess at the first 10 s of a fast talker says all of it, then again from "This is the acoustic corpus";
    at 14 s, its last sentence twice. Its compression-ratio test does not catch texts this short (2.2-2.4
    against its 2.4). ``LOOP_WORDS`` in a row seen before, not overlapping them, mark the loop; runs of one or
    two words ("words words words", "4 2 4 2") and of numbers only are real speech as often, and stay.
    """
    words = text.split()
    keys = [clean_word(w).lower() for w in words]
    seen: dict[tuple[str, ...], int] = {}
    for j in range(len(keys) - LOOP_WORDS + 1):
        gram = tuple(keys[j : j + LOOP_WORDS])
        if len(set(gram)) < 3 or all(k.isdigit() for k in gram):
            continue
        first = seen.setdefault(gram, j)
        if first + LOOP_WORDS <= j:
            return " ".join(words[:j])
    return text
