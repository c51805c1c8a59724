"""Recognition controls for Whisper: the prompt and hotwords fitted to its context, language detection (among
candidates).

Whisper's decoder sees at most 448 tokens: the prompt and hotwords go before the text it writes, so they
are held to ``PROMPT_TOKENS`` (the prompt's end is kept: what comes just before the audio matters most)
and ``HOTWORDS_TOKENS`` (their start), leaving about half the context for the window's own text, as
Whisper itself does with earlier text.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from faster_whisper.tokenizer import Tokenizer

from voxbeam.protocol_controls import SttControls
from voxbeam.server.engines.whisper_timing import RATE, token_limit

PROMPT_TOKENS = 150
HOTWORDS_TOKENS = 80
WINDOW_FRAMES = 3000  # Whisper's 30 s window, in 10 ms feature frames
# ``rescored``: how many candidates are transcribed at most (more are left to detection alone), how long each
# transcript may be (CTranslate2 decodes half of it: 60 tokens), and how much its mean log-probability per token
# weighs against the log of detection's probability. 10: 0.1 more per token is worth a factor of e. Chosen
# on bench/recognition.py's 120 short prompts (all right for any weight from 5 to 24) and then measured on 180
# more: 179 right, against 175 by detection alone (bench/README.md).
RESCORED = 5
RESCORE_MAX_LENGTH = 120
TEXT_WEIGHT = 10.0


def fitted(tokenizer: Any, controls: SttControls | None) -> SttControls:
    """``controls`` with the prompt and hotwords cut to their token budgets (``tokenizer``: the model's
    ``tokenizers.Tokenizer``)."""
    c = controls or SttControls()
    return dataclasses.replace(
        c,
        prompt=_fit(tokenizer, c.prompt, PROMPT_TOKENS, keep_end=True),
        hotwords=_fit(tokenizer, c.hotwords, HOTWORDS_TOKENS, keep_end=False),
    )


def _fit(tokenizer: Any, text: str | None, budget: int, *, keep_end: bool) -> str | None:
    if text is None:
        return None
    ids = tokenizer.encode(" " + text, add_special_tokens=False).ids
    if len(ids) <= budget:
        return text
    kept = ids[-budget:] if keep_end else ids[:budget]
    return str(tokenizer.decode(kept)).strip() or None


def decode_options(controls: SttControls) -> dict[str, Any]:
    """What faster-whisper's ``transcribe`` takes for ``controls``."""
    return {"initial_prompt": controls.prompt, "hotwords": controls.hotwords, "task": controls.task or "transcribe"}


def best_language(probabilities: Iterable[tuple[str, float]], candidates: Sequence[str]) -> tuple[str, float]:
    """The most probable of ``candidates`` (none: of all) among faster-whisper's (code, probability) pairs, and
    its probability."""
    allowed = set(candidates)
    found = [(code, p) for code, p in probabilities if code in allowed or not allowed]
    if not found:  # (the server admits only the model's own codes)
        return candidates[0], 0.0
    code, p = max(found, key=lambda pair: pair[1])
    return code, float(p)


def window_features(model: Any, audio: np.ndarray, frames: int = WINDOW_FRAMES) -> np.ndarray:
    """The log-Mel features of ``audio`` (float32, 16 kHz) in a window of ``frames``, padded with silence.

    Silence in the audio, as Whisper was trained (and OpenAI's reference pads), not zeros after the features
    (what faster-whisper's ``detect_language`` does): a zero there is a steady sound some 55 dB under the
    loudest (Asterisk's prompts; silence is the floor, 80 dB under), most of the window for a short prompt.
    Measured on bench/recognition.py's 120 short prompts (base), among en, es, fr: 114 -> 116 right (60 more
    per language, held out: 174/180 -> 175/180); among all languages 110 -> 112 (held out 164 -> 167).
    """
    hop = model.feature_extractor.hop_length
    window = np.zeros(frames * hop, dtype=np.float32)
    window[: min(len(audio), len(window))] = audio[: len(window)]
    return np.asarray(model.feature_extractor(window, padding=0)[..., :frames], dtype=np.float32)


def detect(model: Any, audio: np.ndarray, candidates: Sequence[str]) -> tuple[str, float]:
    """The language of ``audio``'s first 30 s (float32, 16 kHz) by ``model`` (a faster-whisper ``WhisperModel``)
    among ``candidates`` (none: all), and its probability; among two to ``RESCORED`` candidates, ``rescored``."""
    encoded = model.encode(window_features(model, audio))
    if 2 <= len(candidates) <= RESCORED:
        return rescored(model, encoded, candidates, len(audio) / RATE)
    return language_of(model, encoded, candidates)


def language_of(model: Any, encoded: Any, candidates: Sequence[str]) -> tuple[str, float]:
    """The likeliest of ``candidates`` (none: of all) for the encoder's output ``encoded`` (one window)."""
    return best_language(_probabilities(model, encoded), candidates)


def _probabilities(model: Any, encoded: Any) -> list[tuple[str, float]]:
    return [(token[2:-2], p) for token, p in model.model.detect_language(encoded)[0]]


def rescored(model: Any, encoded: Any, candidates: Sequence[str], seconds: float) -> tuple[str, float]:
    """The candidate whose language the window's speech sounds like and reads like, and its probability.

    Whisper's detection is one decoder step, and on a short prompt read with an accent it is often wrong:
    Allison Smith's Spanish prompts (an American voice) came out English or French in 4 of 40 (base). So the
    window is also transcribed greedily in each candidate, and each gets its detection log-probability (among
    the candidates) plus ``TEXT_WEIGHT`` times its transcript's mean log-probability per token: what Whisper
    writes in the right language it is surer of ("Marque el Asterisco para anular." -0.47 in Spanish, -0.65
    the same words in English). The probability returned is the softmax of those scores.
    """
    found = dict(_probabilities(model, encoded))
    total = sum(found.get(code, 0.0) for code in candidates) or 1.0
    scores = []
    for code in candidates:
        tokenizer = Tokenizer(model.hf_tokenizer, True, task="transcribe", language=code)
        prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        limit = min(RESCORE_MAX_LENGTH, token_limit(model, len(prompt), seconds))
        result = model.model.generate(encoded, [prompt], beam_size=1, return_scores=True, max_length=limit)[0]
        detected = math.log(max(found.get(code, 0.0) / total, 1e-9))
        scores.append(detected + TEXT_WEIGHT * float(result.scores[0]))
    best = int(np.argmax(scores))
    weights = np.exp(np.asarray(scores) - scores[best])
    return candidates[best], float(weights[best] / weights.sum())
