"""Client configuration as small frozen objects (httpx-style: Timeouts, RetryPolicy, ClientConfig)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from voxbeam import protocol
from voxbeam.protocol import API_KEY_ENV

__all__ = ["API_KEY_ENV", "DEFAULT_ENDPOINT", "CircuitPolicy", "ClientConfig", "RetryPolicy", "Timeouts"]

DEFAULT_ENDPOINT = "wss://api.voxnexus.ai"


@dataclass(frozen=True)
class Timeouts:
    """Deadlines in seconds; every wait in the client is bounded by one of these.

    connect: TCP + TLS + WebSocket handshake.
    ready: from ``init`` sent to ``ready`` received.
    result: longest silence tolerated while a result is owed (no server message and no audio
        accepted by the socket), and longest wait for the socket to accept one frame.
    record: longest one attempt may take once it holds a session: the whole exchange for a
        short record, one segment for audio long enough to go in segments (so a long file is not
        cut off for its length). An attempt past it is abandoned and counts as a transient
        failure: whether another attempt follows is up to ``RetryPolicy.budget``, not this.
    pool: longest wait for a free session (all of them busy with other records) before the
        first attempt. Waiting for an unavailable service is bounded by the retry budget instead.
    """

    connect: float = 10.0
    ready: float = 10.0
    result: float = 30.0
    record: float = 600.0
    pool: float = 600.0

    def __post_init__(self) -> None:
        for name in ("connect", "ready", "result", "record", "pool"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Timeouts.{name} must be > 0")


@dataclass(frozen=True)
class RetryPolicy:
    """Transient failures are retried until a time budget runs out, not after a fixed count.

    budget: seconds a record may keep failing (lost or refused connections, SERVER_BUSY,
        IDLE_TIMEOUT, INTERNAL_ERROR, 1011/1013 closes, timeouts) before it ends as
        RETRIES_EXHAUSTED. It counts from the record's first failure since its last progress (a
        finished segment of long audio starts it afresh), or from the start of the outage the
        record is waiting out, whichever is earlier: once every endpoint has been unavailable
        for longer than the budget, records fail at once instead of each waiting a budget anew.
    base_delay, max_delay: attempt n waits uniform(0, min(max_delay, base_delay * 2**(n-1)))
        (exponential backoff with full jitter), never past the budget.
    max_attempts: an optional cap on attempts as well (None: the budget alone decides).
    Permanent errors (bad language, voice, key, audio ...) are never retried.
    """

    budget: float = 600.0
    base_delay: float = 0.25
    max_delay: float = 30.0
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be >= 1 (or None for no cap)")
        if not self.budget >= 0:
            raise ValueError("RetryPolicy.budget must be >= 0")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("RetryPolicy delays must be >= 0")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        cap = min(self.max_delay, self.base_delay * (2 ** min(60, max(0, attempt - 1))))
        return (rng or random).uniform(0.0, cap)


@dataclass(frozen=True)
class CircuitPolicy:
    """A circuit breaker per endpoint, so that an outage costs a few probes, not attempts per record.

    failures: consecutive connect failures (refused, reset, timed out, HTTP 5xx) that open the
        circuit; one is enough while another endpoint is up. While it is open no connection is
        tried and records wait (not counted as attempts). After the open period one probe
        connection is tried (half-open): success closes the circuit and wakes the waiting
        records, failure opens it again for longer.
    base_delay, max_delay: the n-th consecutive open period lasts
        uniform(0.5, 1) * min(max_delay, base_delay * 2**(n-1)) seconds. The cap is low because
        a probe to a dead endpoint costs one refused connection, and a service back from a
        restart should get its work back within seconds (with 15 s, the chaos benchmark waited
        13 s after the server was ready).
    """

    failures: int = 2
    base_delay: float = 1.0
    max_delay: float = 5.0

    def __post_init__(self) -> None:
        if self.failures < 1:
            raise ValueError("CircuitPolicy.failures must be >= 1")
        if not 0 < self.base_delay <= self.max_delay:
            raise ValueError("CircuitPolicy needs 0 < base_delay <= max_delay")

    def open_for(self, times_opened: int, rng: random.Random | None = None) -> float:
        """Seconds the circuit stays open the ``times_opened``-th time in a row (1-based)."""
        cap = min(self.max_delay, self.base_delay * (2 ** min(60, max(0, times_opened - 1))))
        return (rng or random).uniform(0.5 * cap, cap)


@dataclass(frozen=True)
class ClientConfig:
    """Everything a ``SpeechClient`` needs; safe to log (the API key is left out of ``repr``).

    endpoints: base URLs (``wss://host[:port]``); the client appends ``/v1/stt/realtime`` or
        ``/v1/tts/realtime``. Full realtime URLs are accepted and trimmed to their base.
    api_key: ``None`` reads ``VOXNEXUS_API_KEY`` from the environment when the client starts.
    auth: ``"header"`` sends ``X-Api-Key`` (keeps the key out of URLs); ``"query"`` appends ``?token=``.
    pool_size: most sessions open at once per client, over all endpoints, kinds and init
        configurations together (so it is also the most connections the client holds).
    retry: how long transient failures are retried (``RetryPolicy``).
    circuit: when an endpoint counts as down and how often it is probed (``CircuitPolicy``).
    ping_interval: keepalive of a session idle in the pool: a WebSocket ping (liveness) and the
        protocol's ``{"type": "ping"}`` (keeps the service's idle timer from closing it). No
        reply to the protocol ping is needed; the WebSocket pong is, within ``ping_timeout``.
        Busy sessions are not pinged: a result or accepted audio shows they are alive, and a
        server holding back its reads under load would answer pings late.
    max_in_flight_chunks: audio chunks buffered between the audio source and the socket.
    segment_seconds: long audio is recognised in segments about this long, split at a quiet point.
    max_text_chars: the service's limit per utterance; longer texts are sent as several utterances
        (cut at sentence ends) and joined into one file.
    """

    endpoints: tuple[str, ...] = (DEFAULT_ENDPOINT,)
    api_key: str | None = field(default=None, repr=False)
    auth: Literal["header", "query"] = "header"
    pool_size: int = 8
    timeouts: Timeouts = field(default_factory=Timeouts)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    circuit: CircuitPolicy = field(default_factory=CircuitPolicy)
    ping_interval: float = 30.0
    ping_timeout: float = 20.0
    chunk_ms: int = 100
    max_in_flight_chunks: int = 32
    realtime_pacing: bool = False
    segment_seconds: float = 300.0
    ca_bundle: str | None = None
    verify_tls: bool = True
    max_message_bytes: int = 64 * 1024 * 1024
    # Longest text the service takes as one utterance; longer text goes as several (one file).
    max_text_chars: int = 5000

    def __post_init__(self) -> None:
        endpoints = (self.endpoints,) if isinstance(self.endpoints, str) else tuple(self.endpoints)
        if not endpoints:
            raise ValueError("ClientConfig.endpoints needs at least one URL")
        object.__setattr__(self, "endpoints", tuple(_base_url(e) for e in endpoints))
        if self.auth not in ("header", "query"):
            raise ValueError("ClientConfig.auth must be 'header' or 'query'")
        if self.pool_size < 1:
            raise ValueError("ClientConfig.pool_size must be >= 1")
        if not 10 <= self.chunk_ms <= 2000:
            raise ValueError("ClientConfig.chunk_ms must be within 10-2000 (the service suggests 100-200)")
        if self.max_in_flight_chunks < 1:
            raise ValueError("ClientConfig.max_in_flight_chunks must be >= 1")
        if self.segment_seconds < 1.0:
            raise ValueError("ClientConfig.segment_seconds must be >= 1")
        if not (self.ping_interval > 0 and self.ping_timeout > 0):
            raise ValueError("ClientConfig.ping_interval and ping_timeout must be > 0")

    def resolved_api_key(self) -> str | None:
        return self.api_key if self.api_key is not None else (os.environ.get(API_KEY_ENV) or None)

    def cache_key(self) -> str:
        """A digest of every field (the key as its own digest): equal configs, equal keys.

        Built from the dataclass fields themselves, so a field added later is part of it.
        """
        fields = dataclasses.asdict(self)
        if self.api_key is not None:
            fields["api_key"] = hashlib.sha256(self.api_key.encode()).hexdigest()
        text = json.dumps(fields, sort_keys=True, default=repr)
        return hashlib.sha256(text.encode()).hexdigest()


def _base_url(url: str) -> str:
    """``wss://host/v1/stt/realtime`` -> ``wss://host``; rejects non-WebSocket schemes early."""
    url = url.strip().rstrip("/")
    for path in (protocol.STT_PATH, protocol.TTS_PATH):
        if url.endswith(path):
            url = url[: -len(path)]
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError(f"endpoint {protocol.redact(url)!r} is not a ws:// or wss:// URL")
    if parts.query or parts.fragment or "?" in url:
        # The client appends the service path: a query would end up before it (a 404).
        raise ValueError(
            f"endpoint {protocol.redact(url)!r} carries a query string; give the base URL only "
            "and pass the API key separately (the client sends it as a header, or as ?token= with auth='query')"
        )
    return url
