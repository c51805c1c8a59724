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
from voxbeam.server.engines.whisper_timing import LOGPROB_FLOOR, MIN_WORD_S, NO_SPEECH_PROB, RATE, token_limit

PAD_S = 2.0
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
    prefix: str = "",
    prefix_end: float = 0.0,
) -> list[Word]:
    """Timed words of ``audio`` (float32, 16 kHz, at most 30 s minus the padding) at ``offset_s`` in the
    session, after ``prefix``; ``previous``: tokens of the text before it (the prompt). ``model``: a
    faster-whisper WhisperModel.

    ``prefix``: what the audio is known to start with (the words committed in it). Whisper is made to
    write it first and goes on from there: it hears the audio before the words to decide, and says none of
    it again (a free decode of the same audio may word or time it differently, and its words come twice).
    ``prefix_end``: where its last word ends (s into ``audio``): the prefix is written as a segment closed
    there and the next one opened, or Whisper tends to end at the prefix's last full stop."""
    duration = len(audio) / RATE
    padded = np.concatenate([audio, np.zeros(int(PAD_S * RATE), np.float32)])
    features = model.feature_extractor(padded)[..., :-1][..., :WINDOW_FRAMES]
    encoded = model.encode(features[None])
    prompt = model.get_prompt(tokenizer, previous, without_timestamps=False, hotwords=hotwords)
    known = tokenizer.encode(" " + prefix.strip()) if prefix.strip() else []
    if known:  # (get_prompt's own prefix drops the hotwords)
        at = _timestamp(tokenizer, prefix_end)
        prompt = [*prompt, tokenizer.timestamp_begin, *known, at, at]
    result = model.model.generate(
        encoded,
        [prompt],
        beam_size=beam_size,
        max_length=token_limit(model, len(prompt), duration),
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
    if known and tokens[-1] < tokenizer.timestamp_begin:
        # Cut short (``max_length``): closed at the audio's end, or the split below drops the open segment.
        tokens = [*tokens, _timestamp(tokenizer, duration)]
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
    if known:  # the prefix's words (the one that ends it may have taken punctuation Whisper wrote after it)
        chars, skip = len(tokenizer.decode(known)), 0
        while skip < len(words) and chars > 0:
            chars -= len(words[skip]["word"])
            skip += 1
        words = words[skip:]
    # Words squeezed into nothing at the very end: what Whisper added once the audio had run out.
    while words and words[-1]["end"] - words[-1]["start"] < MIN_WORD_S and words[-1]["start"] >= duration - 0.1:
        words.pop()
    return [
        Word(offset_s + w["start"], offset_s + min(w["end"], duration), w["word"], float(w["probability"]))
        for w in words
        if w["start"] < duration - 0.05 and w["word"].strip()
    ]


def _timestamp(tokenizer: Any, seconds: float) -> int:
    """Whisper's timestamp token for ``seconds`` into its window (0.02 s steps, 30 s at most)."""
    return int(tokenizer.timestamp_begin + min(WINDOW_FRAMES // 2, max(0, round(seconds / 0.02))))
