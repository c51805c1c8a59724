"""What a job reads before it runs: its input records, earlier runs' outputs, and whether it may write."""

from __future__ import annotations

import errno
import io
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

from voxbeam.beam import DEAD_LETTERS, REDACTED_AUDIO_MANIFEST, storage
from voxbeam.beam.schema import SOURCE_KEY_COLUMNS
from voxbeam.beam.sink import stream_prefix
from voxbeam.beam.transforms import CAPTIONS, TRANSCRIPTS, UNREDACTED
from voxbeam.errors import UsageError, describe_os_error
from voxbeam.jobs.summary import Summary

LISTING_SUFFIXES = (".txt", ".lst", ".list", ".uris")


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


def input_problem(spec: str, exc: Exception) -> str:
    if isinstance(exc, OSError):
        return describe_os_error(exc, spec)
    return f"cannot read {spec}: {exc}"


def expand_input(spec: str) -> list[storage.SourceFile]:
    """A glob, a directory, or a text file listing one URI per line."""
    try:
        found = storage.match(spec)
    except Exception as exc:
        raise UsageError("--input", input_problem(spec, exc)) from None
    if len(found) == 1 and found[0].uri == spec and spec.lower().endswith(LISTING_SUFFIXES):
        listed: list[storage.SourceFile] = []
        try:
            text = storage.read_bytes(spec).decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError("--input", f"cannot read the list {spec}: {input_problem(spec, exc)}") from None
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


def earlier_rows(output: str, name: str, columns: Sequence[str]) -> set[tuple[Any, ...]]:
    """The ``columns`` of every row that earlier runs under ``output`` wrote: batch runs to
    ``<output>/<name>/run=*/``, streams to every window under ``<output>/stream/<name>/``."""
    seen: set[tuple[Any, ...]] = set()
    files = []
    for pattern in (storage.join(output, name, "*", "*.parquet"), storage.join(stream_prefix(output, name), "**")):
        try:
            files += [f for f in storage.match(pattern) if f.uri.endswith(".parquet")]
        except Exception:
            continue
    for f in files:
        with storage.open_read(f.uri) as fh:
            table = read_parquet(fh.read(), columns=list(columns))
        seen.update(zip(*(table.column(c).to_pylist() for c in columns), strict=True))
    return seen


def existing_sources(output: str) -> set[tuple[Any, ...]]:
    """(uri, size, version) of every file that earlier runs under ``output`` transcribed."""
    return earlier_rows(output, TRANSCRIPTS, SOURCE_KEY_COLUMNS)


def run_files(output: str, name: str, run_id: str, *, stream: bool = False) -> list[storage.SourceFile]:
    """The Parquet files of one output kind that run ``run_id`` wrote (a stream's in every window)."""
    try:
        if stream:
            return storage.match(storage.join(stream_prefix(output, name), "**", f"part-{run_id}-*.parquet"))
        return storage.match(storage.join(output, name, f"run={run_id}", "*.parquet"))
    except FileNotFoundError:
        return []


def summarize(summary: Summary, output: str, run_id: str, main: str, *, stream: bool = False) -> None:
    """Count what this run wrote by reading its own files back."""
    pairs: Counter[tuple[str, str]] = Counter()
    for name in (main, DEAD_LETTERS):
        files = run_files(output, name, run_id, stream=stream)
        for f in files:
            with storage.open_read(f.uri) as fh:
                table = read_parquet(fh.read())
            if name == main:
                summary.written += table.num_rows
            else:
                codes = table.column("error_code").to_pylist()
                summary.dead_letters.update(codes)
                pairs.update(zip(codes, table.column("error_message").to_pylist(), strict=True))
            if table.num_rows and not stream:
                summary.outputs.append(f.uri)
        if stream and files:
            summary.outputs.append(storage.join(stream_prefix(output, name), ""))
    if main == TRANSCRIPTS:  # --redact_keep_original's and --redact_audio's own outputs, listed too
        for extra in (UNREDACTED, REDACTED_AUDIO_MANIFEST):
            kept = run_files(output, extra, run_id, stream=stream)
            if stream and kept:
                summary.outputs.append(storage.join(stream_prefix(output, extra), ""))
            elif not stream:
                summary.outputs += [f.uri for f in kept]
    for (code, message), _ in reversed(pairs.most_common()):  # the commonest message per code wins
        summary.messages[code] = message
    if main == TRANSCRIPTS and not stream:
        summary.captions_dir = storage.join(output, CAPTIONS, f"run={run_id}")
        summary.captions = len(storage.match(storage.join(summary.captions_dir, "*")))
