"""The WebSocket front: routing, /healthz, auth, admission, counters, graceful shutdown (what it serves
with is built by ``context.build_context``)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import os
import signal
import ssl
import time
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from voxbeam import protocol as p
from voxbeam.protocol import ErrorCode
from voxbeam.protocol_controls import DIARIZATION
from voxbeam.server.config import ServerConfig
from voxbeam.server.context import build_context
from voxbeam.server.errors import ConfigError
from voxbeam.server.metrics import METRICS_PATH, replica_id
from voxbeam.server.session import Session
from voxbeam.server.stt import SttSession
from voxbeam.server.transcripts import REDACTION_CAPABILITIES
from voxbeam.server.tts import TtsSession

log = logging.getLogger("voxbeam.server")

READY_LINE = "VOXBEAM_SERVER_READY"
# A launcher that wants to know when we serve passes a pipe's write end here; stdout stays the user's.
READY_FD_ENV = "VOXBEAM_READY_FD"
HEALTH_PATH = "/healthz"
# Frames up to this size reach us, so we can answer MESSAGE_TOO_LARGE before closing with 1009;
# websockets itself cuts anything bigger (1009 without a message).
_HARD_CAP_FACTOR = 2


class SpeechServer:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.ctx = build_context(config)
        self.stats = self.ctx.stats
        self.metrics = self.ctx.metrics
        self.pool = self.ctx.pool
        self.live: set[Session] = set()
        self.url = ""
        self.started = time.monotonic()
        self._ws: Server | None = None
        self._idle = asyncio.Event()
        self._proxies = tuple(ipaddress.ip_network(n, strict=False) for n in config.trusted_proxies)

    # -- life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        await self.pool.start()
        tls = None
        if cfg.tls_cert:
            tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            tls.load_cert_chain(cfg.tls_cert, cfg.tls_key)
        self._ws = await serve(
            self.handler,
            cfg.host,
            cfg.port,
            process_request=self.process_request,
            ssl=tls,
            max_size=max(_HARD_CAP_FACTOR * cfg.max_message_size, cfg.max_message_size + 65536),
            max_queue=4,  # with max_size, bounds what one connection can buffer before we read it
            compression=None,  # deflate would cost the one event-loop process CPU on every audio frame
            server_header="VoxBeam",
            close_timeout=5,
            # No WebSocket keepalive: when the server holds back reading a session (backpressure) the
            # client's pong queues behind its audio and a healthy session would be killed with 1011.
            # Idle sessions end by --idle_timeout; pooled clients ping at the protocol level.
            ping_interval=None,
        )
        port = self._ws.sockets[0].getsockname()[1]
        host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
        self.url = f"{cfg.scheme}://{host}:{port}"
        log.info("listening on %s (%d workers, max %d sessions)", self.url, cfg.workers, cfg.max_sessions)

    async def shutdown(self, force: asyncio.Event | None = None) -> None:
        """Stop accepting, let sessions finish within the grace period, close the rest with 1001."""
        self.ctx.shutting_down = True
        if self._ws is not None:
            self._ws.close(close_connections=False)
        for session in list(self.live):
            session.drain()  # idle ones go now; the others when their work is done
        if self.live:
            log.info("shutting down: waiting up to %.0f s for %d sessions", self.config.shutdown_grace, len(self.live))
            waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._wait_idle())]
            if force is not None:
                waits.append(asyncio.ensure_future(force.wait()))
            await asyncio.wait(waits, timeout=self.config.shutdown_grace, return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()
        for session in list(self.live):
            session.shutdown()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await self._wait_idle()
        if self._ws is not None:
            self._ws.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._ws.wait_closed()
        await self.pool.close()
        log.info("stopped")

    async def _wait_idle(self) -> None:
        while self.live:
            self._idle.clear()
            await self._idle.wait()

    # -- HTTP ---------------------------------------------------------------------------

    @property
    def _server_capabilities(self) -> set[str]:
        """The extensions every model has, because the server does them: redaction, and diarization when the
        speaker model is installed."""
        return set(REDACTION_CAPABILITIES) | ({DIARIZATION} if self.ctx.diarizer else set())

    def public_health(self) -> dict[str, Any]:
        """What /healthz tells anyone: status, capacity (sessions, live streams, bulk audio s/s) and the
        extensions a client may ask for (``capabilities``: the recognition controls the default model honours,
        and redaction, which every model has; ``models``: every model a session may pick with the init's
        ``model``, the default first, each with the capabilities it offers)."""
        rate = self.ctx.bulk_rate
        return {
            "status": "shutting_down" if self.ctx.shutting_down else "ok",
            "capacity": self.config.max_sessions,
            "live_capacity": self.ctx.live_capacity,
            "audio_capacity": round(rate, 2) if rate else None,
            "bulk_sessions": self.pool.bulk_sessions,
            "capabilities": sorted(self.ctx.stt_model.controls | self._server_capabilities),
            "models": [
                {
                    "name": m.name,
                    "default": m is self.ctx.stt_model,
                    "multilingual": m.detects_language,
                    "capabilities": sorted(m.controls | self._server_capabilities),
                }
                for m in self.ctx.stt_models.values()
            ],
        }

    def health(self) -> dict[str, Any]:
        s = self.stats
        return {
            **self.public_health(),
            "sessions": s.sessions,
            "replica": replica_id(),  # clients sizing their pools count replicas behind one address by this
            "peak_sessions": s.peak_sessions,
            "stt_sessions": s.by_service["stt"],
            "tts_sessions": s.by_service["tts"],
            "streaming_stt": s.streaming_stt,
            "live_streams": self.ctx.live_streams,
            "decode_backlog_s": round(self.pool.backlog_s(), 1),
            "peak_streaming_stt": s.peak_streaming_stt,
            "connections_total": s.connections_total,
            "rejected_unauthorized": s.rejected_unauthorized,
            "rejected_busy": s.rejected_busy,
            "language_detections": s.language_detections,
            "errors": dict(s.errors),
            "workers": self.pool.count,
            "workers_alive": self.pool.alive,
            "worker_restarts": self.pool.restarts,
            "worker_replacements": self.pool.replacements,
            "worker_memory_mib": [w.rss >> 20 for w in self.pool.workers],
            "worker_memory_ceiling_mib": (self.pool.memory_ceiling or 0) >> 20 or None,
            "worker_pids": [w.pid for w in self.pool.workers if w.alive],
            "engine_calls": self.pool.calls(),
            "threads_per_worker": self.config.threads,
            "stt": {
                "engine": self.ctx.stt_model.engine,
                "model": self.ctx.stt_model.label,
                "languages": list(self.ctx.stt_model.languages),
                "detects_language": self.ctx.stt_model.detects_language,
                "models": [m.label for m in self.ctx.stt_models.values()],
            },
            # The models each worker has loaded (tiers load on first use): what its memory holds.
            "worker_models": [sorted(w.models) for w in self.pool.workers],
            "voices": self.ctx.voices.describe(),
            "uptime_s": round(time.monotonic() - self.started, 1),
        }

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path.rstrip("/") or "/"
        if path == HEALTH_PATH:
            # Without a key: whether it serves, and how much (probes and sizing need no more); the rest
            # (sessions, errors, workers, the catalog) is for key holders.
            doc = self.health() if self.authenticate(request) else self.public_health()
            response = connection.respond(HTTPStatus.OK, json.dumps(doc) + "\n")
            del response.headers["Content-Type"]
            response.headers["Content-Type"] = "application/json"
            response.headers["Cache-Control"] = "no-store"
            return response
        if path == METRICS_PATH:  # unauthenticated, like /healthz: aggregates only
            return self.metrics.http_response(connection)
        if path not in (p.STT_PATH, p.TTS_PATH):
            return connection.respond(HTTPStatus.NOT_FOUND, f"no such endpoint; use {p.STT_PATH} or {p.TTS_PATH}\n")
        # Before the upgrade: a connection without a valid key, or over the caps, never gets to send a
        # frame (no buffers, no session slot). The key is checked first, so the caps count key by key.
        label = self.authenticate(request)
        if label is None:
            self.stats.connections_total += 1
            self.stats.rejected_unauthorized += 1
            self.metrics.session_refused("unauthorized")
            self.ctx.count_error(ErrorCode.UNAUTHORIZED.value)
            log.info("connection rejected: UNAUTHORIZED")
            error = p.error(ErrorCode.UNAUTHORIZED, "a valid API key is required (?token= or X-Api-Key)")
            response = connection.respond(HTTPStatus.UNAUTHORIZED, p.serialize(error) + "\n")
            del response.headers["Content-Type"]
            response.headers["Content-Type"] = "application/json"
            response.headers["WWW-Authenticate"] = 'ApiKey realm="voxbeam", header="X-Api-Key", query="token"'
            return response
        refused = self._crowded(connection, request, label)
        if refused is not None:
            status, why = refused
            self.stats.rejected_busy += 1
            self.metrics.session_refused("busy")
            log.info("connection refused: %s", why)
            response = connection.respond(status, f"{why}; retry later\n")
            response.headers["Retry-After"] = "1"
            return response
        connection.voxbeam_label = label  # type: ignore[attr-defined]  # counted per key from now on
        connection.voxbeam_address = self._client_address(connection, request)  # type: ignore[attr-defined]
        return None

    def _crowded(self, connection: ServerConnection, request: Request, label: str) -> tuple[HTTPStatus, str] | None:
        """Why a connection of key ``label`` is one too many, and the status that says so; None when it is not.

        Key by key first: connections that never send their init cost their own key its pre-init
        slots (429), never another key's; per client address (the one a trusted proxy names) and key
        next; the whole server's cap last.
        """
        if self._ws is None:
            return None
        cfg = self.config
        # Connections process_request let through carry their key; Session marks them at their init.
        mine = [c for c in self._ws.all_connections if getattr(c, "voxbeam_label", None) == label]
        if sum(not getattr(c, "voxbeam_initialized", False) for c in mine) >= cfg.pre_init_per_key:
            why = f"this API key has {cfg.pre_init_per_key} connections that have not sent their init"
            return HTTPStatus.TOO_MANY_REQUESTS, why
        address = self._client_address(connection, request)
        if sum(getattr(c, "voxbeam_address", None) == address for c in mine) >= cfg.max_connections_per_address:
            why = f"{cfg.max_connections_per_address} connections of this key from one address are open"
            return HTTPStatus.TOO_MANY_REQUESTS, why
        if len(self._ws.all_connections) > cfg.max_connections:
            return HTTPStatus.SERVICE_UNAVAILABLE, f"the server holds its {cfg.max_connections} connections"
        return None

    def _client_address(self, connection: ServerConnection, request: Request) -> str | None:
        """The client's address: the peer's, or the one a trusted proxy puts in X-Forwarded-For."""
        peer = _host(connection)
        if peer is None or not self._proxies or not _within(peer, self._proxies):
            return peer
        hops = [h.strip() for h in (request.headers.get("X-Forwarded-For") or "").split(",") if h.strip()]
        # The rightmost address no trusted proxy owns is the client (anything left of it could be forged).
        for hop in reversed(hops):
            if not _within(hop, self._proxies):
                return hop
        return peer

    # -- WebSocket ----------------------------------------------------------------------

    def authenticate(self, request: Request) -> str | None:
        """A label for the key the client presented ("key1", ...), or None. Never the key itself."""
        if self.config.no_auth:
            return "anonymous"
        offered = [request.headers.get("X-Api-Key")]
        bearer = request.headers.get("Authorization") or ""
        if bearer[:7].lower() == "bearer ":
            offered.append(bearer[7:].strip())
        offered += parse_qs(urlsplit(request.path).query).get("token", [])
        label = None
        for candidate in offered:
            if not candidate:
                continue
            for i, key in enumerate(self.config.api_keys):
                # Compare against every key (no early exit): timing says nothing about which matched.
                if hmac.compare_digest(candidate.encode(), key.encode()) and label is None:
                    label = f"key{i + 1}"
        return label

    async def _reject(self, ws: ServerConnection, code: ErrorCode, message: str, close_code: int) -> None:
        self.ctx.count_error(code.value)
        with contextlib.suppress(ConnectionClosed, TimeoutError):
            async with asyncio.timeout(5):
                await ws.send(p.serialize(p.error(code, message)))
                await ws.close(close_code, code.value)

    async def handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        path = urlsplit(ws.request.path).path.rstrip("/")
        service = "stt" if path == p.STT_PATH else "tts"
        self.stats.connections_total += 1
        label = self.authenticate(ws.request)
        assert label is not None  # process_request refused every other connection
        if self.ctx.shutting_down:
            self.metrics.session_refused("shutting_down")
            await self._reject(ws, ErrorCode.SERVER_BUSY, "the server is shutting down", p.CLOSE_TRY_AGAIN_LATER)
            return
        # A session slot is taken at its first init (Session.admit): a connection that never inits
        # holds none, and is closed at --init_timeout.
        session: Session = SttSession(self.ctx, ws, label) if service == "stt" else TtsSession(self.ctx, ws, label)
        self.live.add(session)
        try:
            await session.run()
        finally:
            self.live.discard(session)
            self._idle.set()
            log.info(
                "session %s closed: auth=%s request_ids=%s %s outcome=%s codes=%s close=%s seconds=%.1f",
                service,
                label,
                _ids(session.request_ids),
                session.summary(),
                session.outcome,
                ",".join(dict.fromkeys(session.error_codes)) or "-",
                ws.close_code,
                time.monotonic() - session.started,
            )


def _host(connection: ServerConnection) -> str | None:
    address = connection.remote_address
    return str(address[0]) if address else None


def _within(address: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def _ids(ids: list[str]) -> str:
    """Request ids for a log line: all of a short session, the ends of a long (pooled) one."""
    if len(ids) <= 4:
        return ",".join(ids) or "-"
    return f"{','.join(ids[:2])},...({len(ids) - 3} more),{ids[-1]}"


async def run_server(config: ServerConfig) -> int:
    """Serve until SIGTERM/SIGINT (a second one skips the grace period). Returns the exit status."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    force = asyncio.Event()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            force.set()
        stop.set()
        log.info("received %s", signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        server = SpeechServer(config)
    except ConfigError as exc:
        log.error("could not start: %s", exc)
        return 1
    try:
        await server.start()
    except Exception as exc:
        log.error("could not start: %s", exc)
        await server.pool.close()
        return 1
    if not stop.is_set():
        announce_ready(server.url)
        await stop.wait()
    await server.shutdown(force)
    return 0


def announce_ready(url: str) -> None:
    """Write ``READY_LINE url`` to the descriptor named by $VOXBEAM_READY_FD, if any, and close it."""
    fd = os.environ.pop(READY_FD_ENV, None)
    if not fd:
        return
    try:
        with os.fdopen(int(fd), "w", encoding="utf-8") as out:
            out.write(f"{READY_LINE} {url}\n")
    except (OSError, ValueError) as exc:
        log.warning("cannot announce readiness on %s=%s: %s", READY_FD_ENV, fd, exc)
