"""The jobs' flags, defined once, parsed without importing Beam (so ``--help`` is instant).

``FLAGS[kind]`` lists a job's own options; ``parse`` reads them from a command line, takes the
API key out of it, and leaves everything else for Beam's ``PipelineOptions`` (``--runner``,
``--project``, ``--setup_file``, ...), which the runner checks once Beam is loaded. The
``PipelineOptions`` subclasses in ``voxbeam.beam.options`` add the same flags (``voxbeam.flags``) to
Beam's parser.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from voxbeam.errors import UsageError
from voxbeam.flags import FLAGS, KINDS, STREAM_SOURCES
from voxbeam.jobs.config import JobConfig

_DESCRIPTION = {
    "transcribe": "Transcribe audio files into Parquet transcripts (and SRT/WebVTT captions).",
    "synthesize": "Render text records into audio objects with a Parquet manifest.",
}
EXIT_STATUS_HELP = (
    "Exit status: 0 done (dead letters within --max_dead_letter_fraction), 2 a usage error before any record "
    "was read, 3 too many dead letters, 4 every record failed, 130 interrupted, 1 the job itself failed."
)
BEAM_HELP = (
    "Other Beam options pass through to Beam (--runner, --project, --region, --temp_location, --setup_file, "
    "--extra_package, ... and any option of the runner you name); unknown ones are refused."
)


@dataclass
class JobArgs:
    """A job's own settings, the API key taken out of argv, and the arguments left for Beam."""

    kind: str
    config: JobConfig
    api_key: str | None
    beam_args: list[str]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line naming the problem instead of the usage block
        raise UsageError("", message)


def build_parser(kind: str, prog: str | None = None) -> argparse.ArgumentParser:
    """The job's parser (the input may also come first, without --input: ``parse`` handles that)."""
    prog = prog or f"voxbeam {kind}"
    parser = _Parser(
        prog=prog,
        usage=f"{prog} INPUT --output OUTPUT [options] [Beam options]",
        description=f"{_DESCRIPTION[kind]} INPUT, the first argument, is the same as --input.",
        epilog=f"{BEAM_HELP} {EXIT_STATUS_HELP}",
        allow_abbrev=False,
        exit_on_error=False,
    )
    for flag in FLAGS[kind]:
        flag.add_to(parser)
    return parser


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


def _check_rest(rest: Sequence[str]) -> None:
    """What Beam gets must look like options: no single-dash flags, no stray words."""
    previous = ""
    for arg in rest:
        if arg.startswith("-") and not arg.startswith("--") and len(arg) > 1:
            raise UsageError(arg, "unknown flag (options are spelled --name; see --help)")
        if not arg.startswith("-") and not (previous.startswith("--") and "=" not in previous):
            raise UsageError("", f"unexpected argument {arg!r}: give the input first or as --input (see --help)")
        previous = arg


def parse(kind: str, argv: Sequence[str] | None = None, prog: str | None = None) -> JobArgs:
    """Parse a job's command line (``--help`` prints and exits); UsageError names what is wrong."""
    if kind not in KINDS:
        raise ValueError(f"unknown job {kind!r}; jobs: {', '.join(KINDS)}")
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and not args_list[0].startswith("-"):
        args_list = ["--input", args_list[0], *args_list[1:]]
    args_list, api_key = _strip_secret(args_list)
    parser = build_parser(kind, prog)
    try:
        values, rest = parser.parse_known_args(args_list)
    except argparse.ArgumentError as exc:
        raise UsageError(exc.argument_name or "", exc.message) from None
    _check_rest(rest)
    sources = [f"--{name}" for name in ("input", *STREAM_SOURCES) if getattr(values, name)]
    if len(sources) > 1:
        raise UsageError(sources[1], f"reads the input, as {sources[0]} does: give one of them")
    if not sources:
        raise UsageError("--input", "is required (or --input_subscription / --input_topic for a stream)")
    if not values.output:
        raise UsageError("--output", "is required")
    config = JobConfig.from_flags(kind, values)
    if not config.stream and config.input_pattern:
        raise UsageError("--input_pattern", "applies to a stream: give --input_subscription or --input_topic")
    return JobArgs(kind, config, api_key, list(rest))
