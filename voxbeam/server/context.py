"""What sessions need from the server, without knowing the server: config, counters, workers, models
(``build_context`` resolves the model and voices and sets up the workers).

``app.SpeechServer`` builds one ``ServerContext`` and hands it to every session, so the session
modules never import the app (no import circle) and tests can see what a session sees.
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass, field
from typing import Any

from voxbeam import protocol as p
from voxbeam.protocol import ErrorCode
from voxbeam.protocol_controls import DIARIZATION
from voxbeam.server.config import ServerConfig
from voxbeam.server.engines import diarizer, stt_engine
from voxbeam.server.engines.base import SttModel, SttSettings
from voxbeam.server.errors import ConfigError
from voxbeam.server.metrics import ServerMetrics
from voxbeam.server.transcripts import REDACTION_CAPABILITIES
from voxbeam.server.voices import VoiceCatalog, load_catalog
from voxbeam.server.worker import WorkerSpec
from voxbeam.server.worker.parent import WorkerPool

log = logging.getLogger("voxbeam.server")

# Live streams are admitted up to this share of the measured bulk speed, each costing the engine's
# ``live_cost`` times what the same audio costs in bulk; the rest is left for bulk work.
LIVE_SHARE = 0.8


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
    per_key: collections.Counter[str] = field(default_factory=collections.Counter)
    live_streams: int = 0  # STT sessions holding a live slot
    # Every model served, by name, the default (``stt_model``) first: a session picks one with ``model``.
    stt_models: dict[str, SttModel] = field(default_factory=dict)
    # The speaker model sessions may diarize with (its label), None: no diarization (/healthz says which).
    diarizer: str | None = None

    def __post_init__(self) -> None:
        if not self.stt_models:
            self.stt_models = {self.stt_model.name: self.stt_model}

    def model_for(self, name: str | None) -> SttModel:
        """The served model an STT init's ``model`` names (None: the default); UNSUPPORTED_OPTION otherwise."""
        if name is None:
            return self.stt_model
        model = self.stt_models.get(name)
        if model is None:
            raise p.ProtocolError(
                ErrorCode.UNSUPPORTED_OPTION,
                f"'model': {p.quoted(name)} is not served here; models: {', '.join(self.stt_models)} "
                "(a server serves several with --stt_model, comma-separated)",
            )
        return model

    @property
    def server_capabilities(self) -> set[str]:
        """The extensions every model has, because the server does them: redaction, and diarization when the
        speaker model is installed."""
        return set(REDACTION_CAPABILITIES) | ({DIARIZATION} if self.diarizer else set())

    @property
    def bulk_rate(self) -> float | None:
        """Audio seconds per second the server transcribes in bulk: configured, else measured (None: not yet)."""
        return self.config.stt_capacity or self.pool.bulk_rate

    @property
    def live_capacity(self) -> int | None:
        """Live streams the server can keep in real time: configured, else from its measured speed."""
        if self.config.live_capacity is not None:
            return self.config.live_capacity
        rate = self.bulk_rate
        cost = stt_engine(self.config.stt_engine).live_cost_with(engine_options(self.config))
        return None if rate is None else max(1, int(rate * LIVE_SHARE / cost))

    def admit(self, service: str, key_label: str, live: bool | None = None) -> str:
        """Take a session slot for a session's first init; why not, when it cannot have one.

        ``live``: the STT init said its audio comes at real time (True), or as fast as it goes (False).
        """
        cfg = self.config
        if self.shutting_down:
            self.metrics.session_refused("shutting_down")
            return "the server is shutting down"
        server_full = self.stats.sessions >= cfg.max_sessions
        per_key_full = not server_full and self.per_key[key_label] >= cfg.sessions_per_key
        if server_full or per_key_full:
            self.stats.rejected_busy += 1
            self.metrics.session_refused("key_limit" if per_key_full else "busy")
            what = "this API key's" if per_key_full else "the server's"
            log.info("session %s refused: SERVER_BUSY (%s %s)", service, key_label, what)
            return f"{what} session limit is reached; retry later"
        overloaded = self._load_refusal(live) if service == "stt" else ""
        if overloaded:
            self.stats.rejected_busy += 1
            self.metrics.session_refused("load")
            log.info("session %s refused: SERVER_BUSY (%s; %s)", service, key_label, overloaded)
            return overloaded
        if live:
            self.live_streams += 1
        self.stats.opened(service)
        self.metrics.session_opened(service)
        self.per_key[key_label] += 1
        return ""

    def _load_refusal(self, live: bool | None) -> str:
        """Why the server cannot take one more STT session of this kind now, or ''."""
        if live:
            capacity = self.live_capacity
            if capacity is not None and self.live_streams >= capacity:
                return f"the server holds {self.live_streams} live streams, all it can keep in real time; retry later"
            return ""
        rate = self.bulk_rate
        if live is False and rate:
            wait = self.pool.backlog_s() / rate
            if wait > self.config.max_queue_s:
                return (
                    f"the server's queue holds {self.pool.backlog_s():.0f} s of audio: yours would wait about "
                    f"{wait:.0f} s (more than {self.config.max_queue_s:g} s); retry later"
                )
        return ""

    def take_live(self) -> str:
        """A live slot for a session found streaming at real time that did not say so at its init; why not."""
        capacity = self.live_capacity
        if capacity is not None and self.live_streams >= capacity:
            self.stats.rejected_busy += 1
            self.metrics.session_refused("load")
            return f"the server holds {self.live_streams} live streams, all it can keep in real time; retry later"
        self.live_streams += 1
        return ""

    def release_live(self) -> None:
        self.live_streams -= 1

    def release(self, service: str, key_label: str) -> None:
        self.stats.closed(service)
        self.metrics.session_closed(service)
        self.per_key[key_label] -= 1

    def count_error(self, code: str) -> None:
        """An error message sent to a client (or a session ended with one): /healthz and /metrics."""
        self.stats.count_error(code)
        self.metrics.error(code)


