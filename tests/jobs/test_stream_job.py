"""Issue 26: `voxbeam transcribe --input_subscription`, end to end, on the Pub/Sub emulator and gcp-storage-emulator.

The job runs as a command against the shared server; notifications are published as Cloud Storage
sends them; the job is stopped with SIGINT, as a terminal's Ctrl-C.
"""

from __future__ import annotations

import glob
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable

import pyarrow.parquet as pq
import pytest

from tests import speech
from tests.jobs.helpers import ROOT, voxbeam
from tests.jobs.test_interrupt import reap  # noqa: F401 - a fixture
from tests.pubsub import notification, topic_and_subscription
from voxbeam import audio

WINDOW_S = 4


def stream_rows(out: str, kind: str) -> list[tuple[str, dict]]:
    """(window partition, row) of every row a stream wrote under ``<out>/stream/<kind>/``."""
    prefix = os.path.join(out, "stream", kind)
    found = []
    for f in sorted(glob.glob(os.path.join(prefix, "**", "*.parquet"), recursive=True)):
        found += [(os.path.dirname(os.path.relpath(f, prefix)), r) for r in pq.read_table(f).to_pylist()]
    return found


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the job exited ({proc.returncode}): {proc.communicate()}"
        assert time.monotonic() < deadline, "timed out waiting for the stream's outputs"
        time.sleep(0.5)


def start_stream(server, subscription: str, out: str, *extra: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "voxbeam", "transcribe", "--input_subscription", subscription, "--output", out,
            "--endpoint", server.url, "--window_seconds", str(WINDOW_S), *extra]  # fmt: skip
    env = {**os.environ, "VOXNEXUS_API_KEY": server.api_key}
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)


def stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, (proc.returncode, stdout, stderr[-3000:])
    assert "Traceback" not in stderr, stderr[-3000:]
    return stdout, stderr


@pytest.fixture(scope="module")
def talk(server):
    pad = speech.silence(0.3)
    return [audio.encode(pad + c + pad, 16000, "wav") for c in speech.render(server, speech.SENTENCES[:4])]


def upload(client, bucket: str, name: str, data: bytes) -> str:
    blob = client.bucket(bucket).blob(name)
    blob.upload_from_string(data, content_type="audio/wav")
    return str(blob.generation)


@pytest.mark.timeout(300)
def test_each_object_once_whatever_is_published_and_ctrl_c_ends_it(
    server,
    talk,
    pubsub_emulator,
    gcs_emulator,
    bucket,
    tmp_path,
    reap,  # noqa: F811
):
    topic, subscription, publisher = topic_and_subscription(f"e2e-{uuid.uuid4().hex[:8]}")
    gen = {name: upload(gcs_emulator, bucket, name, talk[i]) for i, name in enumerate(["a.wav", "b.wav", "c.wav"])}
    gen["notes.wav"] = upload(gcs_emulator, bucket, "notes.wav", b"meeting notes, not audio\n" * 40)
    out = str(tmp_path / "out")
    # With --redact_audio (issue 30), so the stream's bleeped copies and their manifest are checked too.
    proc = start_stream(server, subscription, out, "--redact", "all", "--redact_audio", "tone")
    reap((proc, []))

    def publish(name: str, event: str = "OBJECT_FINALIZE") -> None:
        data, attributes = notification(bucket, name, gen[name], event)
        publisher.publish(topic, data, **attributes).result()

    for name in ("a.wav", "a.wav", "notes.wav"):  # a's notification twice, as Pub/Sub may deliver it
        publish(name)
    publish("b.wav", "OBJECT_DELETE")
    publish("b.wav")
    wait_for(lambda: len(stream_rows(out, "transcripts")) >= 2 and stream_rows(out, "dead_letters"), proc)
    time.sleep(WINDOW_S)  # the next window
    publish("c.wav")
    wait_for(lambda: len(stream_rows(out, "transcripts")) >= 3, proc)
    stdout, stderr = stop(proc)

    rows = stream_rows(out, "transcripts")
    assert sorted(r["source_uri"] for _, r in rows) == [f"gs://{bucket}/{n}" for n in ("a.wav", "b.wav", "c.wav")]
    assert len({window for window, _ in rows}) >= 2, rows  # rows in more than one window
    for _, r in rows:
        sentence = ["a.wav", "b.wav", "c.wav"].index(r["source_uri"].rsplit("/", 1)[1])
        assert speech.wer([speech.SENTENCES[sentence]], [r["text"]]) < 0.2, r["text"]
    dead = [r for _, r in stream_rows(out, "dead_letters")]
    assert len(dead) == 1 and f"gs://{bucket}/notes.wav" in dead[0]["input"], dead
    assert "redeliveries dropped: 1" in stdout and "ignored (OBJECT_DELETE): 1" in stdout, stdout
    assert "stopped: every record pulled was done and written" in stderr, stderr[-2000:]
    assert re.search(r"\d+ done, \d+ failed, \d+ in flight", stderr), stderr[-2000:]  # the status line
    wall = re.search(r"wall time: ([\d.]+) s", stdout)
    assert wall and float(wall.group(1)) > WINDOW_S, stdout  # the stream ran for windows, not no time
    # One copy per transcribed object, named by its source; these sentences hold no personal data, so each copy
    # is the object's own bytes, and the manifest says so.
    copies = {r["source_uri"]: r for _, r in stream_rows(out, "redacted_audio_manifest")}
    assert sorted(copies) == sorted(r["source_uri"] for _, r in rows), copies
    for uri, row in copies.items():
        name = uri.rsplit("/", 1)[1]
        assert row["mode"] == "copy" and row["source_generation_or_mtime"] == gen[name], row
        with open(row["uri"], "rb") as f:
            assert f.read() == talk[["a.wav", "b.wav", "c.wav"].index(name)], row["uri"]


