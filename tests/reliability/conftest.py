"""Shared pieces of the reliability suite: short speech, a fault proxy on its own loop, server stats.

The suite runs against real servers (the session-wide ``server`` fixture, or a dedicated
``LocalServer`` when a test kills, caps or floods one) and real pipelines on the FnApiRunner.
"""

from __future__ import annotations

import contextlib
import glob
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pyarrow.parquet as pq
import pytest

from tests import speech
from tests.client.proxy import FaultProxy
from voxbeam import audio
from voxbeam.client.sync import BackgroundLoop

RATE = 16000
# Short sentences: about a second of speech each, so 200 files stay a few minutes of audio.
SHORT_SENTENCES = [
    "Thank you very much.",
    "Please call me.",
    "The weather is nice today.",
    "I would like coffee.",
    "She plays the piano.",
    "Our team won the game.",
]
# One word each (about 0.45 s of audio) for the 200-file pipelines: recognition costs the
# server 0.4-0.8 CPU-seconds per second of audio, and a fixed cost per file besides.
TINY_SENTENCES = ["Yes.", "Okay.", "Hello.", "Monday.", "See you soon.", "Thank you."]


@pytest.fixture(scope="session")
def short_clips(server) -> list[bytes]:
    """PCM s16le 16 kHz of each of ``SHORT_SENTENCES``, rendered once by the server's own TTS."""
    return speech.render(server, SHORT_SENTENCES, rate=RATE)


@pytest.fixture(scope="session")
def short_wavs(short_clips) -> list[bytes]:
    return [audio.encode(pcm, RATE, "wav") for pcm in short_clips]


@pytest.fixture(scope="session")
def tiny_wavs(server) -> list[bytes]:
    """WAV files of ``TINY_SENTENCES`` (16 kHz), rendered once by the server's own TTS."""
    return [audio.encode(pcm, RATE, "wav") for pcm in speech.render(server, TINY_SENTENCES, rate=RATE)]


@pytest.fixture(autouse=True)
def _close_pooled_sessions() -> Iterator[None]:
    """After each test, close the sessions its pipelines pooled (as a local job run does).

    Otherwise they stay open into later tests and a stopping server waits for them.
    """
    yield
    from voxbeam.beam._workers import close_worker_clients

    close_worker_clients()


@contextlib.contextmanager
def dedicated_server(**kw: Any) -> Iterator[Any]:
    """A LocalServer of the test's own (one that it may kill, cap or flood).

    Pooled client sessions outlive the pipelines that opened them, so a stop would wait the
    default 10 s grace for them: these servers get 1 s.
    """
    from voxbeam.server.launcher import LocalServer

    kw["extra_args"] = ["--shutdown_grace", "1", *kw.get("extra_args", ())]
    srv = LocalServer(**kw)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


class ThreadedProxy:
    """A ``FaultProxy`` living on a background event loop, for synchronous code (Beam pipelines)."""

    def __init__(self, upstream_port: int) -> None:
        self.loop = BackgroundLoop(name="fault-proxy")
        self.proxy: FaultProxy = self.loop.run(FaultProxy(upstream_port).start(), timeout=10)

    @property
    def url(self) -> str:
        return self.proxy.url

    def close(self) -> None:
        try:
            self.loop.run(self.proxy.close(), timeout=30)
        finally:
            self.loop.close()

    def __enter__(self) -> ThreadedProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def process_tree(pid: int) -> list[psutil.Process]:
    proc = psutil.Process(pid)
    return [proc, *proc.children(recursive=True)]


def tree_rss(pid: int) -> int:
    """Resident memory of a process and all its children, in bytes."""
    total = 0
    for p in process_tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total


def read_parquet_rows(pattern: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for path in sorted(glob.glob(pattern)):
        with open(path, "rb") as fh:
            rows += pq.read_table(io.BytesIO(fh.read())).to_pylist()
    return rows


def dead_letter_key(row: dict[str, Any]) -> str:
    """The id (synthesis) or URI (transcription) a dead-letter row stands for."""
    record = json.loads(row["input"])
    if isinstance(record, dict):
        return str(record.get("id") or record.get("uri"))
    return str(record)


def files_under(root: str | Path) -> list[str]:
    return sorted(str(p) for p in Path(root).rglob("*") if p.is_file())


def counter_value(result: Any, name: str, namespace: str = "voxbeam") -> int:
    """The committed value of a Beam counter (summed over steps) from a finished pipeline."""
    from apache_beam.metrics.metric import MetricsFilter

    counters = result.metrics().query(MetricsFilter().with_namespace(namespace).with_name(name))["counters"]
    return int(sum(c.committed or 0 for c in counters))


def env_seconds(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default
