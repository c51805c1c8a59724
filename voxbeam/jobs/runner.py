"""One job run, either kind: check everything, start the service, run the pipeline, report."""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import functools
import importlib
import io
import re
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from voxbeam.beam import progress, storage
from voxbeam.beam._workers import close_worker_clients
from voxbeam.beam.options import ServiceSettings
from voxbeam.errors import UsageError
from voxbeam.jobs import args as job_args
from voxbeam.jobs.inputs import summarize
from voxbeam.jobs.interrupt import CtrlC, Emergency, Interrupted, remove_temporaries, remove_unfinished_run
from voxbeam.jobs.kinds import KINDS, Job
from voxbeam.jobs.service import service_for
from voxbeam.jobs.summary import Summary

LOCAL_RUNNERS = {None, "", "fnapirunner", "directrunner", "direct", "fnapi", "prismrunner", "prism"}


def _register_runner_options(runner: str) -> None:
    """Import the named runner's module, as Beam will, so that the options it defines are known."""
    name = runner.lower().removesuffix("runner")
    paths = [
        p for p in StandardOptions.ALL_KNOWN_RUNNERS if p.rsplit(".", 1)[-1].lower().removesuffix("runner") == name
    ]
    path = paths[0] if paths else runner
    if "." not in path:
        known = ", ".join(StandardOptions.KNOWN_RUNNER_NAMES)
        raise UsageError("--runner", f"no runner is called {runner!r}; use one of {known} or a module.Class path")
    try:
        importlib.import_module(path.rsplit(".", 1)[0])
    except ImportError as exc:
        raise UsageError("--runner", f"{runner} cannot be loaded: {exc} (is its package installed?)") from None