@pytest.mark.timeout(420)
def test_what_a_stop_leaves_undone_is_replayed_and_nothing_is_lost(
    server,
    talk,
    pubsub_emulator,
    gcs_emulator,
    bucket,
    tmp_path,
    reap,  # noqa: F811
):
    topic, subscription, publisher = topic_and_subscription(f"replay-{uuid.uuid4().hex[:8]}")
    names = [f"call{i:02d}.wav" for i in range(12)]
    messages = [
        notification(bucket, name, upload(gcs_emulator, bucket, name, talk[i % len(talk)]))
        for i, name in enumerate(names)
    ]
    # Four in one window, the rest in a later one. The first window is written once the stream has pulled
    # past it (the read's watermark follows the publish times it pulls), so the later window's records are
    # held or in flight when the first rows appear, and the stop below finds work undone. With all twelve in
    # one window, its rows would wait for the whole backlog, and nothing would be left in flight.
    for i, (data, attributes) in enumerate(messages):
        if i == 4:
            time.sleep(WINDOW_S + 0.5)
        publisher.publish(topic, data, **attributes).result()
    out = str(tmp_path / "out")
    # One session: the stream holds 4 records at a time and pulls no more.
    proc = start_stream(server, subscription, out, "--sessions_per_worker", "1")
    reap((proc, []))
    wait_for(lambda: bool(stream_rows(out, "transcripts")), proc)
    stdout, _ = stop(proc)
    pulled = int(re.search(r"stream: (\d+) messages pulled", stdout).group(1))
    done = {r["source_uri"] for _, r in stream_rows(out, "transcripts")}
    interrupted = [r for _, r in stream_rows(out, "dead_letters") if r["error_code"] == "INTERRUPTED"]
    assert len(done) + len(interrupted) == pulled and pulled < len(names), (done, interrupted, pulled, stdout)

    replay_out = str(tmp_path / "replay")
    replayed = voxbeam(
        "transcribe", "--input", os.path.join(out, "stream", "dead_letters", ""), "--output", replay_out,
        "--endpoint", server.url, env={"VOXNEXUS_API_KEY": server.api_key},
    )  # fmt: skip
    assert replayed.returncode == 0, replayed.stderr[-3000:]
    again = {
        r["source_uri"]
        for f in glob.glob(os.path.join(replay_out, "transcripts", "run=*", "*.parquet"))
        for r in pq.read_table(f).to_pylist()
    }
    assert interrupted and again == {json.loads(r["input"])["uri"] for r in interrupted}

    # What was never pulled is still in the subscription: a second stream takes it.
    second_out = str(tmp_path / "second")
    proc = start_stream(server, subscription, second_out)
    reap((proc, []))
    wait_for(lambda: len(stream_rows(second_out, "transcripts")) >= len(names) - pulled, proc)
    stop(proc)
    rest = [r["source_uri"] for _, r in stream_rows(second_out, "transcripts")]
    everything = sorted([*done, *again, *rest])
    assert everything == sorted(f"gs://{bucket}/{n}" for n in names), everything  # each exactly once
