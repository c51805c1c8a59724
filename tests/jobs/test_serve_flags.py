"""Issue 18, item 4 for `voxbeam serve`: underscore flags with hyphen aliases, defaults in --help, a quiet stdout."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

from tests.jobs.helpers import ROOT, voxbeam
from voxbeam.server.cli import config_from_args


def test_serve_spells_flags_with_underscores_keeps_hyphen_aliases_and_shows_defaults():
    proc = voxbeam("serve", "--help", timeout=60)
    assert proc.returncode == 0, proc.stderr
    options = re.findall(r"^  (--[a-z_]+)", proc.stdout, re.M)
    assert "--max_sessions" in options and "--api_key" in options and "--no_auth" in options
    assert not [o for o in options if "-" in o[2:]], options  # the hyphenated spellings are aliases, not shown
    help_text = " ".join(proc.stdout.split())
    for option in options:
        if option != "--help":
            assert re.search(re.escape(option) + r"\b.*?\(default: ", help_text), f"{option} shows no default"

    hyphens = config_from_args(["--no-auth", "--max-sessions", "3", "--idle-timeout", "5", "--log-level", "debug"])
    underscores = config_from_args(["--no_auth", "--max_sessions", "3", "--idle_timeout", "5", "--log_level", "debug"])
    assert hyphens == underscores and hyphens.max_sessions == 3 and hyphens.no_auth


def test_serve_keeps_stdout_free_of_the_ready_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOXNEXUS_", "VOXBEAM_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "voxbeam", "serve", "--port", "0", "--no_auth", "--workers", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 120
        for line in proc.stderr:
            if "listening on ws://" in line or time.monotonic() > deadline:
                break
        assert "listening on ws://" in line, line
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert out == ""
