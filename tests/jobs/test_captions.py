"""Issue 18, item 8: captions need word timings (refused before the run without them), live per run, are reported."""

from __future__ import annotations

import glob
import os

from tests.jobs.helpers import EXAMPLES, assert_usage_error, voxbeam


def test_captions_without_timestamps_are_refused_before_the_run(tmp_path):
    out = tmp_path / "out"
    line = assert_usage_error(
        voxbeam("transcribe", EXAMPLES, "--output", str(out), "--timestamps", "false", "--captions", "srt"),
        "--captions",
    )
    assert "--timestamps" in line
    assert not out.exists() or not any(out.iterdir())


def test_captions_are_written_per_run_and_listed_in_the_summary(server, tmp_path):
    out = tmp_path / "out"
    args = ["transcribe", os.path.join(EXAMPLES, "jfk.wav"), "--output", str(out), "--captions", "srt,vtt",
            "--endpoint", server.url]  # fmt: skip
    env = {"VOXNEXUS_API_KEY": server.api_key}
    first, second = voxbeam(*args, env=env), voxbeam(*args, env=env)
    assert first.returncode == 0 and second.returncode == 0, (first.stderr, second.stderr)
    runs = sorted(glob.glob(str(out / "captions" / "run=*")))
    assert len(runs) == 2, runs
    for run, proc in zip(runs, (first, second), strict=True):
        files = sorted(os.listdir(run))
        assert [f.rsplit(".", 1)[1] for f in files] == ["srt", "vtt"], files
        assert "-->" in open(os.path.join(run, files[0])).read()
        assert run in proc.stdout and "captions" in proc.stdout, proc.stdout
