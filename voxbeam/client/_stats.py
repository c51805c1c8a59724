"""Counters shared by the pool, sessions and client (single event loop: no locking needed)."""

from __future__ import annotations

from collections import Counter

COUNTERS = (
    "requests",  # transcribe/synthesize calls started
    "transcriptions",  # finished with a result
    "syntheses",
    "failures",  # requests that ended in an exception
    "retries",  # attempts made after a retryable failure
    "reconnects",  # sessions opened by a retry attempt
    "segments",  # recognition sessions completed (one per file, more for long files)
    "connections_opened",  # WebSocket handshakes that succeeded
    "connect_failures",  # handshakes that failed (refused, timed out, rejected)
    "sessions_opened",  # sessions that reached ready
    "sessions_retired",  # closed after an error, a server close or a failed ping
    "sessions_evicted",  # idle sessions closed to make room for another configuration
    "server_busy",  # SERVER_BUSY answers seen
    "timeouts",  # connect / ready / result / attempt deadlines passed
    "pings",  # keepalive pings sent while idle
    "circuit_opens",  # an endpoint's circuit went from closed to open
    "probes",  # half-open probe connections to an endpoint whose circuit was open
    "failovers",  # a refused connection retried at once on another endpoint
    "waits_unavailable",  # waits in the pool while every endpoint was unavailable
    "audio_bytes_sent",
)


class Stats:
    def __init__(self) -> None:
        self._c: Counter[str] = Counter({name: 0 for name in COUNTERS})

    def incr(self, name: str, n: int = 1) -> None:
        self._c[name] += n

    def snapshot(self) -> dict[str, int]:
        return dict(self._c)
