"""``voxbeam transcribe|synthesize`` and the pipelines' mains: parse, run, print, exit status."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

from voxbeam.errors import UsageError
from voxbeam.jobs import args
from voxbeam.jobs.summary import EXIT_INTERRUPTED, EXIT_USAGE


def _load_runner() -> ModuleType:
    """Import the runner (and with it Beam) only once the flags are known to be usable."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # Beam warns on import when its optional BigQuery clients are absent
    try:
        from voxbeam.jobs import runner
    finally:
        root.setLevel(level)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", force=True)
    return runner


def exit_now(status: int) -> NoReturn:
    """End the process with ``status`` without the interpreter's teardown.

    Native threads (pyarrow's pools, Beam's) still starting or running while the interpreter
    tears down abort the process ('terminate called without an active exception'): about one
    run in ten ended with SIGABRT instead of its exit status. By now the job has written its
    outputs, stopped its server and printed its summary.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(status)


def main(kind: str, argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """Run a job as a command: one line and exit 2 on usage errors, the summary otherwise.

    Without ``argv`` it is the program itself (``pipelines/*.py``): it reads ``sys.argv`` and
    ends the process with the exit status (``exit_now``) instead of returning it.
    """
    if argv is None:
        exit_now(_main(kind, sys.argv[1:], prog or os.path.basename(sys.argv[0])))
    return _main(kind, argv, prog)


def _main(kind: str, argv: Sequence[str], prog: str | None) -> int:
    try:
        parsed = args.parse(kind, argv, prog)
        summary = _load_runner().execute(parsed, show_progress=True)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        # A run that had started on its records says how far it got (interrupt.Interrupted); a stream
        # stopped by Ctrl-C has written what it did, and reports it (stream.StreamStopped).
        stopped = getattr(exc, "summary", None)
        for line in stopped.lines() if stopped is not None else ():
            print(line)
        how_far = getattr(exc, "line", None)
        print(how_far() if callable(how_far) else "interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if summary.inputs and summary.skipped == summary.inputs:
        print(f"nothing new to {kind}: all {summary.skipped} inputs are unchanged since earlier runs")
    for line in summary.lines():
        print(line)
    verdict = summary.verdict()
    if verdict:
        print(verdict, file=sys.stderr)
    return summary.exit_code()
