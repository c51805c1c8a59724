"""The two ready jobs (transcribe audio, synthesize text) behind `voxbeam` and `pipelines/`.

Everything a user can get wrong is checked here before any record is read: flags, inputs,
the output's writability, and the service's reachability and key. Such problems raise
``UsageError`` naming the flag; the CLI prints that one line and exits with 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import dataclasses
import datetime as dt
import io
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions, _BeamArgumentParser

from voxbeam.beam import DEAD_LETTERS, close_worker_clients, progress, storage
from voxbeam.beam.captions import CAPTION_FORMATS
from voxbeam.beam.options import (
    API_KEY_ENV,
    Secret,
    ServiceSettings,
    SynthesizeTextOptions,
    TranscribeAudioOptions,
    VoxBeamOptions,
    split_list,
)
from voxbeam.beam.schema import SOURCE_KEY_COLUMNS
from voxbeam.beam.transforms import (
    MANIFEST,
    TRANSCRIPTS,
    Synthesize,
    Transcribe,
    WriteDeadLetters,
    WriteManifest,
    WriteTranscripts,
)
from voxbeam.errors import UsageError, VoxBeamError
from voxbeam.protocol import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, TtsInit

_LOG = logging.getLogger("voxbeam")
LOCAL_RUNNERS = {None, "", "fnapirunner", "directrunner", "direct", "fnapi", "prismrunner", "prism"}
LISTING_SUFFIXES = (".txt", ".lst", ".list", ".uris")


@dataclass
class Summary:
    """What a run did, for the closing report."""

    kind: str
    inputs: int
    written: int = 0
    skipped: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    outputs: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0

    def lines(self) -> list[str]:
        out = [f"{self.kind}: {self.written} rows written, {sum(self.dead_letters.values())} dead letters"]
        if self.skipped:
            out.append(f"skipped (unchanged since earlier runs): {self.skipped}")
        for code, n in sorted(self.dead_letters.items()):
            out.append(f"  dead letters {code}: {n}")
        for path in self.outputs:
            out.append(f"  output: {path}")
        out.append(f"wall time: {self.wall_seconds:.1f} s")
        return out


# ---------------------------------------------------------------------------
# Argument handling


def _parser(options_cls: type[VoxBeamOptions], prog: str, description: str) -> argparse.ArgumentParser:
    parser = _BeamArgumentParser(
        prog=prog,
        description=description,
        epilog="Standard Beam options (--runner, --project, --region, --temp_location, ...) pass through.",
    )
    options_cls._add_argparse_args(parser)
    if options_cls is not VoxBeamOptions:
        VoxBeamOptions._add_argparse_args(parser)
    return parser


def _all_beam_flags() -> set[str]:
    """Every flag some registered PipelineOptions class understands."""
    parser = _BeamArgumentParser(add_help=False)
    seen: set[type[PipelineOptions]] = set()
    stack: list[type[PipelineOptions]] = [PipelineOptions]
    while stack:
        cls = stack.pop()
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.add(sub)
                stack.append(sub)
                with contextlib.suppress(argparse.ArgumentError, TypeError, ValueError):
                    sub._add_argparse_args(parser)
    return {opt for action in parser._actions for opt in action.option_strings}


def _check_unknown(rest: Sequence[str]) -> None:
    known = _all_beam_flags()
    for arg in rest:
        if arg.startswith("--"):
            name = arg.split("=", 1)[0]
            if name not in known:
                raise UsageError(name, "unknown flag (see --help)")
        elif arg.startswith("-") and len(arg) > 1:
            raise UsageError(arg, "unknown flag (see --help)")


def _strip_secret(argv: Sequence[str]) -> tuple[list[str], str | None]:
    """Remove --api_key from the arguments so it never reaches PipelineOptions or the job graph."""
    out: list[str] = []
    key = None
    it = iter(argv)
    for arg in it:
        if arg == "--api_key":
            key = next(it, None)
        elif arg.startswith("--api_key="):
            key = arg.split("=", 1)[1]
        else:
            out.append(arg)
    return out, key


def _runner_name(options: PipelineOptions) -> str | None:
    runner = options.view_as(StandardOptions).runner
    return None if runner is None else str(runner)


def is_local(options: PipelineOptions) -> bool:
    name = _runner_name(options)
    return name is None or name.lower() in LOCAL_RUNNERS


def make_pipeline(options: PipelineOptions) -> beam.Pipeline:
    """A pipeline on the FnApiRunner unless another runner is named (the default tries Prism)."""
    if is_local(options):
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        return beam.Pipeline(runner=FnApiRunner(), options=options)
    return beam.Pipeline(options=options)


# ---------------------------------------------------------------------------
# Service: the endpoint named, or an embedded `voxbeam serve`


@contextlib.contextmanager
def service_for(args: argparse.Namespace, api_key: str | None, local: bool) -> Iterator[ServiceSettings]:
    """Settings for the workers; starts and stops an embedded server when no endpoint is named."""
    common = {
        "auth": args.auth,
        "sessions_per_worker": args.sessions_per_worker,
        "max_attempts": args.max_attempts,
        "ca_bundle": args.ca_bundle,
    }
    if args.sessions_per_worker < 1:
        raise UsageError("--sessions_per_worker", "must be at least 1")
    if args.max_attempts < 1:
        raise UsageError("--max_attempts", "must be at least 1")
    if args.endpoint:
        endpoints = split_list(args.endpoint)
        for e in endpoints:
            if not e.startswith(("ws://", "wss://")):
                raise UsageError("--endpoint", f"{e!r} is not a ws:// or wss:// URL")
        key = api_key or os.environ.get(API_KEY_ENV)
        settings = ServiceSettings(
            endpoints=endpoints,
            api_key=Secret(key) if key else None,
            api_key_secret=args.api_key_secret,
            **common,
        )
        _preflight(settings, local)
        yield settings
        return
    if not local:
        settings = ServiceSettings(
            api_key=Secret(api_key) if api_key else None, api_key_secret=args.api_key_secret, **common
        )
        yield settings
        return
    from voxbeam.server.launcher import LocalServer

    _LOG.info("no --endpoint: starting an embedded voxbeam server")
    server = LocalServer()
    try:
        server.start()
    except Exception as exc:
        raise UsageError("--endpoint", f"none given and the embedded server did not start: {exc}") from None
    try:
        yield ServiceSettings(endpoints=(server.url,), api_key=Secret(server.api_key), **common)
    finally:
        server.stop()


def _preflight(settings: ServiceSettings, local: bool) -> None:
    from voxbeam.client.probe import probe
    from voxbeam.errors import AuthenticationError, TLSVerificationError

    try:
        key = settings.resolve_api_key()
    except Exception as exc:
        raise UsageError("--api_key_secret", f"cannot read the secret: {exc}") from None
    if settings.ca_bundle and not os.path.isfile(settings.ca_bundle):
        raise UsageError("--ca_bundle", f"no such file: {settings.ca_bundle}")
    for endpoint in settings.endpoints:
        try:
            asyncio.run(probe(endpoint, key, auth=settings.auth, ca_bundle=settings.ca_bundle))
        except AuthenticationError as exc:
            flag = "--api_key_secret" if settings.api_key_secret else "--api_key"
            raise UsageError(flag, str(exc)) from None
        except TLSVerificationError as exc:
            raise UsageError("--ca_bundle", str(exc)) from None
        except VoxBeamError as exc:
            raise UsageError("--endpoint", str(exc)) from None


def check_writable(output: str) -> None:
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
        raise UsageError("--output", f"cannot write to {output}: {exc}") from None


def new_run_id() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


# ---------------------------------------------------------------------------
# Transcription


def expand_input(spec: str) -> list[storage.SourceFile]:
    """A glob, a directory, or a text file listing one URI per line."""
    try:
        found = storage.match(spec)
    except Exception as exc:
        raise UsageError("--input", f"cannot list {spec}: {exc}") from None
    if len(found) == 1 and found[0].uri == spec and spec.lower().endswith(LISTING_SUFFIXES):
        listed: list[storage.SourceFile] = []
        text = storage.read_bytes(spec).decode("utf-8")
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


def _read_parquet(data: bytes, columns: list[str] | None = None) -> Any:
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
            table = _read_parquet(fh.read(), columns=list(SOURCE_KEY_COLUMNS))
        for uri, size, version in zip(*(table.column(c).to_pylist() for c in SOURCE_KEY_COLUMNS), strict=True):
            seen.add((uri, int(size), version))
    return seen


def _parse_job_args(
    argv: Sequence[str] | None, options_cls: type[VoxBeamOptions], prog: str, description: str
) -> tuple[argparse.Namespace, str | None, PipelineOptions]:
    """(our flags, the API key taken out of argv, Beam's options from the rest)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    args_list, api_key = _strip_secret(args_list)
    args, rest = _parser(options_cls, prog, description).parse_known_args(args_list)
    _check_unknown(rest)
    if not args.input:
        raise UsageError("--input", "is required")
    if not args.output:
        raise UsageError("--output", "is required")
    if storage.emulator_host():
        storage.configure_beam_for_emulator()
    # Beam sees only its own flags: ours are parsed here (and the key never reaches PipelineOptions).
    return args, api_key, PipelineOptions(rest)


def run_transcription(argv: Sequence[str] | None = None, *, show_progress: bool = False) -> Summary:
    """Run the transcription job; raises UsageError before any record when something is wrong."""
    args, api_key, options = _parse_job_args(
        argv, TranscribeAudioOptions, "transcribe_audio", "Transcribe audio files into Parquet transcripts."
    )
    captions = split_list(args.captions)
    for c in captions:
        if c not in CAPTION_FORMATS:
            raise UsageError("--captions", f"unknown caption format {c!r}; use {' or '.join(CAPTION_FORMATS)}")
    local = is_local(options)
    started = time.monotonic()
    sources = expand_input(args.input)
    check_writable(args.output)
    summary = Summary(kind="transcribe", inputs=len(sources))
    if args.skip_existing == "true":
        done = existing_sources(args.output)
        todo = [s for s in sources if (s.uri, s.size, s.version) not in done]
        summary.skipped = len(sources) - len(todo)
        sources = todo
    if not sources:
        summary.wall_seconds = time.monotonic() - started
        return summary
    run_id = new_run_id()
    with service_for(args, api_key, local) as service:
        progress_id = f"transcribe-{run_id}" if local else None
        tracker = progress.register(progress_id, len(sources)) if progress_id else None
        try:
            with _progress_printer(tracker, show_progress):
                with make_pipeline(options) as p:
                    records = p | "Files" >> beam.Create(
                        [s if s.size >= 0 else s.uri for s in sources], reshuffle=False
                    )
                    result = records | "Transcribe" >> Transcribe(
                        service,
                        language=args.language,
                        timestamps=args.timestamps == "true",
                        progress_id=progress_id,
                    )
                    result[TRANSCRIPTS] | "WriteTranscripts" >> WriteTranscripts(args.output, run_id, captions=captions)
                    result[DEAD_LETTERS] | "WriteDeadLetters" >> WriteDeadLetters(args.output, run_id)
        finally:
            if progress_id:
                progress.unregister(progress_id)
            if local:
                close_worker_clients()
    _summarize(summary, args.output, run_id, TRANSCRIPTS)
    summary.wall_seconds = time.monotonic() - started
    return summary


def _summarize(summary: Summary, output: str, run_id: str, main: str) -> None:
    """Count what this run wrote by reading its own partition back."""
    for name in (main, DEAD_LETTERS):
        for f in storage.match(storage.join(output, name, f"run={run_id}", "*.parquet")):
            with storage.open_read(f.uri) as fh:
                table = _read_parquet(fh.read())
            if name == main:
                summary.written += table.num_rows
                summary.outputs.append(f.uri)
            else:
                summary.dead_letters.update(table.column("error_code").to_pylist())
                if table.num_rows:
                    summary.outputs.append(f.uri)


@contextlib.contextmanager
def _progress_printer(tracker: progress.Progress | None, enabled: bool) -> Iterator[None]:
    if tracker is None or not enabled:
        yield
        return
    stop = threading.Event()
    tty = sys.stderr.isatty()
    last = ""

    def loop() -> None:
        nonlocal last
        while not stop.wait(1.0 if tty else 5.0):
            last = line = tracker.line()
            sys.stderr.write(("\r" + line.ljust(100)) if tty else line + "\n")
            sys.stderr.flush()

    thread = threading.Thread(target=loop, name="voxbeam-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        line = tracker.line()
        if tty or line != last:  # a log file need not get the same line twice
            sys.stderr.write(("\r" if tty else "") + line + "\n")
            sys.stderr.flush()


# ---------------------------------------------------------------------------
# Synthesis


def read_text_records(spec: str) -> list[dict[str, Any]]:
    """Records with id and text from text lines, JSON lines, CSV or Parquet."""
    try:
        data = storage.read_bytes(spec)
    except FileNotFoundError:
        raise UsageError("--input", f"no such file: {spec}") from None
    except Exception as exc:
        raise UsageError("--input", f"cannot read {spec}: {exc}") from None
    lower = spec.lower()
    try:
        if lower.endswith(".parquet"):
            table = _read_parquet(data)
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


# CSV and text give strings; the service wants numbers where the TTS init has them.
_NUMERIC_PARAMETERS: dict[str, Callable[[Any], Any]] = {
    f.name: type(f.default) for f in dataclasses.fields(TtsInit) if type(f.default) in (int, float)
}


def _clean(record: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in record.items() if v is not None and v != ""}
    if "id" in out:
        out["id"] = str(out["id"])
    for name, kind in _NUMERIC_PARAMETERS.items():
        if name in out:
            with contextlib.suppress(TypeError, ValueError):
                out[name] = kind(out[name])
    return out


def run_synthesis(argv: Sequence[str] | None = None, *, show_progress: bool = False) -> Summary:
    """Run the synthesis job; raises UsageError before any record when something is wrong."""
    args, api_key, options = _parse_job_args(
        argv, SynthesizeTextOptions, "synthesize_text", "Render text records into audio objects."
    )
    if not MIN_SAMPLE_RATE <= args.sample_rate <= MAX_SAMPLE_RATE:
        raise UsageError("--sample_rate", f"must be between {MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE}")
    local = is_local(options)
    started = time.monotonic()
    records = read_text_records(args.input)
    if not records:
        raise UsageError("--input", f"{args.input} holds no records")
    check_writable(args.output)
    summary = Summary(kind="synthesize", inputs=len(records))
    run_id = new_run_id()
    with service_for(args, api_key, local) as service:
        progress_id = f"synthesize-{run_id}" if local else None
        tracker = progress.register(progress_id, len(records)) if progress_id else None
        try:
            with _progress_printer(tracker, show_progress):
                with make_pipeline(options) as p:
                    result = (
                        p
                        | "Records" >> beam.Create(records, reshuffle=False)
                        | "Synthesize"
                        >> Synthesize(
                            storage.join(args.output, "audio"),
                            service,
                            voice_id=args.voice_id,
                            language=args.language,
                            format=args.audio_format,
                            sample_rate=args.sample_rate,
                            speed=args.speed,
                            pitch=args.pitch,
                            volume=args.volume,
                            progress_id=progress_id,
                        )
                    )
                    result[MANIFEST] | "WriteManifest" >> WriteManifest(args.output, run_id)
                    result[DEAD_LETTERS] | "WriteDeadLetters" >> WriteDeadLetters(args.output, run_id)
        finally:
            if progress_id:
                progress.unregister(progress_id)
            if local:
                close_worker_clients()
    _summarize(summary, args.output, run_id, MANIFEST)
    summary.wall_seconds = time.monotonic() - started
    return summary


def main(job: str, argv: Sequence[str] | None = None) -> int:
    """Entry point shared by the CLI and pipelines/: one line and exit 2 on usage errors."""
    runner = run_transcription if job == "transcribe" else run_synthesis
    try:
        summary = runner(argv, show_progress=True)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if summary.inputs and summary.skipped == summary.inputs:
        print(f"nothing new to {job}: all {summary.skipped} inputs are unchanged since earlier runs")
    for line in summary.lines():
        print(line)
    return 0
