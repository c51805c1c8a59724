"""The `voxbeam` command: serve | transcribe | synthesize | caption | plan."""

from __future__ import annotations

import sys
from collections.abc import Sequence

USAGE = """usage: voxbeam COMMAND [ARGS]

commands:
  serve                     run a VoxNexus-compatible speech server (Whisper speech recognition, Piper voices)
  transcribe INPUT --output OUT [options]
                            audio files (glob, directory, or a list of URIs) to Parquet transcripts
  synthesize INPUT --output OUT [options]
                            text records (lines, JSON lines, CSV, Parquet) to audio objects
  caption FILE [options]    play audio (a file, or - for PCM on stdin) to a server at real time and print
                            its live partials and finals
  plan --workers N --per_session_rate R (--replicas N --capacity C | --endpoint URL) ...
                            expected wall time on a fleet, and the sessions per worker to use

`voxbeam COMMAND --help` lists a command's options.
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "serve":
        from voxbeam.server import main as serve_main

        return int(serve_main(rest) or 0)
    if command == "plan":
        from voxbeam.jobs.plan import plan_main

        return plan_main(rest)
    if command == "caption":
        from voxbeam.jobs.caption import caption_main

        return caption_main(rest)
    if command in ("transcribe", "synthesize"):
        from voxbeam import jobs  # Beam is imported only after the job's flags are parsed
        from voxbeam.jobs.cli import exit_now

        status = jobs.main(command, rest, prog=f"voxbeam {command}")
        if argv is None:  # the `voxbeam` program: end without the teardown that can abort (see exit_now)
            exit_now(status)
        return status
    print(f"error: unknown command {command!r}\n\n{USAGE}", file=sys.stderr, end="")
    return 2


if __name__ == "__main__":
    sys.exit(main())
