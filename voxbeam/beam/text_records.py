"""Synthesis records: one JSON object's checks and clean-up, shared by the batch reader and the stream
(``json_record`` reads transcription records' lines too)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable
from typing import Any

from voxbeam.protocol import TtsParams

# CSV and text give strings; the service wants numbers where the TTS parameters have them.
_NUMERIC_PARAMETERS: dict[str, Callable[[Any], Any]] = {
    f.name: type(f.default) for f in dataclasses.fields(TtsParams) if type(f.default) in (int, float)
}


def json_record(
    line: str,
    clean: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    holding: str = "id and text",
) -> dict[str, Any] | str:
    """The line's record (``clean``, by default a synthesis record's clean-up), or why it is none;
    ``holding`` says what a record holds, for the message."""
    try:
        obj = json.loads(line)
    except ValueError as exc:
        return f"the line is not JSON ({exc.args[0] if exc.args else exc})"
    if not isinstance(obj, dict):
        return f"the line is JSON but not an object with {holding} (it is a {type(obj).__name__})"
    return (clean or clean_record)(obj)


def record_problem(record: dict[str, Any]) -> str | None:
    if not record.get("id"):
        return "the record has no id"
    text = record.get("text")
    if not isinstance(text, str):
        return "the record has no text"
    if not text.strip():
        return "the record's text is empty"
    return None


def clean_record(record: dict[str, Any]) -> dict[str, Any]:
    """Ids as strings, numbers as numbers, unset columns (None, "") dropped; id and text kept as given."""
    out = {k: v for k, v in record.items() if k in ("id", "text") or (v is not None and v != "")}
    if out.get("id") is not None:
        out["id"] = str(out["id"])
    for name, kind in _NUMERIC_PARAMETERS.items():
        if name in out:
            with contextlib.suppress(TypeError, ValueError):
                out[name] = kind(out[name])
    return out
