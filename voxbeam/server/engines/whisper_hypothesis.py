"""One live hypothesis: Whisper's timed words for a short buffer of audio (an utterance not yet committed).

A live stream re-decodes its uncommitted audio every half second or so (``whisper_live``), so a decode must
cost a fraction of a bulk window's: the encoder sees the buffer and ``PAD_S`` of real silence after it, not
a whole 30 s window (a 10 s buffer encodes in a fifth of the time). The silence matters: without it (or with
zeroed features instead, which are not silence to Whisper) the decoder loops back to the buffer's start
once it has run out of audio. Words Whisper places in the padding are dropped. The decoder runs once, with
beam search as bulk decoding does and no temperature fallback, so that two decodes of the same audio agree;
a runaway (more tokens than the audio can hold) is cut short by ``max_length``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
from faster_whisper.transcribe import get_suppressed_tokens

from voxbeam.server.engines.whisper_controls import WINDOW_FRAMES
from voxbeam.server.engines.whisper_timing import LOGPROB_FLOOR, MIN_WORD_S, NO_SPEECH_PROB, RATE

PAD_S = 2.0
# Decoded tokens allowed per second of audio (speech runs at 3-5 text tokens a second, timestamps aside).
TOKENS_PER_S = 10
MIN_TOKENS = 24
# faster-whisper's own defaults for these.
PREPEND = "\"'“¿([{-"
APPEND = "\"'.。,，!！?？:：”)]}、"  # noqa: RUF001 - Whisper's own punctuation, full-width forms included


@dataclass(frozen=True)
class Word:
    """A word of a hypothesis: seconds from the start of the recognition session, its text as Whisper wrote
    it (leading space, punctuation kept) and its probability."""

    start: float
    end: float
    text: str
    probability: float

    @property
    def key(self) -> str:
        """What two hypotheses must share to agree on it: the word without case or punctuation."""
        return "".join(c for c in self.text.lower() if c.isalnum() or c == "'")


def decode(
    model: Any,
    tokenizer: Any,
    audio: np.ndarray,
    offset_s: float,
    previous: list[int],
    *,
    hotwords: str | None,
    beam_size: int,
) -> list[Word]:
    """Timed words of ``audio`` (float32, 16 kHz, at most 30 s minus the padding) at ``offset_s`` in the
    session; ``previous``: tokens of the text before it (the prompt). ``model``: a faster-whisper WhisperModel."""
    duration = len(audio) / RATE
    padded = np.concatenate([audio, np.zeros(int(PAD_S * RATE), np.float32)])
    features = model.feature_extractor(padded)[..., :-1][..., :WINDOW_FRAMES]
    encoded = model.encode(features[None])
    prompt = model.get_prompt(tokenizer, previous, without_timestamps=False, hotwords=hotwords)
    result = model.model.generate(
        encoded,
        [prompt],
        beam_size=beam_size,
        max_length=min(model.max_length, len(prompt) + MIN_TOKENS + int(TOKENS_PER_S * duration)),
        return_scores=True,
        return_no_speech_prob=True,
        suppress_blank=True,
        suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
        max_initial_timestamp_index=50,  # 1 s, as transcribe's default
    )[0]
    tokens = result.sequences_ids[0]
    if result.no_speech_prob > NO_SPEECH_PROB and result.scores[0] < LOGPROB_FLOOR:  # Whisper's own silence test
        return []
    frames = features.shape[-1]
    segments = model._split_segments_by_timestamps(
        tokenizer=tokenizer, tokens=tokens, time_offset=0.0, segment_size=frames, segment_duration=frames / 100, seek=0
    )[0]
    # Segments Whisper starts in the padding are what it invents once the audio has run out.
    segments = [s for s in segments if s["start"] < duration - 0.1 and any(t < tokenizer.eot for t in s["tokens"])]
    if not segments:
        return []
    # Aligned over the padding too, so that words it invents past the audio's end fall there and are dropped.
    model.add_word_timestamps([segments], tokenizer, encoded, frames, PREPEND, APPEND, last_speech_timestamp=0.0)
    words = list(itertools.chain.from_iterable(s.get("words") or [] for s in segments))
    # Words squeezed into nothing at the very end: what Whisper added once the audio had run out.
    while words and words[-1]["end"] - words[-1]["start"] < MIN_WORD_S and words[-1]["start"] >= duration - 0.1:
        words.pop()
    return [
        Word(offset_s + w["start"], offset_s + min(w["end"], duration), w["word"], float(w["probability"]))
        for w in words
        if w["start"] < duration - 0.05 and w["word"].strip()
    ]
