"""Dead letters as input: a dead-letter Parquet file, folder or glob given as ``--input`` runs its records again.

Each dead-letter row's ``input`` is the record as it failed: a URI, ``{"uri": ...}`` or a record with
its own controls (``{"uri", "hotwords", ...}``) for transcription, the record for synthesis, or, for a
message that was never a record, the raw Pub/Sub message (``{"message": {...}}``), which is parsed
again as a stream would. What still is no record becomes a dead letter again. A batch run's and a
stream's dead letters replay alike (e.g. ``--input OUT/stream/dead_letters/`` after a stream was
stopped with records INTERRUPTED).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

from apache_beam.io.gcp.pubsub import PubsubMessage

from voxbeam.beam import storage
from voxbeam.beam.notifications import Notice, parse_audio, parse_text_record, raw
from voxbeam.beam.rows import dead_letter
from voxbeam.beam.text_records import clean_record, record_problem
from voxbeam.errors import InputError
from voxbeam.jobs.inputs import read_parquet

DEAD_LETTER_COLUMNS = ("stage", "input", "error_code")
# What a transcription dead letter's input holds when it names a file alone (a stream's notices add the
# generation); any other field makes it a record of its own.
FILE_FIELDS = {"uri", "generation"}
STAGE = "replay"


def dead_letter_files(spec: str) -> list[storage.SourceFile] | None:
    """The dead-letter Parquet files ``spec`` names, or None when it names something else.

    Only a spec naming Parquet or a ``dead_letters`` folder is looked into: other inputs (a bucket of
    audio) are not listed twice.
    """
    if ".parquet" not in spec and "dead_letters" not in spec:
        return None
    try:
        found = storage.match(spec)
    except Exception:
        return None
    if not found or not all(f.uri.endswith(".parquet") for f in found):
        return None
    import pyarrow.parquet as pq

    with storage.open_read(found[0].uri) as fh:
        names = set(pq.read_schema(fh).names)
    return found if set(DEAD_LETTER_COLUMNS) <= names else None


def _inputs(files: list[storage.SourceFile]) -> Iterator[Any]:
    for f in files:
        with storage.open_read(f.uri) as fh:
            table = read_parquet(fh.read(), columns=["input"])
        for value in table.column("input").to_pylist():
            try:
                yield json.loads(value)
            except (TypeError, ValueError):
                yield value


def _message(value: dict[str, Any]) -> PubsubMessage:
    body = value.get("message") or {}
    data = base64.b64decode(body["data_base64"]) if "data_base64" in body else str(body.get("data", "")).encode()
    return PubsubMessage(data, dict(body.get("attributes") or {}))


def audio_records(files: list[storage.SourceFile]) -> tuple[list[str | dict[str, Any]], list[dict[str, Any]]]:
    """(the URIs, or records with controls of their own, to transcribe again; dead-letter rows for inputs
    that still name none)."""
    uris: list[str | dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    for value in _inputs(files):
        try:
            if isinstance(value, str) and value.strip():
                uris.append(value.strip())
            elif isinstance(value, dict) and "uri" in value and set(value) - FILE_FIELDS:
                # A record of its own (controls, or a field misspelt): checked again where it is transcribed,
                # never transcribed without what it asked for.
                uris.append(value)
            elif isinstance(value, dict) and isinstance(value.get("uri"), str):
                uris.append(value["uri"])  # with a stream's "generation", say: the object as it is now
            elif isinstance(value, dict) and "message" in value:
                found = parse_audio(_message(value))
                if not isinstance(found, Notice):
                    raise InputError(f"a {found} notification names no object to transcribe")
                uris.append(found.uri)
            else:
                raise InputError("the dead letter's input names no audio")
        except InputError as exc:
            rejected.append(dead_letter(STAGE, value, exc))
    return uris, rejected


def text_records(files: list[storage.SourceFile]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the synthesis records to render again, dead-letter rows for inputs that are still none)."""
    records: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    for value in _inputs(files):
        try:
            if isinstance(value, dict) and "message" in value:
                record = parse_text_record(_message(value))
            elif isinstance(value, dict):
                record = clean_record(value.get("record", value))
                problem = record_problem(record)
                if problem is not None:
                    raise InputError(problem)
            else:
                raise InputError("the dead letter's input is not a text record")
        except InputError as exc:
            rejected.append(dead_letter(STAGE, value if isinstance(value, dict) else raw(str(value)), exc))
            continue
        records.append(record)
    return records, rejected
