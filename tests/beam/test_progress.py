"""Progress: worker processes report to the job's tracker over a local socket; the line says when the
service is unavailable and when the next probe goes."""

from __future__ import annotations

import multiprocessing
import os
import time
import uuid

import pytest

from voxbeam.beam import progress
from voxbeam.client import CircuitPolicy, ClientConfig, RetryPolicy, SyncSpeechClient
from voxbeam.errors import RetriesExhaustedError


def _report(key: str, n: int, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    tracker = progress.lookup(key)
    if tracker is None:
        queue.put("no tracker")
        return
    for i in range(n):
        tracker.add(ok=i % 5 != 0, audio_ms=1000, characters=3)
    queue.put("ok")


def _in_children(key: str, counts: list[int]) -> list[str]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_report, args=(key, n, queue)) for n in counts]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    return sorted(queue.get(timeout=10) for _ in procs)


def test_worker_processes_report_to_the_jobs_tracker() -> None:
    key = f"test-{uuid.uuid4().hex}"
    tracker = progress.register(key, total=250)
    try:
        assert os.path.exists(progress.socket_path(key))
        assert _in_children(key, [100, 150]) == ["ok", "ok"]
        line = tracker.line()  # reads what is queued before it counts: no sleep needed
        assert line.startswith("250/250 done, 50 failed, 0.069 h audio"), line
        assert tracker.characters == 750
    finally:
        progress.unregister(key)
    assert not os.path.exists(progress.socket_path(key))
    assert progress.lookup(key) is None


def test_in_process_lookup_is_the_tracker_itself() -> None:
    key = f"test-{uuid.uuid4().hex}"
    tracker = progress.register(key, total=3)
    try:
        assert progress.lookup(key) is tracker
        tracker.add(ok=True, audio_ms=500)
        assert tracker.line().startswith("1/3 done")
    finally:
        progress.unregister(key)


def test_without_a_job_nothing_is_found_and_late_reports_are_dropped() -> None:
    key = f"test-{uuid.uuid4().hex}"
    # No job registered this key on this machine (as on a remote runner's worker): nothing to report to.
    assert _in_children(key, [3]) == ["no tracker"]
    # A stand-in whose job has ended: its updates are dropped, never raised, never waited on.
    progress.register(key, total=1)
    path = progress.socket_path(key)
    stand_in = progress.Progress(total=0, _send=progress._Sender(path))
    progress.unregister(key)
    for _ in range(50):
        stand_in.add(ok=True)
    assert stand_in.done == 50
    sender = stand_in._send
    assert isinstance(sender, progress._Sender) and sender.dropped == 50


def test_registering_a_key_again_starts_afresh() -> None:
    key = f"test-{uuid.uuid4().hex}"
    first = progress.register(key, total=5)
    second = progress.register(key, total=7)
    try:
        assert first is not second and progress.lookup(key) is second
        stand_in = progress.Progress(total=0, _send=progress._Sender(progress.socket_path(key)))
        stand_in.add(ok=True)
        stand_in.add(ok=False)
        assert second.line().startswith("2/7 done, 1 failed") and first.done == 0
    finally:
        progress.unregister(key)


def test_the_progress_line_shows_an_unavailable_service():
    config = ClientConfig(
        endpoints=("ws://127.0.0.1:9",),  # nothing listens on the discard port
        api_key="k",
        retry=RetryPolicy(budget=3.0, base_delay=0.05),
        circuit=CircuitPolicy(failures=1, base_delay=1.0, max_delay=1.0),
    )
    tracker = progress.register("test-unavailable", 1)
    try:
        with SyncSpeechClient(config) as client:
            tracker.watch_service(client.retry_in)
            tracker.watch_service(client.retry_in)  # a second DoFn on the same client adds nothing
            assert "unavailable" not in tracker.line()
            future = client.synthesize_async("Hello.")
            lines = []
            deadline = time.monotonic() + 10
            while not future.done() and time.monotonic() < deadline:
                lines.append(tracker.line())
                time.sleep(0.1)
            with pytest.raises(RetriesExhaustedError):
                future.result(timeout=10)
            assert client.retry_in() is not None  # still down
    finally:
        progress.unregister("test-unavailable")
    shown = [line for line in lines if "service unavailable, retrying in" in line]
    assert shown, lines[-3:]
    assert all("ETA" not in line for line in shown)
