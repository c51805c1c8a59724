"""Client configuration as small frozen objects (httpx-style: Timeouts, RetryPolicy, ClientConfig)."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from voxbeam import protocol
from voxbeam.protocol import API_KEY_ENV

__all__ = ["API_KEY_ENV", "DEFAULT_ENDPOINT", "ClientConfig", "RetryPolicy", "Timeouts"]
DEFAULT_ENDPOINT = "wss://api.voxnexus.ai"


@dataclass(frozen=True)
class Timeouts:
    """Deadlines in seconds; every wait in the client is bounded by one of these.

    connect: TCP + TLS + WebSocket handshake.
    ready: from ``init`` sent to ``ready`` received.
    result: longest silence tolerated while a result is owed (no server message and no audio
        accepted by the socket), and longest wait for the socket to accept one frame.
    record: one whole record including retries and backoff, counted from the moment the record
        first holds a session (time queued for the pool is bounded by ``pool`` instead); for
        audio long enough to go in segments, each segment in turn, so a long file is not cut off
        for its length.
    pool: longest wait for a free session before the first attempt.
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
    """Exponential backoff with full jitter: attempt n waits uniform(0, min(max_delay, base_delay * 2**(n-1)))."""

    max_attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 10.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be >= 1")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("RetryPolicy delays must be >= 0")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        cap = min(self.max_delay, self.base_delay * (2 ** max(0, attempt - 1)))
        return (rng or random).uniform(0.0, cap)


@dataclass(frozen=True)
class ClientConfig:
    """Everything a ``SpeechClient`` needs; safe to log (the API key is left out of ``repr``).

    endpoints: base URLs (``wss://host[:port]``); the client appends ``/v1/stt/realtime`` or
        ``/v1/tts/realtime``. Full realtime URLs are accepted and trimmed to their base.
    api_key: ``None`` reads ``VOXNEXUS_API_KEY`` from the environment when the client starts.
    auth: ``"header"`` sends ``X-Api-Key`` (keeps the key out of URLs); ``"query"`` appends ``?token=``.
    pool_size: most sessions open at once per client, over all endpoints, kinds and init
        configurations together (so it is also the most connections the client holds).
    ping_interval: keepalive of a session idle in the pool: a WebSocket ping (liveness) and the
        protocol's ``{"type": "ping"}`` (keeps the service's idle timer from closing it). No
        reply to the protocol ping is needed; the WebSocket pong is, within ``ping_timeout``.
        Busy sessions are not pinged: a result or accepted audio shows they are alive, and a
        server holding back its reads under load would answer pings late.
    max_in_flight_chunks: audio chunks buffered between the audio source and the socket.
    segment_seconds: long audio is recognised in segments about this long, split at a quiet point.
    endpoint_cooloff: seconds an endpoint that refused a connection is avoided (doubles per failure).
    """

    endpoints: tuple[str, ...] = (DEFAULT_ENDPOINT,)
    api_key: str | None = field(default=None, repr=False)
    auth: Literal["header", "query"] = "header"
    pool_size: int = 8
    timeouts: Timeouts = field(default_factory=Timeouts)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    ping_interval: float = 30.0
    ping_timeout: float = 20.0
    chunk_ms: int = 100
    max_in_flight_chunks: int = 32
    realtime_pacing: bool = False
    segment_seconds: float = 300.0
    ca_bundle: str | None = None
    verify_tls: bool = True
    endpoint_cooloff: float = 5.0
    max_message_bytes: int = 64 * 1024 * 1024

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
        if not (self.ping_interval > 0 and self.ping_timeout > 0) or self.endpoint_cooloff < 0:
            raise ValueError("ClientConfig.ping_interval and ping_timeout must be > 0, endpoint_cooloff >= 0")

    def resolved_api_key(self) -> str | None:
        return self.api_key if self.api_key is not None else (os.environ.get(API_KEY_ENV) or None)


def _base_url(url: str) -> str:
    """``wss://host/v1/stt/realtime`` -> ``wss://host``; rejects non-WebSocket schemes early."""
    url = url.strip().rstrip("/")
    for path in (protocol.STT_PATH, protocol.TTS_PATH):
        if url.endswith(path):
            url = url[: -len(path)]
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError(f"endpoint {protocol.redact(url)!r} is not a ws:// or wss:// URL")
    if parts.query:
        raise ValueError("endpoint URLs must not carry a query; pass the API key as api_key")
    return url
