"""Transcription records: an audio URI with the recognition controls for it alone.

A record is a mapping (a JSON line, a Parquet row, a dict in a pipeline) or an ``AudioRecord`` with
``uri`` and any of ``FIELDS``. What a record sets overrides the job's (``Transcribe``'s) value for that
record; what it leaves out or sets to null keeps the job's. An unknown field or a bad value is an
``InputError`` naming the field, so the record becomes a dead letter and the others go on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from voxbeam.errors import InputError
from voxbeam.protocol import AUTO_LANGUAGE
from voxbeam.protocol_controls import ControlError, SttControls

# A record's fields; the names are the `voxbeam transcribe` flags that set the same for the whole job.
FIELDS = ("uri", "language", "prompt", "hotwords", "task", "languages", "stt_model")
# SttControls' field for each control a record may set.
_CONTROLS = {"prompt": "prompt", "hotwords": "hotwords", "task": "task", "languages": "languages", "stt_model": "model"}


@dataclass(frozen=True)
class AudioRecord:
    """One audio file to transcribe and what differs for it from the job (None: the job's value)."""

    uri: str
    language: str | None = None
    prompt: str | None = None
    hotwords: str | None = None
    task: str | None = None
    languages: tuple[str, ...] | None = None
    stt_model: str | None = None

    def as_input(self) -> dict[str, Any]:
        """The fields set, as a dead letter's ``input`` shows them (and a replay reads them back)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(self).items() if v is not None}

    def applied_to(self, language: str, controls: SttControls | None) -> tuple[str, SttControls]:
        """The language and controls this record is heard with: the job's, overridden by the record's.

        Raises ``InputError`` naming the field for a value no service should take.
        """
        mine = {_CONTROLS[k]: getattr(self, k) for k in _CONTROLS if getattr(self, k) is not None}
        merged = dataclasses.replace(controls or SttControls(), **mine)
        try:
            checked = merged.checked()
        except ControlError as exc:
            field = "stt_model" if exc.field == "model" else exc.field
            raise InputError(f"the record's {field!r} {exc.message}") from None
        language = self.language.strip() if self.language is not None else language
        if checked.languages and language.lower() != AUTO_LANGUAGE:
            raise InputError(
                f"the record's 'languages' are candidates for detection, but its language is {language!r}: "
                f"give them with language {AUTO_LANGUAGE!r}"
            )
        return language, checked


def clean(record: Mapping[str, Any]) -> dict[str, Any]:
    """Unset columns (null, "") dropped: a Parquet file's every row has every column."""
    return {k: v for k, v in record.items() if v is not None and v != ""}


def audio_record(value: Mapping[str, Any] | AudioRecord) -> AudioRecord:
    """``value`` as an ``AudioRecord``; ``InputError`` naming the field that is unknown or not usable."""
    if isinstance(value, AudioRecord):
        return value
    given = clean(value)
    unknown = sorted(str(k) for k in given if k not in FIELDS)
    if unknown:
        raise InputError(
            f"the record has unknown field(s) {', '.join(repr(k) for k in unknown)}; "
            f"a transcription record takes {', '.join(FIELDS)}"
        )
    uri = given.get("uri")
    if not isinstance(uri, str) or not uri.strip():
        raise InputError("the record has no 'uri' (the audio file's path or URI)")
    fields: dict[str, Any] = {"uri": uri.strip()}
    for name in ("language", "prompt", "hotwords", "task", "stt_model"):
        if name in given:
            if not isinstance(given[name], str):
                raise InputError(f"the record's {name!r} must be text, not {type(given[name]).__name__}")
            fields[name] = given[name]
    if "languages" in given:
        fields["languages"] = _languages(given["languages"])
    return AudioRecord(**fields)


def _languages(value: Any) -> tuple[str, ...]:
    # A list (JSON, a Parquet list column) or "en,es" (as the --languages flag takes them).
    if isinstance(value, str):
        return tuple(code.strip() for code in value.split(",") if code.strip())
    if isinstance(value, list | tuple) and all(isinstance(code, str) for code in value):
        return tuple(value)
    raise InputError("the record's 'languages' must be a list of language codes or text like \"en,es\"")
