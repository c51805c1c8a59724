"""A streaming run: Pub/Sub messages in, windowed outputs out, until it is stopped.

Locally (Beam's DirectRunner in its streaming mode, on the embedded server unless --endpoint is
given) the run pulls only as much as its sessions can take (``direct_pubsub``); Ctrl-C stops the
pulling, gives the records in flight the batch jobs' grace, makes what is left undone an
``INTERRUPTED`` dead letter, lets every open window be written, prints the summary and exits 130.
On another runner (Dataflow) the job is submitted and runs there until drained or cancelled.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from voxbeam.beam import direct_pubsub, progress
from voxbeam.beam._workers import close_worker_clients
from voxbeam.beam.stream_status import StreamStats
from voxbeam.errors import UsageError
from voxbeam.jobs import args as job_args
from voxbeam.jobs.config import JobConfig
from voxbeam.jobs.inputs import check_writable, summarize
from voxbeam.jobs.interrupt import GRACE_SECONDS, CtrlC, Emergency
from voxbeam.jobs.kinds import KINDS, Job
from voxbeam.jobs.service import service_for
from voxbeam.jobs.summary import Summary

# Records a local stream may hold (pulled and not yet done) per session it streams with.
HELD_PER_SESSION = 4


class StreamStopped(KeyboardInterrupt):
    """A local stream stopped by Ctrl-C, after writing what it had: its summary, and exit status 130."""

    def __init__(self, summary: Summary) -> None:
        super().__init__("stopped")
        self.summary = summary

    def line(self) -> str:
        interrupted = self.summary.dead_letters.get("INTERRUPTED", 0)
        if not interrupted:
            return "stopped: every record pulled was done and written"
        return (
            f"stopped: {interrupted} records pulled and not done are INTERRUPTED dead letters; replay them with "
            f"--input {self.summary.outputs[-1] if self.summary.outputs else 'the dead letters'}"
        )


def execute_stream(
    parsed: job_args.JobArgs, options: PipelineOptions, *, local: bool, show_progress: bool, make_pipeline: Any
) -> Summary:
    """Run (locally) or submit (elsewhere) the job over its Pub/Sub input."""
    config = parsed.config
    options.view_as(StandardOptions).streaming = True
    job = KINDS[parsed.kind](config)
    check_writable(config.output)
    summary = Summary(kind=parsed.kind, inputs=0, max_dead_letter_fraction=config.max_dead_letter_fraction)
    from voxbeam.jobs.runner import new_run_id

    run_id = new_run_id()
    started = time.monotonic()
    if not local:
        with service_for(parsed, job.session(), local=False, options=options, summary=summary) as service:
            p = make_pipeline(options)
            job.build_stream(p, service, run_id, None)
            result = p.run()
        job_id = getattr(result, "job_id", None)
        summary.notes.append(f"streaming job submitted{f' ({job_id()})' if callable(job_id) else ''}; run {run_id}")
        return summary
    _check_source(config)
    tracker = progress.register(f"{parsed.kind}-{run_id}", 0)
    tracker.stream = stats = StreamStats()
    emergency = Emergency()
    try:
        with CtrlC(tracker, emergency):
            with service_for(
                parsed, job.session(), local=True, options=options, summary=summary, emergency=emergency
            ) as service:
                held = HELD_PER_SESSION * service.sessions_per_worker
                control = direct_pubsub.PullControl(
                    room=lambda: held - stats.held(tracker.done),
                    stop=tracker.stopping,
                    on_pulled=stats.add_pulled,
                )
                _run_local(job, options, service, run_id, tracker, control, show_progress)
    finally:
        progress.unregister(f"{parsed.kind}-{run_id}")
    summary.inputs = stats.pulled
    summarize(summary, config.output, run_id, job.main_output, stream=True)
    summary.notes.extend(_stream_notes(stats))
    summary.wall_seconds = time.monotonic() - started
    raise StreamStopped(summary)


def _run_local(
    job: Job,
    options: PipelineOptions,
    service: Any,
    run_id: str,
    tracker: progress.Progress,
    control: direct_pubsub.PullControl,
    show_progress: bool,
) -> None:
    from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner

    from voxbeam.jobs.runner import _progress_printer

    drains = direct_pubsub.activate(control)
    try:
        with _progress_printer(tracker, show_progress):
            p = beam.Pipeline(runner=BundleBasedDirectRunner(), options=options)
            job.build_stream(p, service, run_id, f"{job.kind}-{run_id}")
            result = p.run()
            if not drains:  # no drain on this Beam: a stop cancels the run once the grace is over
                threading.Thread(target=_cancel_when_stopped, args=(tracker, result), daemon=True).start()
            result.wait_until_finish()  # a stop drains the read, and with it the pipeline
    finally:
        direct_pubsub.activate(None)
        close_worker_clients()


def _cancel_when_stopped(tracker: progress.Progress, result: Any) -> None:
    tracker.stopping.wait()
    threading.Event().wait(GRACE_SECONDS + 1.0)
    result.cancel()


def _check_source(config: JobConfig) -> None:
    """The subscription or topic exists (a local run would otherwise fail deep inside the runner)."""
    from google.api_core import exceptions
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]

    name: str | None
    try:
        if config.input_subscription:
            flag, name = "--input_subscription", config.input_subscription
            with pubsub_v1.SubscriberClient() as subscriber:
                subscriber.get_subscription(subscription=name, timeout=30)
        else:
            flag, name = "--input_topic", config.input_topic
            pubsub_v1.PublisherClient().get_topic(topic=name, timeout=30)
    except exceptions.NotFound:
        raise UsageError(flag, f"{name} does not exist") from None
    except exceptions.InvalidArgument as exc:
        raise UsageError(flag, f"{name} is not a valid name: {exc.message}") from None
    except exceptions.GoogleAPICallError as exc:
        raise UsageError(flag, f"cannot reach {name}: {exc.message}") from None
    except Exception as exc:  # credentials missing and the like
        raise UsageError(flag, f"cannot reach {name}: {exc}") from None


def _stream_notes(stats: StreamStats) -> list[str]:
    out = [f"stream: {stats.pulled} messages pulled, {stats.windows} files written"]
    if stats.redelivered:
        out.append(f"  redeliveries dropped: {stats.redelivered}")
    if stats.superseded:
        out.append(f"  superseded (the object changed since its notification): {stats.superseded}")
    for why, n in sorted(stats.ignored.items()):
        out.append(f"  ignored ({why}): {n}")
    latency = stats.percentiles()
    if latency is not None:
        out.append(f"  publish to row: p50 {latency[0]:.1f} s, p95 {latency[1]:.1f} s")
    return out
