"""What a job reads before it runs: its input records, earlier runs' outputs, and whether it may write."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import errno
import io
import json
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from voxbeam.beam import DEAD_LETTERS, storage
from voxbeam.beam.schema import SOURCE_KEY_COLUMNS
from voxbeam.beam.transforms import CAPTIONS, TRANSCRIPTS
from voxbeam.errors import UsageError, describe_os_error
from voxbeam.jobs.summary import Summary
from voxbeam.protocol import TtsInit

LISTING_SUFFIXES = (".txt", ".lst", ".list", ".uris")
# CSV and text give strings; the service wants numbers where the TTS init has them.
_NUMERIC_PARAMETERS: dict[str, Callable[[Any], Any]] = {
    f.name: type(f.default) for f in dataclasses.fields(TtsInit) if type(f.default) in (int, float)
}


def check_writable(output: str) -> None:
    """Write and delete a probe object under ``output``: UsageError naming --output if that fails."""
    probe_uri = storage.join(output, f".voxbeam-write-check-{uuid.uuid4().hex[:8]}")
    try:
        storage.write_object(probe_uri, b"", content_type="application/octet-stream")
        if storage.is_gcs(probe_uri):
            bucket, name = storage.split_gcs(probe_uri)
            storage.gcs_client().bucket(bucket).blob(name).delete()
        else:
            from apache_beam.io.filesystems import FileSystems

            FileSystems.delete([probe_uri])
    except Exception as exc:
        raise UsageError("--output", _output_problem(output, exc)) from None


def _output_problem(output: str, exc: Exception) -> str:
    """Why ``output`` cannot be written, and what to do, in words."""
    todo = "choose a folder you can write to (it is created if missing)"
    if isinstance(exc, OSError) and exc.errno is not None:
        if exc.errno in (errno.EEXIST, errno.ENOTDIR):
            return f"{exc.filename or output} is a file, so it cannot hold the output folder {output}; {todo}"
        if exc.errno == errno.ENOENT:
            return f"cannot create the folder {output} there ({(exc.strerror or '').lower()}); {todo}"
        return f"cannot write to {output}: {describe_os_error(exc)}; {todo}"
    # google-cloud-storage's errors, by name so that a local run needs no GCS client installed
    if type(exc).__name__ == "NotFound":
        return f"the bucket of {output} does not exist; create it or choose another"
    if type(exc).__name__ == "Forbidden":
        return f"the credentials in use may not write to {output}; grant them access or choose another bucket"
    return f"cannot write to {output}: {exc}"


def _input_problem(spec: str, exc: Exception) -> str:
    if isinstance(exc, OSError):
        return describe_os_error(exc, spec)
    return f"cannot read {spec}: {exc}"


def expand_input(spec: str) -> list[storage.SourceFile]:
    """A glob, a directory, or a text file listing one URI per line."""
    try:
        found = storage.match(spec)
    except Exception as exc:
        raise UsageError("--input", _input_problem(spec, exc)) from None
    if len(found) == 1 and found[0].uri == spec and spec.lower().endswith(LISTING_SUFFIXES):
        listed: list[storage.SourceFile] = []
        try:
            text = storage.read_bytes(spec).decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError("--input", f"cannot read the list {spec}: {_input_problem(spec, exc)}") from None
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                try:
                    listed.append(storage.stat(line))
                except FileNotFoundError:
                    # Missing files still become records, so they end up as dead letters.
                    listed.append(storage.SourceFile(line, -1, ""))
        return listed
    if not found:
        raise UsageError("--input", f"no files match {spec}")
    return found


def read_parquet(data: bytes, columns: list[str] | None = None) -> Any:
    import pyarrow.parquet as pq

    # No Arrow thread pool: a job that exits right after (nothing new to do) could abort with
    # "terminate called without an active exception" while its threads were still starting.
    return pq.read_table(io.BytesIO(data), columns=columns, use_threads=False)


def existing_sources(output: str) -> set[tuple[str, int, str]]:
    """(uri, size, version) of every file that earlier runs under ``output`` transcribed."""
    seen: set[tuple[str, int, str]] = set()
    pattern = storage.join(output, TRANSCRIPTS, "*", "*.parquet")
    try:
        files = storage.match(pattern)
    except Exception:
        return seen
    for f in files:
        with storage.open_read(f.uri) as fh:
            table = read_parquet(fh.read(), columns=list(SOURCE_KEY_COLUMNS))
        for uri, size, version in zip(*(table.column(c).to_pylist() for c in SOURCE_KEY_COLUMNS), strict=True):
            seen.add((uri, int(size), version))
    return seen


def read_text_records(spec: str) -> list[dict[str, Any]]:
    """Records with id and text from text lines, JSON lines, CSV or Parquet."""
    try:
        data = storage.read_bytes(spec)
    except IsADirectoryError:
        raise UsageError(
            "--input", f"{spec} is a folder; synthesis reads one file of records (.txt, .jsonl, .csv or .parquet)"
        ) from None
    except FileNotFoundError:
        raise UsageError("--input", f"no such file: {spec}") from None
    except Exception as exc:
        raise UsageError("--input", _input_problem(spec, exc)) from None
    lower = spec.lower()
    try:
        if lower.endswith(".parquet"):
            table = read_parquet(data)
            missing = {"id", "text"} - set(table.column_names)
            if missing:
                raise UsageError("--input", f"{spec} lacks column(s) {', '.join(sorted(missing))}")
            return [_clean(r) for r in table.to_pylist()]
        text = data.decode("utf-8")
        if lower.endswith((".jsonl", ".json", ".ndjson")):
            records = []
            for n, line in enumerate(text.splitlines(), start=1):
                if line.strip():
                    try:
                        obj = json.loads(line)
                    except ValueError as exc:
                        raise UsageError("--input", f"{spec} line {n} is not JSON: {exc}") from None
                    records.append(obj if isinstance(obj, dict) else {"id": f"line-{n}", "text": str(obj)})
            return [_clean(r) for r in records]
        if lower.endswith(".csv"):
            reader = csv.DictReader(io.StringIO(text))
            if not reader.fieldnames or not {"id", "text"} <= set(reader.fieldnames):
                raise UsageError("--input", f"{spec} needs a header with id and text columns")
            return [_clean(dict(r)) for r in reader]
        return [
            {"id": f"line-{n:06d}", "text": line.strip()}
            for n, line in enumerate(text.splitlines(), start=1)
            if line.strip()
        ]
    except UnicodeDecodeError:
        raise UsageError("--input", f"{spec} is not UTF-8 text") from None


def _clean(record: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in record.items() if v is not None and v != ""}
    if "id" in out:
        out["id"] = str(out["id"])
    for name, kind in _NUMERIC_PARAMETERS.items():
        if name in out:
            with contextlib.suppress(TypeError, ValueError):
                out[name] = kind(out[name])
    return out


def summarize(summary: Summary, output: str, run_id: str, main: str) -> None:
    """Count what this run wrote by reading its own partition back."""
    pairs: Counter[tuple[str, str]] = Counter()
    for name in (main, DEAD_LETTERS):
        for f in storage.match(storage.join(output, name, f"run={run_id}", "*.parquet")):
            with storage.open_read(f.uri) as fh:
                table = read_parquet(fh.read())
            if name == main:
                summary.written += table.num_rows
                summary.outputs.append(f.uri)
            else:
                codes = table.column("error_code").to_pylist()
                summary.dead_letters.update(codes)
                pairs.update(zip(codes, table.column("error_message").to_pylist(), strict=True))
                if table.num_rows:
                    summary.outputs.append(f.uri)
    for (code, message), _ in reversed(pairs.most_common()):  # the commonest message per code wins
        summary.messages[code] = message
    if main == TRANSCRIPTS:
        summary.captions_dir = storage.join(output, CAPTIONS, f"run={run_id}")
        summary.captions = len(storage.match(storage.join(summary.captions_dir, "*")))
