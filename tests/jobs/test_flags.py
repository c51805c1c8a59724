"""Issue 18, item 4: help under the right name, fast, with every default; one style of flags; one-line errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.jobs.helpers import EXAMPLES, ROOT, assert_usage_error, voxbeam


@pytest.mark.parametrize("kind", ["transcribe", "synthesize"])
def test_help_names_the_command_shows_every_default_and_imports_no_beam(kind):
    # -X importtime lists every module imported: Beam must not be among them before the flags are parsed.
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "voxbeam", kind, "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(f"usage: voxbeam {kind} INPUT --output OUTPUT"), proc.stdout[:200]
    assert "apache_beam" not in proc.stderr
    options = [o for o in re.findall(r"^  (--[a-z_]+)", proc.stdout, re.M) if o != "--help"]
    assert {"--input", "--output", "--endpoint", "--api_key", "--sessions_per_worker"} <= set(options)
    help_text = " ".join(proc.stdout.split())  # argparse wraps lines
    for option in options:
        entry = re.search(re.escape(option) + r"\b.*?\((default: [^)]*|required)\)", help_text)
        assert entry, f"{option} has no default in --help"
    assert help_text.count("(default:") + help_text.count("(required)") == len(options)


def test_pipeline_main_help_uses_the_script_name():
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "pipelines", "transcribe_audio.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and proc.stdout.startswith("usage: transcribe_audio.py INPUT"), proc.stdout[:200]


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--sessions_per_worker", "abc"], ["--sessions_per_worker", "'abc' is not a whole number"]),
        (["--max_attempts", "0"], ["--max_attempts", "at least 1"]),
        (["--timestamps", "maybe"], ["--timestamps", "maybe"]),
        (["--num_workers", "abc"], ["--num_workers", "abc"]),  # a Beam option's bad value, also one line
        (["--sample_rate", "16000"], ["--sample_rate", "voxbeam synthesize"]),  # the other job's flag
        (["-x"], ["-x", "--name"]),
    ],
)
def test_a_bad_flag_value_is_one_line_not_the_usage_block(tmp_path, args, needles):
    assert_usage_error(voxbeam("transcribe", EXAMPLES, "--output", str(tmp_path / "o"), *args), *needles)
