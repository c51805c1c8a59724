"""``voxbeam transcribe|synthesize`` and the pipelines' mains: parse, run, print, exit status."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from types import ModuleType

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


def main(kind: str, argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """Run a job as a command: one line and exit 2 on usage errors, the summary otherwise."""
    if argv is None:
        argv = sys.argv[1:]
        prog = prog or os.path.basename(sys.argv[0])
    try:
        parsed = args.parse(kind, argv, prog)
        summary = _load_runner().execute(parsed, show_progress=True)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        # A run that had started on its records says how far it got (interrupt.Interrupted).
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
