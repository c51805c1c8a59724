"""Issue 16: options of the runner named pass through, truly unknown ones do not; --setup_file stages voxbeam."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import tarfile
import time

import pytest

from tests.jobs.helpers import EXAMPLES, ROOT, assert_usage_error, rows, voxbeam


def test_an_option_the_named_runner_registers_is_accepted_and_reaches_it(server, tmp_path):
    marker = tmp_path / "marker"
    out = str(tmp_path / "out")
    proc = voxbeam(
        "transcribe", os.path.join(EXAMPLES, "jfk.wav"), "--output", out, "--endpoint", server.url,
        "--runner", "tests.jobs.custom_runner.CustomRunner", "--custom_marker", str(marker),
        env={"VOXNEXUS_API_KEY": server.api_key},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert marker.read_text() == "ran"
    assert "--setup_file" in proc.stderr  # a runner of unknown workers gets the note on staging voxbeam
    assert len(rows(out, "transcripts")) == 1


def test_a_flag_nobody_knows_is_refused_in_one_line(tmp_path):
    line = assert_usage_error(
        voxbeam("transcribe", EXAMPLES, "--output", str(tmp_path), "--runner", "DirectRunner", "--custom_marker", "x"),
        "--custom_marker",
        "unknown flag",
    )
    assert "Beam" in line


@pytest.fixture
def job_service(tmp_path):
    """Beam's own local job service (the portable runner's job server), staging into a folder we can read."""
    staging = tmp_path / "staging"
    port_file = tmp_path / "port"
    proc = subprocess.Popen(
        [sys.executable, "-m", "apache_beam.runners.portability.local_job_service_main",
         "--staging_dir", str(staging), "--port_file", str(port_file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the job service did not start"
            time.sleep(0.1)
        yield f"localhost:{port_file.read_text()}", staging
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.timeout(400)
def test_setup_file_stages_voxbeam_for_a_portable_runners_workers(server, job_service, tmp_path):
    """The portable runner builds voxbeam's sdist from --setup_file and stages it where workers install from."""
    endpoint, staging = job_service
    out = str(tmp_path / "out")
    proc = voxbeam(
        "transcribe", EXAMPLES, "--output", out, "--endpoint", server.url,
        "--runner", "PortableRunner", "--job_endpoint", endpoint, "--environment_type", "LOOPBACK",
        "--setup_file", os.path.join(ROOT, "setup.py"),
        env={"VOXNEXUS_API_KEY": server.api_key}, timeout=380,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "note:" not in proc.stderr
    assert len(rows(out, "transcripts")) == 5
    (sdist,) = glob.glob(str(staging / "*" / "*workflow.tar.gz"))
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    for module in ("voxbeam/jobs/runner.py", "voxbeam/beam/_dofns.py", "voxbeam/client/session.py", "setup.py"):
        assert module in names, module


def test_sessions_per_worker_default_from_the_services_advertised_capacity(server, tmp_path):
    """No --sessions_per_worker: the job reads what keeps the fleet busy from /healthz and says how it sized itself."""
    busy = server.health()["bulk_sessions"]
    out = str(tmp_path / "out")
    proc = voxbeam(
        "transcribe", os.path.join(EXAMPLES, "jfk.wav"), "--output", out, "--endpoint", server.url,
        env={"VOXNEXUS_API_KEY": server.api_key},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    expected = max(1, int(busy * 0.8))
    said = f"{expected} sessions per worker = max(1, floor({busy} bulk sessions that keep the fleet busy x 0.8 / 1"
    assert said in proc.stdout, proc.stdout
    explicit = voxbeam(
        "transcribe", os.path.join(EXAMPLES, "jfk.wav"), "--output", out, "--endpoint", server.url,
        "--sessions_per_worker", "3", env={"VOXNEXUS_API_KEY": server.api_key},
    )  # fmt: skip
    assert explicit.returncode == 0 and "3 sessions per worker (--sessions_per_worker)" in explicit.stdout
