"""Prometheus metrics of one server process, served at ``GET /metrics`` (text format).

The server calls the methods of ``ServerMetrics`` where things happen (a handful of hook lines
in app.py, session.py, stt.py and tts.py, each marked ``# [metrics]``); nothing here knows an
engine, a worker process or the protocol's message shapes. Collectors live on a private
``CollectorRegistry``, so two servers in one process (tests) never share counters.

``/metrics`` is unauthenticated, like ``/healthz``: Prometheus and Kubernetes reach pods
directly, the figures are aggregates (no keys, no key labels, no request ids, no text), and a
separate port would be one more thing to open in every NetworkPolicy and container spec. Where
the service port is exposed beyond the cluster, block ``/metrics`` at the ingress.

The metrics, all prefixed ``voxbeam_``, are listed in docs/fleet.md (step 3).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Hashable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

METRICS_PATH = "/metrics"
SERVICES = ("stt", "tts")
REFUSALS = ("busy", "key_limit", "load", "shutting_down", "unauthorized")
# Engine requests run from a few milliseconds (a 100 ms audio chunk) to seconds (an utterance).
ENGINE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def replica_id() -> str:
    """This server process among its peers: ``host/pid`` (in Kubernetes the host name is the pod's).

    ``/healthz`` carries it as ``replica``, so a client asking one address (a Service) several
    times can tell how many replicas answered (``voxbeam.client.sizing``).
    """
    return f"{socket.gethostname()}/{os.getpid()}"


class ServerMetrics:
    """The server's Prometheus collectors and the calls that feed them (event loop only)."""

    def __init__(self, capacity: int, *, process: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self._opened = Counter("voxbeam_sessions_opened", "Sessions admitted.", ["service"], registry=reg)
        self._closed = Counter("voxbeam_sessions_closed", "Sessions ended, for any reason.", ["service"], registry=reg)
        self._open = Gauge("voxbeam_sessions_open", "Sessions open now.", ["service"], registry=reg)
        self._refused = Counter(
            "voxbeam_sessions_refused",
            "Connections refused before a session began (busy, key_limit, shutting_down, unauthorized).",
            ["reason"],
            registry=reg,
        )
        self._capacity = Gauge(
            "voxbeam_session_capacity", "Sessions this replica admits before SERVER_BUSY.", registry=reg
        )
        self._audio = Counter("voxbeam_audio_seconds", "STT audio received, in seconds of audio.", registry=reg)
        self._chars = Counter("voxbeam_characters", "TTS characters accepted into utterances.", registry=reg)
        self._engine = Histogram(
            "voxbeam_engine_seconds",
            "Engine service time per request: from when its worker could start on it to its reply.",
            ["op"],
            buckets=ENGINE_BUCKETS,
            registry=reg,
        )
        self._queue = Gauge(
            "voxbeam_engine_queue_depth", "Engine requests sent to workers and not yet answered.", registry=reg
        )
        self._backlog = Gauge(
            "voxbeam_decode_backlog_seconds",
            "Bulk audio streams have cut off (Deferred) and workers have not finished decoding, in seconds.",
            registry=reg,
        )
        self._backlog_ms = 0
        self._errors = Counter("voxbeam_errors", "Error messages sent to clients, by code.", ["code"], registry=reg)
        self._worker_memory = Gauge(
            "voxbeam_worker_memory_bytes", "Resident memory of each engine worker process.", ["worker"], registry=reg
        )
        self._replaced = Counter(
            "voxbeam_worker_replacements",
            "Engine worker processes started anew, by reason: memory (over its ceiling), died.",
            ["reason"],
            registry=reg,
        )
        for reason in ("memory", "died"):
            self._replaced.labels(reason)
        if process:
            ProcessCollector(registry=reg)  # the front process's CPU, memory and open files
        self._capacity.set(capacity)
        # Zero-valued series from the start, so rate() and absent() behave before the first event.
        for service in SERVICES:
            self._opened.labels(service)
            self._closed.labels(service)
            self._open.labels(service)
        for reason in REFUSALS:
            self._refused.labels(reason)
        self._lane_free: dict[Hashable, float] = {}

    # -- what the server calls ----------------------------------------------------------

    def session_opened(self, service: str) -> None:
        self._opened.labels(service).inc()
        self._open.labels(service).inc()

    def session_closed(self, service: str) -> None:
        self._closed.labels(service).inc()
        self._open.labels(service).dec()

    def session_refused(self, reason: str) -> None:
        self._refused.labels(reason).inc()

    def audio_seconds(self, seconds: float) -> None:
        self._audio.inc(seconds)

    def characters(self, n: int) -> None:
        self._chars.inc(n)

    def engine_time(self, op: str, seconds: float) -> None:
        self._engine.labels(op).observe(max(0.0, seconds))

    def decode_backlog(self, ms: int) -> None:
        """Deferred decoding sent (positive) or finished (negative), in whole ms: idle reads exactly 0."""
        self._backlog_ms += ms
        self._backlog.set(self._backlog_ms / 1000)

    def error(self, code: str) -> None:
        self._errors.labels(code).inc()

    def worker_memory(self, slot: int, resident: int) -> None:
        self._worker_memory.labels(str(slot)).set(resident)

    def worker_replaced(self, reason: str) -> None:
        self._replaced.labels(reason).inc()

    def engine_call(self, op: str, fut: asyncio.Future[Any], lane: Hashable | None = None) -> asyncio.Future[Any]:
        """Count ``fut`` (an engine request just sent) in the queue depth and time it; returns ``fut``.

        ``lane`` names the worker that runs the request when that worker runs its requests one at
        a time, in order: the request's service time is then from the later of its sending and the
        previous reply on that lane, to its own reply, so time spent queued behind other sessions'
        requests is not counted as engine time. Without a lane the round trip is observed.
        """
        sent = time.monotonic()
        self._queue.inc()

        def done(_: asyncio.Future[Any]) -> None:
            now = time.monotonic()
            self._queue.dec()
            start = sent
            if lane is not None:
                start = max(sent, self._lane_free.get(lane, 0.0))
                self._lane_free[lane] = now
            self.engine_time(op, now - start)

        fut.add_done_callback(done)
        return fut

    # -- HTTP ---------------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)

    def http_body(self) -> tuple[bytes, str]:
        """``GET /metrics``: the body and its content type (Prometheus text format)."""
        return self.exposition(), CONTENT_TYPE_LATEST
