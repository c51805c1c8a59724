"""One job run, either kind: check everything, start the service, run the pipeline, report."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from voxbeam.beam import DEAD_LETTERS, close_worker_clients, progress, storage
from voxbeam.beam.captions import CAPTION_FORMATS
from voxbeam.beam.options import ServiceSettings, split_list
from voxbeam.beam.transforms import (
    MANIFEST,
    TRANSCRIPTS,
    Synthesize,
    Transcribe,
    WriteDeadLetters,
    WriteManifest,
    WriteTranscripts,
)
from voxbeam.errors import UsageError
from voxbeam.jobs import args as job_args
from voxbeam.jobs.inputs import check_writable, existing_sources, expand_input, read_text_records
from voxbeam.jobs.service import service_for
from voxbeam.jobs.summary import Summary, summarize
from voxbeam.protocol import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE

LOCAL_RUNNERS = {None, "", "fnapirunner", "directrunner", "direct", "fnapi", "prismrunner", "prism"}


def is_local(options: PipelineOptions) -> bool:
    runner = options.view_as(StandardOptions).runner
    return runner is None or str(runner).lower() in LOCAL_RUNNERS


def make_pipeline(options: PipelineOptions) -> beam.Pipeline:
    """A pipeline on the FnApiRunner unless another runner is named (the default tries Prism)."""
    if is_local(options):
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        return beam.Pipeline(runner=FnApiRunner(), options=options)
    return beam.Pipeline(options=options)


def new_run_id() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


class _Job:
    """What differs between the two jobs: their flags' checks, their inputs, their transforms."""

    main_output: str

    def __init__(self, values: argparse.Namespace) -> None:
        self.values = values

    def read(self, summary: Summary) -> list[Any]:
        """The records to process (UsageError when there is nothing usable); sets ``summary.inputs``."""
        raise NotImplementedError

    def build(self, records: beam.PCollection, service: ServiceSettings, run_id: str, progress_id: str | None) -> None:
        """The job's transforms and writers after ``records``."""
        raise NotImplementedError


class _Transcription(_Job):
    """Audio files in, transcript rows (and captions) out."""

    main_output = TRANSCRIPTS

    def __init__(self, values: argparse.Namespace) -> None:
        super().__init__(values)
        self.captions = split_list(values.captions)
        for c in self.captions:
            if c not in CAPTION_FORMATS:
                raise UsageError("--captions", f"unknown caption format {c!r}; use {' or '.join(CAPTION_FORMATS)}")

    def read(self, summary: Summary) -> list[Any]:
        sources = expand_input(self.values.input)
        summary.inputs = len(sources)
        check_writable(self.values.output)
        if self.values.skip_existing == "true":
            done = existing_sources(self.values.output)
            todo = [s for s in sources if (s.uri, s.size, s.version) not in done]
            summary.skipped = len(sources) - len(todo)
            sources = todo
        return [s if s.size >= 0 else s.uri for s in sources]

    def build(self, records: beam.PCollection, service: ServiceSettings, run_id: str, progress_id: str | None) -> None:
        v = self.values
        result = records | "Transcribe" >> Transcribe(
            service, language=v.language, timestamps=v.timestamps == "true", progress_id=progress_id
        )
        result[TRANSCRIPTS] | "WriteTranscripts" >> WriteTranscripts(v.output, run_id, captions=self.captions)
        result[DEAD_LETTERS] | "WriteDeadLetters" >> WriteDeadLetters(v.output, run_id)


class _Synthesis(_Job):
    """Text records in, audio objects and manifest rows out."""

    main_output = MANIFEST

    def __init__(self, values: argparse.Namespace) -> None:
        super().__init__(values)
        if not MIN_SAMPLE_RATE <= values.sample_rate <= MAX_SAMPLE_RATE:
            raise UsageError("--sample_rate", f"must be between {MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE}")

    def read(self, summary: Summary) -> list[Any]:
        records = read_text_records(self.values.input)
        if not records:
            raise UsageError("--input", f"{self.values.input} holds no records")
        summary.inputs = len(records)
        check_writable(self.values.output)
        return records

    def build(self, records: beam.PCollection, service: ServiceSettings, run_id: str, progress_id: str | None) -> None:
        v = self.values
        result = records | "Synthesize" >> Synthesize(
            storage.join(v.output, "audio"),
            service,
            voice_id=v.voice_id,
            language=v.language,
            format=v.audio_format,
            sample_rate=v.sample_rate,
            speed=v.speed,
            pitch=v.pitch,
            volume=v.volume,
            progress_id=progress_id,
        )
        result[MANIFEST] | "WriteManifest" >> WriteManifest(v.output, run_id)
        result[DEAD_LETTERS] | "WriteDeadLetters" >> WriteDeadLetters(v.output, run_id)


KINDS: dict[str, type[_Job]] = {"transcribe": _Transcription, "synthesize": _Synthesis}


def run(kind: str, argv: Sequence[str] | None = None, *, show_progress: bool = False) -> Summary:
    """Run the ``transcribe`` or ``synthesize`` job; UsageError before any record when something is wrong."""
    parsed = job_args.parse(kind, argv)
    job = KINDS[kind](parsed.values)
    local = is_local(parsed.options)
    started = time.monotonic()
    summary = Summary(kind=kind, inputs=0)
    records = job.read(summary)
    if not records:
        summary.wall_seconds = time.monotonic() - started
        return summary
    run_id = new_run_id()
    with service_for(parsed.values, parsed.api_key, local) as service:
        progress_id = f"{kind}-{run_id}" if local else None
        tracker = progress.register(progress_id, len(records)) if progress_id else None
        try:
            with _progress_printer(tracker, show_progress):
                with make_pipeline(parsed.options) as p:
                    job.build(p | "Records" >> beam.Create(records, reshuffle=False), service, run_id, progress_id)
        finally:
            if progress_id:
                progress.unregister(progress_id)
            if local:
                close_worker_clients()
    summarize(summary, parsed.values.output, run_id, job.main_output)
    summary.wall_seconds = time.monotonic() - started
    return summary


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


def main(kind: str, argv: Sequence[str] | None = None) -> int:
    """Entry point shared by the CLI and pipelines/: one line and exit 2 on usage errors."""
    try:
        summary = run(kind, argv, show_progress=True)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if summary.inputs and summary.skipped == summary.inputs:
        print(f"nothing new to {kind}: all {summary.skipped} inputs are unchanged since earlier runs")
    for line in summary.lines():
        print(line)
    return 0
