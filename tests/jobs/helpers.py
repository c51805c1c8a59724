"""Running the `voxbeam` command as a newcomer would: a subprocess, its exit status, its words."""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import pyarrow.parquet as pq

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples", "audio")


def voxbeam(
    *args: str, env: dict[str, str] | None = None, unset: tuple[str, ...] = (), timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """``python -m voxbeam ARGS`` from the project root, with ``env`` added and ``unset`` variables removed."""
    full_env = {k: v for k, v in {**os.environ, **(env or {})}.items() if k not in unset}
    return subprocess.run(
        [sys.executable, "-m", "voxbeam", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=ROOT,
    )


def error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.strip()]


def assert_usage_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit status 2 and exactly one line on stderr containing every needle; returns the line."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = error_lines(proc)
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def rows(output: str, name: str) -> list[dict]:
    """Every row of every run's Parquet under ``<output>/<name>/``."""
    found = []
    for f in sorted(glob.glob(os.path.join(output, name, "run=*", "*.parquet"))):
        found += pq.read_table(f).to_pylist()
    return found
