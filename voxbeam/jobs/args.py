"""The jobs' flags: parsing, the key kept out of Beam's options, unknown flags refused."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

from voxbeam.beam import storage
from voxbeam.beam.options import SynthesizeTextOptions, TranscribeAudioOptions, VoxBeamOptions
from voxbeam.errors import UsageError

OPTIONS: dict[str, tuple[type[VoxBeamOptions], str, str]] = {
    "transcribe": (TranscribeAudioOptions, "transcribe_audio", "Transcribe audio files into Parquet transcripts."),
    "synthesize": (SynthesizeTextOptions, "synthesize_text", "Render text records into audio objects."),
}


@dataclass
class JobArgs:
    """A job's own flags, the API key taken out of argv, and Beam's options from the rest."""

    values: argparse.Namespace
    api_key: str | None
    options: PipelineOptions


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


def parse(kind: str, argv: Sequence[str] | None) -> JobArgs:
    """Parse a job's command line; UsageError for anything missing or unknown."""
    options_cls, prog, description = OPTIONS[kind]
    args_list = list(sys.argv[1:] if argv is None else argv)
    args_list, api_key = _strip_secret(args_list)
    values, rest = _parser(options_cls, prog, description).parse_known_args(args_list)
    _check_unknown(rest)
    if not values.input:
        raise UsageError("--input", "is required")
    if not values.output:
        raise UsageError("--output", "is required")
    if storage.emulator_host():
        storage.configure_beam_for_emulator()
    # Beam sees only its own flags: ours are parsed here (and the key never reaches PipelineOptions).
    return JobArgs(values, api_key, PipelineOptions(rest))
