"""The front: one aiohttp server on the port, routing /healthz, /metrics and the WebSocket services, auth
before the upgrade, admission, counters, graceful shutdown (what it serves with is built by
``context.build_context``; who may come in is ``gate``; a session sees its socket as a ``channel.Channel``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import ssl
import time
from http import HTTPStatus
from typing import Any

from aiohttp import web

from voxbeam import protocol as p
from voxbeam.protocol import ErrorCode
from voxbeam.server.channel import AiohttpChannel, Channel, ChannelClosed, LingeringServer, answer_and_close
from voxbeam.server.config import ServerConfig
from voxbeam.server.context import build_context
from voxbeam.server.errors import ConfigError
from voxbeam.server.gate import Gate
from voxbeam.server.metrics import METRICS_PATH, replica_id
from voxbeam.server.openai_api import ModelCatalog, OpenAiApi, not_found
from voxbeam.server.openai_stt import Transcriber
from voxbeam.server.openai_tts import Speaker
from voxbeam.server.session import Session
from voxbeam.server.stt import SttSession
from voxbeam.server.tts import TtsSession
from voxbeam.server.uploads import MIB, Spool

log = logging.getLogger("voxbeam.server")

READY_LINE = "VOXBEAM_SERVER_READY"
# A launcher that wants to know when we serve passes a pipe's write end here; stdout stays the user's.
READY_FD_ENV = "VOXBEAM_READY_FD"
HEALTH_PATH = "/healthz"
SERVER_HEADER = "VoxBeam"
# Frames up to this size reach us, so we can answer MESSAGE_TOO_LARGE before closing with 1009;
# aiohttp itself cuts anything bigger (1009 without a message).
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
        self.gate = Gate(config)
        self.channels: set[Channel] = set()  # WebSocket connections let in (counted per key and address)
        self._runner: web.ServerRunner | None = None
        self._site: web.TCPSite | None = None
        self._idle = asyncio.Event()
        spool = Spool(config.upload_dir, config.max_upload_mb * MIB, config.spool_mb * MIB, config.upload_timeout)
        self.transcriber = Transcriber(self.ctx, spool, self._track, self._untrack)
        self.speaker = Speaker(self.ctx, self._track, self._untrack)
        self.api = OpenAiApi(
            self._label,
            lambda request: self.gate.client_address(_peer(request), request.headers),
            ModelCatalog(self.ctx, self.speaker.voices),
            self.transcriber.handle,
            self.speaker.handle,
        )
        self._hard_cap = max(_HARD_CAP_FACTOR * config.max_message_size, config.max_message_size + 65536)

    # -- life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        await self.pool.start()
        tls = None
        if cfg.tls_cert:
            tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            tls.load_cert_chain(cfg.tls_cert, cfg.tls_key)
        # The low-level server: our own routing, no access log (our one line per session says more, and a
        # request line may carry ?token=), and closes that let the client read our last bytes (LingeringClose).
        # keepalive_timeout: a connection that has not sent a whole request within 10 s is closed (as websockets'
        # open timeout did), so stalled handshakes cannot hold the connection caps.
        server = LingeringServer(self.handle, access_log=None, handler_cancellation=False, keepalive_timeout=10)
        self._runner = web.ServerRunner(server, shutdown_timeout=5)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, cfg.host, cfg.port, ssl_context=tls, shutdown_timeout=5)
        await self._site.start()
        port = self._runner.addresses[0][1]
        host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
        self.url = f"{cfg.scheme}://{host}:{port}"
        log.info("listening on %s (%d workers, max %d sessions)", self.url, cfg.workers, cfg.max_sessions)

    async def shutdown(self, force: asyncio.Event | None = None) -> None:
        """Stop accepting, let sessions finish within the grace period, close the rest with 1001."""
        self.ctx.shutting_down = True
        if self._site is not None:
            await self._site.stop()  # no new connections; the open ones carry on
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
        if self._runner is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await self._runner.cleanup()
        await self.pool.close()
        log.info("stopped")

    async def _wait_idle(self) -> None:
        while self.live:
            self._idle.clear()
            await self._idle.wait()

    # -- HTTP ---------------------------------------------------------------------------

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
            "capabilities": sorted(self.ctx.stt_model.controls | self.ctx.server_capabilities),
            "models": [
                {
                    "name": m.name,
                    "default": m is self.ctx.stt_model,
                    "multilingual": m.detects_language,
                    "capabilities": sorted(m.controls | self.ctx.server_capabilities),
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

    # -- routing ------------------------------------------------------------------------

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """Every request on the port: /healthz, /metrics, the WebSocket services."""
        path = request.path.rstrip("/") or "/"
        if log.isEnabledFor(logging.DEBUG):  # as sent (a ?token= too: the log formatter redacts it)
            log.debug("< %s %s", request.method, request.raw_path)
        if path == HEALTH_PATH:
            # Without a key: whether it serves, and how much (probes and sizing need no more); the rest
            # (sessions, errors, workers, the catalog) is for key holders.
            doc = self.health() if self._label(request) else self.public_health()
            return _respond(HTTPStatus.OK, json.dumps(doc) + "\n", "application/json", {"Cache-Control": "no-store"})
        if path == METRICS_PATH:  # unauthenticated, like /healthz: aggregates only
            body, content_type = self.metrics.http_body()
            return _respond(HTTPStatus.OK, body, content_type, {"Cache-Control": "no-store"})
        if path in (p.STT_PATH, p.TTS_PATH):
            return await self._websocket(request, "stt" if path == p.STT_PATH else "tts")
        if path.startswith("/v1/"):
            return await self.api.handle(request, path)
        return not_found(request).response()

    def _track(self, session: Session) -> None:
        """An HTTP request's session: counted as live, so a shutdown lets it finish (within the grace)."""
        self.live.add(session)

    def _untrack(self, session: Session) -> None:
        self.live.discard(session)
        self._idle.set()
        log.info(
            "session %s (http) closed: auth=%s request_ids=%s %s outcome=%s codes=%s seconds=%.1f",
            session.service,
            session.key_label,
            _ids(session.request_ids),
            session.summary(),
            session.outcome,
            ",".join(dict.fromkeys(session.error_codes)) or "-",
            time.monotonic() - session.started,
        )

    def _label(self, request: web.BaseRequest) -> str | None:
        return self.gate.authenticate(request.headers, request.query.getall("token", []))

    def _refuse_unauthorized(self) -> web.Response:
        self.stats.connections_total += 1
        self.stats.rejected_unauthorized += 1
        self.metrics.session_refused("unauthorized")
        self.ctx.count_error(ErrorCode.UNAUTHORIZED.value)
        log.info("connection rejected: UNAUTHORIZED")
        error = p.error(ErrorCode.UNAUTHORIZED, "a valid API key is required (?token= or X-Api-Key)")
        auth = 'ApiKey realm="voxbeam", header="X-Api-Key", query="token"'
        body = p.serialize(error) + "\n"
        return _respond(HTTPStatus.UNAUTHORIZED, body, "application/json", {"WWW-Authenticate": auth})

    async def _websocket(self, request: web.BaseRequest, service: str) -> web.StreamResponse:
        # Before the upgrade: a connection without a valid key, or over the caps, never gets to send a
        # frame (no buffers, no session slot). The key is checked first, so the caps count key by key.
        label = self._label(request)
        if label is None:
            return await answer_and_close(request, self._refuse_unauthorized())
        address = self.gate.client_address(_peer(request), request.headers)
        mine = [(c.address, c.initialized) for c in self.channels if c.label == label]
        connections = len(self._runner.server.connections) if self._runner and self._runner.server else 0
        refused = self.gate.crowded(label, address, mine, connections)
        if refused is not None:
            status, why = refused
            self.stats.rejected_busy += 1
            self.metrics.session_refused("busy")
            log.info("connection refused: %s", why)
            return await answer_and_close(
                request, _respond(status, f"{why}; retry later\n", headers={"Retry-After": "1"})
            )
        ws = web.WebSocketResponse(
            max_msg_size=self._hard_cap,
            compress=False,  # deflate would cost the one event-loop process CPU on every audio frame
            autoping=True,  # pings are answered while the socket is read, as the inbox allows
            # No WebSocket keepalive: when the server holds back reading a session (backpressure) the
            # client's pong queues behind its audio and a healthy session would be killed with 1011.
            # Idle sessions end by --idle_timeout; pooled clients ping at the protocol level.
            heartbeat=None,
            timeout=5,  # for the client's half of a closing handshake
        )
        if not ws.can_prepare(request).ok:
            return _respond(
                HTTPStatus.UPGRADE_REQUIRED, "this endpoint speaks WebSocket\n", headers={"Upgrade": "websocket"}
            )
        ws.headers["Server"] = SERVER_HEADER
        # Counted from now on (before the handshake's first await), per key and per address.
        channel = AiohttpChannel(ws, request.transport, label, address)
        self.channels.add(channel)
        try:
            await ws.prepare(request)
            await self._serve(channel, service)
        finally:
            self.channels.discard(channel)
        return ws

    async def _reject(self, ws: Channel, code: ErrorCode, message: str, close_code: int) -> None:
        self.ctx.count_error(code.value)
        with contextlib.suppress(ChannelClosed, TimeoutError):
            async with asyncio.timeout(5):
                await ws.send(p.serialize(p.error(code, message)))
                await ws.close(close_code, code.value)

    async def _serve(self, ws: Channel, service: str) -> None:
        self.stats.connections_total += 1
        label = ws.label
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


def _respond(
    status: HTTPStatus, body: str | bytes, content_type: str = "text/plain", headers: dict[str, str] | None = None
) -> web.Response:
    response = web.Response(status=status, body=body.encode() if isinstance(body, str) else body, headers=headers)
    response.content_type = content_type.split(";")[0]
    if "charset=" in content_type:
        response.charset = content_type.split("charset=")[1]
    elif content_type.startswith("text/"):
        response.charset = "utf-8"
    response.headers["Server"] = SERVER_HEADER
    return response


def _peer(request: web.BaseRequest) -> str | None:
    transport = request.transport
    address = transport.get_extra_info("peername") if transport is not None else None
    return str(address[0]) if address else None


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
