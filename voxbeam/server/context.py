"""What sessions need from the server, without knowing the server: config, counters, workers, models.

``app.SpeechServer`` builds one ``ServerContext`` and hands it to every session, so the session
modules never import the app (no import circle) and tests can see what a session sees.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from voxbeam.server.config import ServerConfig
from voxbeam.server.engines.base import SttModel
from voxbeam.server.metrics import ServerMetrics
from voxbeam.server.voices import VoiceCatalog
from voxbeam.server.worker.parent import WorkerPool


class Stats:
    """Counters for /healthz; mutated only on the event loop."""

    def __init__(self) -> None:
        self.connections_total = 0
        self.sessions = 0
        self.peak_sessions = 0
        self.by_service = collections.Counter[str]()
        self.streaming_stt = 0
        self.peak_streaming_stt = 0
        self.rejected_unauthorized = 0
        self.rejected_busy = 0
        self.language_detections = 0
        self.errors = collections.Counter[str]()

    def opened(self, service: str) -> None:
        self.sessions += 1
        self.peak_sessions = max(self.peak_sessions, self.sessions)
        self.by_service[service] += 1

    def closed(self, service: str) -> None:
        self.sessions -= 1
        self.by_service[service] -= 1

    def streaming_changed(self, delta: int) -> None:
        self.streaming_stt += delta
        self.peak_streaming_stt = max(self.peak_streaming_stt, self.streaming_stt)

    def count_error(self, code: str) -> None:
        self.errors[code] += 1


@dataclass
class ServerContext:
    config: ServerConfig
    pool: WorkerPool
    stt_model: SttModel
    voices: VoiceCatalog
    metrics: ServerMetrics
    stats: Stats = field(default_factory=Stats)
    shutting_down: bool = False

    def count_error(self, code: str) -> None:
        """An error message sent to a client (or a session ended with one): /healthz and /metrics."""
        self.stats.count_error(code)
        self.metrics.error(code)
