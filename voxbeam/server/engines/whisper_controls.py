"""Recognition controls for Whisper: the prompt and hotwords fitted to its context, detection among candidates.

Whisper's decoder sees at most 448 tokens: the prompt and hotwords go before the text it writes, so they
are held to ``PROMPT_TOKENS`` (the prompt's end is kept: what comes just before the audio matters most)
and ``HOTWORDS_TOKENS`` (their start), leaving about half the context for the window's own text, as
Whisper itself does with earlier text.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from voxbeam.protocol_controls import SttControls

PROMPT_TOKENS = 150
HOTWORDS_TOKENS = 80


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
