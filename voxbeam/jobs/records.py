"""Synthesis input: text records from text lines, JSON lines, CSV or Parquet.

Every line or row ends somewhere: a usable record, or a dead-letter row saying what is wrong
with it (``INVALID_INPUT``: not JSON, not an object, no id, empty text; ``DUPLICATE_ID``: an id
seen on an earlier line, since the first occurrence of an id wins). The dead-letter ``input``
is ``{"source", "line" (or "row"), "record" or "raw"}``, so each names where it came from.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from voxbeam.beam import storage
from voxbeam.beam.rows import dead_letter
from voxbeam.errors import InputError, UsageError
from voxbeam.jobs.inputs import input_problem, read_parquet
from voxbeam.protocol import TtsInit

JSON_LINES = (".jsonl", ".json", ".ndjson")
STAGE = "read"
# CSV and text give strings; the service wants numbers where the TTS init has them.
_NUMERIC_PARAMETERS: dict[str, Callable[[Any], Any]] = {
    f.name: type(f.default) for f in dataclasses.fields(TtsInit) if type(f.default) in (int, float)
}


@dataclass
class TextRecords:
    """The usable records in input order, and the dead-letter rows of the rest."""

    records: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)


def read_text_records(spec: str) -> TextRecords:
    """Records with id and text from ``spec``; UsageError only when the file as a whole is unusable."""
    data = _read(spec)
    out = TextRecords()
    first_line: dict[str, int] = {}
    unit = "row" if spec.lower().endswith(".parquet") else "line"
    for where, record, raw in _entries(spec, data):
        origin: dict[str, Any] = {"source": spec, unit: where}
        if not isinstance(record, dict):  # not a record at all: ``record`` says why
            out.rejected.append(dead_letter(STAGE, {**origin, "raw": raw}, InputError(record)))
            continue
        problem = _problem(record)
        if problem is not None:
            out.rejected.append(dead_letter(STAGE, {**origin, "record": record}, InputError(problem)))
            continue
        if record["id"] in first_line:
            why = f"id {record['id']!r} is taken by {unit} {first_line[record['id']]}: the first occurrence wins"
            out.rejected.append(dead_letter(STAGE, {**origin, "record": record}, InputError(why, code="DUPLICATE_ID")))
            continue
        first_line[record["id"]] = where
        out.records.append(record)
    return out


def _read(spec: str) -> bytes:
    try:
        return storage.read_bytes(spec)
    except IsADirectoryError:
        raise UsageError(
            "--input", f"{spec} is a folder; synthesis reads one file of records (.txt, .jsonl, .csv or .parquet)"
        ) from None
    except FileNotFoundError:
        raise UsageError("--input", f"no such file: {spec}") from None
    except Exception as exc:
        raise UsageError("--input", input_problem(spec, exc)) from None


# (line or row number, the record or why the line is none, the line's text)
Entry = tuple[int, dict[str, Any] | str, str]


def _entries(spec: str, data: bytes) -> Iterator[Entry]:
    lower = spec.lower()
    if lower.endswith(".parquet"):
        table = read_parquet(data)
        missing = {"id", "text"} - set(table.column_names)
        if missing:
            raise UsageError("--input", f"{spec} lacks column(s) {', '.join(sorted(missing))}")
        for n, row in enumerate(table.to_pylist(), start=1):
            yield n, _clean(row), ""
        return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError("--input", f"{spec} is not UTF-8 text") from None
    if lower.endswith(JSON_LINES):
        for n, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                yield n, _json_record(line), line
    elif lower.endswith(".csv"):
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or not {"id", "text"} <= set(reader.fieldnames):
            raise UsageError("--input", f"{spec} needs a header with id and text columns")
        for row in reader:
            yield reader.line_num, _clean(dict(row)), ""
    else:
        for n, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                yield n, {"id": f"line-{n:06d}", "text": line.strip()}, line


def _json_record(line: str) -> dict[str, Any] | str:
    """The line's record, or why it is none."""
    try:
        obj = json.loads(line)
    except ValueError as exc:
        return f"the line is not JSON ({exc.args[0] if exc.args else exc})"
    if not isinstance(obj, dict):
        return f"the line is JSON but not an object with id and text (it is a {type(obj).__name__})"
    return _clean(obj)


def _problem(record: dict[str, Any]) -> str | None:
    if not record.get("id"):
        return "the record has no id"
    text = record.get("text")
    if not isinstance(text, str):
        return "the record has no text"
    if not text.strip():
        return "the record's text is empty"
    return None


def _clean(record: dict[str, Any]) -> dict[str, Any]:
    """Ids as strings, numbers as numbers, unset columns (None, "") dropped; id and text kept as given."""
    out = {k: v for k, v in record.items() if k in ("id", "text") or (v is not None and v != "")}
    if out.get("id") is not None:
        out["id"] = str(out["id"])
    for name, kind in _NUMERIC_PARAMETERS.items():
        if name in out:
            with contextlib.suppress(TypeError, ValueError):
                out[name] = kind(out[name])
    return out
