"""Issue 18, item 1: Ctrl-C stops a run cleanly; a second Ctrl-C quits at once; the embedded server always stops.

The job runs as a newcomer runs it (no --endpoint: the embedded server) on more audio than it
gets through before the signal, and is sent SIGINT as a terminal's Ctrl-C would.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import signal
import subprocess
import sys
import time

import psutil
import pytest

from tests import speech
from tests.jobs.helpers import ROOT, rows, voxbeam
from voxbeam import audio

# The job reports progress every 5 s when stderr is not a terminal, and the signal goes after its
# first report: the run must still be far from done then (36 files: ~20 s of work on two cores).
FILES = 36
INTERRUPTED = re.compile(r"^interrupted: (\d+) done, (\d+) not started; rerun with --skip_existing true to continue$")


@pytest.fixture(scope="module")
def long_inputs(server, tmp_path_factory):
    """FILES WAV files of a few seconds of speech each: more than a run does before its first progress report."""
    clips = speech.render(server, speech.SENTENCES)
    folder = tmp_path_factory.mktemp("long-inputs")
    for i in range(FILES):
        pcm = b"".join(clips[(i + k) % len(clips)] + speech.silence(0.4) for k in range(2))
        (folder / f"talk{i:02d}.wav").write_bytes(audio.encode(pcm, 16000, "wav"))
    return str(folder)


def start_job(inputs: str, out: str) -> tuple[subprocess.Popen[str], list[str]]:
    """The job with the embedded server, once it has reported progress (records are being transcribed)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "voxbeam", "transcribe", inputs, "--output", out, "--sessions_per_worker", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stderr is not None
    seen: list[str] = []
    deadline = time.monotonic() + 240
    for line in proc.stderr:
        seen.append(line)
        if re.match(r"^[1-9]\d*/\d+ done", line) or time.monotonic() > deadline:
            break
    assert any(" done" in line for line in seen), "".join(seen)
    return proc, seen


def descendants(proc: subprocess.Popen[str]) -> list[psutil.Process]:
    return psutil.Process(proc.pid).children(recursive=True)


@pytest.fixture
def reap():
    """Kills what a failed test leaves running: the job and the processes it started."""
    started: list[tuple[subprocess.Popen[str], list[psutil.Process]]] = []
    yield started.append
    for proc, children in started:
        for p in [psutil.Process(proc.pid), *children] if proc.poll() is None else children:
            with contextlib.suppress(psutil.Error):
                p.kill()
        proc.wait(30)


def assert_gone(processes: list[psutil.Process]) -> None:
    gone, alive = psutil.wait_procs(processes, timeout=10)
    assert not alive, f"still running after the job exited: {alive}"


def temporaries(out: str) -> list[str]:
    return [p for p in glob.glob(os.path.join(out, "**", "*"), recursive=True) if "beam-temp" in p or ".tmp-" in p]


@pytest.mark.timeout(600)
def test_ctrl_c_finishes_what_is_in_flight_writes_it_and_says_how_to_continue(server, long_inputs, tmp_path, reap):
    out = str(tmp_path / "out")
    proc, seen = start_job(long_inputs, out)
    server_processes = descendants(proc)
    reap((proc, server_processes))
    assert server_processes, "no embedded server"
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)  # one Ctrl-C delivered twice, as timeout(1) does: still the first press
    sent = time.monotonic()
    stdout, stderr = proc.communicate(timeout=120)
    took = time.monotonic() - sent
    stderr = "".join(seen) + stderr

    assert proc.returncode == 130, (proc.returncode, stdout, stderr[-3000:])
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.startswith("interrupted")]
    assert len(lines) == 1, stderr[-3000:]
    said = INTERRUPTED.match(lines[0])
    assert said, lines[0]
    done, not_started = map(int, said.groups())
    assert done >= 1 and not_started >= 1 and done + not_started == FILES, lines[0]
    assert took < 60, f"stopping took {took:.0f} s"  # the rest of the run would take minutes
    assert not temporaries(out), temporaries(out)
    assert len(rows(out, "transcripts")) + len(rows(out, "dead_letters")) == done  # what was done is written
    assert_gone(server_processes)

    again = voxbeam(
        "transcribe", long_inputs, "--output", out, "--skip_existing", "true", "--endpoint", server.url,
        env={"VOXNEXUS_API_KEY": server.api_key}, timeout=400,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    transcribed = {r["source_uri"] for r in rows(out, "transcripts")}
    assert len(transcribed) == FILES, len(transcribed)


@pytest.mark.timeout(600)
def test_a_second_ctrl_c_quits_at_once_and_still_stops_the_server(long_inputs, tmp_path, reap):
    out = str(tmp_path / "out")
    proc, seen = start_job(long_inputs, out)
    server_processes = descendants(proc)
    reap((proc, server_processes))
    proc.send_signal(signal.SIGINT)
    time.sleep(0.6)  # a second press, not the same one delivered twice (those are 0.25 s apart at most)
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    _, stderr = proc.communicate(timeout=60)
    took = time.monotonic() - sent

    assert proc.returncode == 130, (proc.returncode, stderr[-3000:])
    assert took < 60, f"quitting took {took:.1f} s"  # a guard against a hang: which way it quit is checked next
    assert "Traceback" not in stderr, stderr[-3000:]
    # The second press took the quick way out, whether it came while records were still in flight or while
    # the embedded server was stopping after the first press's clean stop: it says which, and that is true.
    quit_lines = [line for line in stderr.splitlines() if line.startswith("interrupted again: quit at once")]
    assert len(quit_lines) == 1, stderr[-2000:]
    done = int(re.search(r"with (\d+) done", quit_lines[0]).group(1))
    if "without writing" in quit_lines[0]:
        assert not rows(out, "transcripts"), quit_lines[0]
    else:
        assert "their results are written" in quit_lines[0], quit_lines[0]
        assert len(rows(out, "transcripts")) + len(rows(out, "dead_letters")) == done, quit_lines[0]
    assert_gone(server_processes)
    assert not temporaries(out), temporaries(out)