def _all_options(options: PipelineOptions, *, retain_unknown: bool) -> dict[str, Any]:
    """Beam's parse of every option; a bad value becomes one UsageError line instead of a usage block."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return options.get_all_options(retain_unknown_options=retain_unknown)
    except SystemExit:
        last = (err.getvalue().strip().splitlines() or ["an invalid Beam option"])[-1].split("error: ", 1)[-1]
        found = re.match(r"argument (--\S+?)(?:/\S+)?: (.*)", last)
        raise UsageError(found.group(1), found.group(2)) if found else UsageError("", last) from None


def beam_options(kind: str, beam_args: Sequence[str]) -> PipelineOptions:
    """Beam's options from what the job's own parser left; UsageError for one no installed runner knows."""
    options = PipelineOptions(list(beam_args))
    runner = options.view_as(StandardOptions).runner
    if runner is not None:
        _register_runner_options(str(runner))
    known = _all_options(PipelineOptions([]), retain_unknown=False)  # no flags: nothing to warn about
    unknown = sorted(set(_all_options(options, retain_unknown=True)) - set(known))
    if unknown:
        flag = f"--{unknown[0]}"
        for other in job_args.KINDS:
            if other != kind and flag in {f.option for f in job_args.FLAGS[other]}:
                raise UsageError(flag, f"is an option of `voxbeam {other}`, not of `voxbeam {kind}`")
        candidates = [f.option for f in job_args.FLAGS[kind]] + [f"--{k}" for k in known]
        close = difflib.get_close_matches(flag, candidates, n=1, cutoff=0.75)
        hint = f"; did you mean {close[0]}?" if close else " (see --help)"
        raise UsageError(flag, f"unknown flag: neither VoxBeam, Beam nor the runner knows it{hint}")
    return options


STAGING_NOTE = (
    "note: this runner's workers need voxbeam installed: pass --setup_file (this project's setup.py), "
    "--extra_package (a voxbeam sdist or wheel) or --sdk_container_image (an image with voxbeam)"
)


def _workers_get_voxbeam(options: PipelineOptions) -> bool:
    """Whether the options stage voxbeam, name an image, or run the workers in this very process."""
    given = options.get_all_options()
    loopback = str(given.get("environment_type") or "").upper() == "LOOPBACK"
    return loopback or any(given.get(k) for k in ("setup_file", "extra_packages", "sdk_container_image"))


def is_local(options: PipelineOptions) -> bool:
    runner = options.view_as(StandardOptions).runner
    return runner is None or str(runner).lower() in LOCAL_RUNNERS


def make_pipeline(options: PipelineOptions) -> beam.Pipeline:
    """A pipeline on the FnApiRunner unless another runner is named (the default tries Prism)."""
    if is_local(options):
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        return beam.Pipeline(runner=FnApiRunner(), options=options)
    try:
        return beam.Pipeline(options=options)
    except ValueError as exc:  # the runner validates its options here (Dataflow: project, region, locations)
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise UsageError("--runner", f"{'; '.join(lines[1:] or lines)}") from None


def new_run_id() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def run(kind: str, argv: Sequence[str] | None = None, *, show_progress: bool = False) -> Summary:
    """Run the ``transcribe`` or ``synthesize`` job; UsageError before any record when something is wrong."""
    return execute(job_args.parse(kind, argv), show_progress=show_progress)


def execute(parsed: job_args.JobArgs, *, show_progress: bool = False) -> Summary:
    """Run a job whose command line has been parsed."""
    kind = parsed.kind
    options = beam_options(kind, parsed.beam_args)
    storage.configure_beam_for_emulator()
    local = is_local(options)
    if not local and not _workers_get_voxbeam(options):
        print(STAGING_NOTE, file=sys.stderr)
    config = parsed.config
    if config.stream:
        from voxbeam.jobs.stream import execute_stream

        return execute_stream(parsed, options, local=local, show_progress=show_progress, make_pipeline=make_pipeline)
    job = KINDS[kind](config)
    started = time.monotonic()
    summary = Summary(kind=kind, inputs=0, max_dead_letter_fraction=config.max_dead_letter_fraction)
    records = job.read(summary)
    if not records and not job.rejected:
        summary.wall_seconds = time.monotonic() - started
        return summary
    run_id = new_run_id()
    emergency = Emergency()
    # A local run shows progress and takes Ctrl-C (interrupt.py) from the embedded server's start to
    # its stop: a second press while the server stops must quit at once too, not raise in the middle.
    progress_id = f"{kind}-{run_id}" if local else None
    tracker = progress.register(progress_id, len(records) + len(job.rejected)) if progress_id else None
    ctrl_c = CtrlC(tracker, emergency) if tracker is not None else None
    try:
        with ctrl_c or contextlib.nullcontext():
            with service_for(
                parsed,
                job.session(),
                local=local,
                options=options,
                summary=summary,
                emergency=emergency,
                screen=job.screen,
            ) as service:
                interrupted = _run_pipeline(
                    job,
                    records=job.screened(records),
                    options=options,
                    service=service,
                    run_id=run_id,
                    progress_id=progress_id,
                    show=show_progress,
                    emergency=emergency,
                )
    finally:
        if progress_id:
            progress.unregister(progress_id)
    if interrupted is not None:
        raise interrupted
    summarize(summary, config.output, run_id, job.main_output)
    summary.wall_seconds = time.monotonic() - started
    return summary


def _run_pipeline(
    job: Job,
    *,
    records: list[Any],
    options: PipelineOptions,
    service: ServiceSettings,
    run_id: str,
    progress_id: str | None,
    show: bool,
    emergency: Emergency,
) -> Interrupted | None:
    """Build and run the pipeline; a local run's tracker (``progress_id``) shows progress and is stopped by Ctrl-C."""
    output = job.config.output
    emergency.add(functools.partial(remove_temporaries, output, run_id, local_only=True))
    # Until the pipeline has finished writing, quitting at once takes back what it wrote (none or all).
    unfinished = emergency.add(functools.partial(remove_unfinished_run, output, run_id))
    tracker = progress.lookup(progress_id)
    local = tracker is not None
    if tracker is not None:
        for _ in job.rejected:
            tracker.add(ok=False)  # rejected while reading: failed records all the same
    finished = False
    try:
        with _progress_printer(tracker, show):
            with make_pipeline(options) as p:
                job.build(p, records, service, run_id, progress_id)
        finished = True
        emergency.written(unfinished)
    finally:
        if local:
            close_worker_clients()
        stopped = tracker is not None and tracker.stopping.is_set()
        if stopped or not finished:  # Beam cleans up after a pipeline that ends well; not after one that fails
            remove_temporaries(output, run_id)
    if tracker is not None and tracker.stopping.is_set():
        return Interrupted(tracker.done, tracker.not_started)
    return None


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
