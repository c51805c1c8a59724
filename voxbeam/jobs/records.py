"""Record files, read by both jobs: synthesis's text records (text lines, JSON lines, CSV or Parquet) and
transcription's audio records (JSON lines or Parquet, one file or a glob of them).

Every line or row ends somewhere: a usable record, or a dead-letter row saying what is wrong
with it (``INVALID_INPUT``: not JSON, not an object, no id, empty text; ``DUPLICATE_ID``: an id
seen on an earlier line, since the first occurrence of an id wins). The dead-letter ``input``
is ``{"source", "line" (or "row"), "record" or "raw"}``, so each names where it came from.
An audio record's fields are checked where it is transcribed (``voxbeam.beam.audio_records``), so a
pipeline built on ``Transcribe`` checks them the same way; here only lines that are no record at all
(not JSON, not an object) are turned away.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from voxbeam.beam import audio_records, storage
from voxbeam.beam.rows import dead_letter
from voxbeam.beam.text_records import clean_record, json_record, record_problem
from voxbeam.errors import InputError, UsageError
from voxbeam.jobs.inputs import input_problem, read_parquet

JSON_LINES = (".jsonl", ".json", ".ndjson")
# What makes a transcription's --input a file (or glob) of records rather than of audio.
AUDIO_RECORD_SUFFIXES = (*JSON_LINES, ".parquet")
STAGE = "read"


@dataclass(frozen=True)
class RecordKind:
    """What one job's record files hold: the columns a table needs, each record's clean-up."""

    columns: tuple[str, ...]
    clean: Callable[[dict[str, Any]], dict[str, Any]]
    # One file's kinds, for the message when --input is not one.
    files: str

    @property
    def holding(self) -> str:
        return " and ".join(self.columns)


TEXT = RecordKind(("id", "text"), clean_record, ".txt, .jsonl, .csv or .parquet")
AUDIO = RecordKind(("uri",), audio_records.clean, ".jsonl or .parquet")


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
        problem = record_problem(record)
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


def is_audio_record_input(spec: str) -> bool:
    """Whether a transcription's ``--input`` names record files (``.jsonl``, ``.parquet``, or a glob of them)."""
    return spec.lower().rstrip("/").endswith(AUDIO_RECORD_SUFFIXES)


def read_audio_records(spec: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the records in the files ``spec`` names, in order, dead-letter rows for lines that are none).

    A record is kept as it was written (nulls dropped): ``Transcribe`` checks its fields.
    """
    try:
        files = storage.match(spec)
    except Exception as exc:
        raise UsageError("--input", input_problem(spec, exc)) from None
    if not files:
        raise UsageError("--input", f"no files match {spec}")
    records: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    for f in files:
        unit = "row" if f.uri.lower().endswith(".parquet") else "line"
        for where, record, raw in _entries(f.uri, _read(f.uri, AUDIO), AUDIO):
            if isinstance(record, dict):
                records.append(record)
            else:
                origin = {"source": f.uri, unit: where, "raw": raw}
                rejected.append(dead_letter(STAGE, origin, InputError(record)))
    return records, rejected


def _read(spec: str, kind: RecordKind = TEXT) -> bytes:
    try:
        return storage.read_bytes(spec)
    except IsADirectoryError:
        raise UsageError("--input", f"{spec} is a folder; give one file of records ({kind.files})") from None
    except FileNotFoundError:
        raise UsageError("--input", f"no such file: {spec}") from None
    except Exception as exc:
        raise UsageError("--input", input_problem(spec, exc)) from None


# (line or row number, the record or why the line is none, the line's text)
Entry = tuple[int, dict[str, Any] | str, str]


def _entries(spec: str, data: bytes, kind: RecordKind = TEXT) -> Iterator[Entry]:
    lower = spec.lower()
    if lower.endswith(".parquet"):
        table = read_parquet(data)
        missing = set(kind.columns) - set(table.column_names)
        if missing:
            raise UsageError("--input", f"{spec} lacks column(s) {', '.join(sorted(missing))}")
        for n, row in enumerate(table.to_pylist(), start=1):
            yield n, kind.clean(row), ""
        return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError("--input", f"{spec} is not UTF-8 text") from None
    if lower.endswith(JSON_LINES):
        parse = functools.partial(json_record, clean=kind.clean, holding=kind.holding)
        for n, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                yield n, parse(line), line
    elif lower.endswith(".csv"):
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or not {"id", "text"} <= set(reader.fieldnames):
            raise UsageError("--input", f"{spec} needs a header with id and text columns")
        for row in reader:
            yield reader.line_num, clean_record(dict(row)), ""
    else:
        for n, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                yield n, {"id": f"line-{n:06d}", "text": line.strip()}, line