def engine_options(config: ServerConfig) -> dict[str, Any]:
    """The engines' own settings (``SttSettings.engine_options``) from the server's options."""
    return {"decoders": config.decoders_per_worker, "live_decoding": config.live_decoding}


def build_context(config: ServerConfig) -> ServerContext:
    """Resolve the STT model and the voice catalog, and set up (not start) the workers.

    Raises ``ConfigError``/``ModelError`` (one line for the operator) when the server cannot run.
    """
    engine = stt_engine(config.stt_engine)
    models: dict[str, SttModel] = {}
    for name in config.stt_models:
        resolved = engine.resolve(name)
        if resolved.name in models:
            raise ConfigError(f"--stt_model: {name!r} is model {resolved.name!r} again; name each model once")
        models[resolved.name] = resolved
    model = next(iter(models.values()))
    voices, problems = load_catalog(config.voices_dir)
    for problem in problems:
        log.error("voice catalog: %s", problem)
    threads = config.threads
    speakers, said = (
        diarizer(config.diarization)
        if config.diarization != "off"
        else (None, "speaker diarization off (--diarization)")
    )
    log.info("%s", said)
    spec = WorkerSpec(
        stt=SttSettings(
            model,
            threads=threads,
            max_utterance_s=config.max_utterance_s,
            engine_options=engine_options(config),
        ),
        tts_threads=threads,
        preload_voices=(voices.default,),
        stt_tiers=tuple(models.values())[1:],
        diarization=speakers,
    )
    metrics = ServerMetrics(config.max_sessions)
    pool = WorkerPool(
        config.workers,
        spec,
        log_level=logging.getLevelName(config.log_level.upper()),
        observe=metrics.engine_call,
        memory_ceiling=config.worker_ceiling,
        on_memory=metrics.worker_memory,
        on_replaced=metrics.worker_replaced,
    )
    log.info(
        "STT %s (%s)%s, %d voices (default %s), %d workers x %d threads",
        model.label,
        "detects language" if model.detects_language else ", ".join(model.languages),
        "".join(f"; on first use: {m.label}" for m in tuple(models.values())[1:]),
        len(voices.voices),
        voices.default.id,
        config.workers,
        threads,
    )
    return ServerContext(config, pool, model, voices, metrics, stt_models=models, diarizer=speakers)
