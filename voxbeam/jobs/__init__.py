"""The two ready jobs (transcribe audio, synthesize text) behind `voxbeam` and `pipelines/`.

Everything a user can get wrong is checked before any record is read: flags, inputs, the
output's writability, and the service's reachability and key. Such problems raise
``UsageError`` naming the flag; the CLI prints that one line and exits with 2.

``run(kind, argv)`` runs a job and returns its ``Summary``; ``main(kind, argv)`` is the same
with the CLI's printing and exit status.
"""

from voxbeam.errors import UsageError
from voxbeam.jobs.runner import main, run
from voxbeam.jobs.summary import Summary

__all__ = ["Summary", "UsageError", "main", "run"]
