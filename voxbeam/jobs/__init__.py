"""The two ready jobs (transcribe audio, synthesize text) behind `voxbeam` and `pipelines/`.

Everything a user can get wrong is checked before any record is read: flags, inputs, the
output's writability, and the service's reachability and key. Such problems raise
``UsageError`` naming the flag; the CLI prints that one line and exits with 2.

``run(kind, argv)`` runs a job and returns its ``Summary``; ``main(kind, argv)`` is the same
with the CLI's printing and exit status. Importing this package does not import Beam.
"""

from __future__ import annotations

from collections.abc import Sequence

from voxbeam.errors import UsageError
from voxbeam.jobs.cli import main
from voxbeam.jobs.summary import Summary


def run(kind: str, argv: Sequence[str] | None = None, *, show_progress: bool = False) -> Summary:
    """Run the ``transcribe`` or ``synthesize`` job; UsageError before any record when something is wrong."""
    from voxbeam.jobs import runner

    return runner.run(kind, argv, show_progress=show_progress)


__all__ = ["Summary", "UsageError", "main", "run"]
