"""The local progress line says when the service is unavailable and when the next probe goes."""

from __future__ import annotations

import time

import pytest

from voxbeam.beam import progress
from voxbeam.client import CircuitPolicy, ClientConfig, RetryPolicy, SyncSpeechClient
from voxbeam.errors import RetriesExhaustedError


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
