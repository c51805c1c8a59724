"""The WebSocket front: routing, /healthz, auth, admission, counters, graceful shutdown."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
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
from voxbeam.server.config import ServerConfig
from voxbeam.server.engines.recognizer import RecognizerSettings
from voxbeam.server.session import Session
from voxbeam.server.stt import SttSession
from voxbeam.server.tts import TtsSession
from voxbeam.server.workers import WorkerPool

log = logging.getLogger("voxbeam.server")

READY_LINE = "VOXBEAM_SERVER_READY"
# A launcher that wants to know when we serve passes a pipe's write end here; stdout stays the user's.
READY_FD_ENV = "VOXBEAM_READY_FD"
HEALTH_PATH = "/healthz"
# Frames up to this size reach us, so we can answer MESSAGE_TOO_LARGE before closing with 1009;
# websockets itself cuts anything bigger (1009 without a message).
_HARD_CAP_FACTOR = 2


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


class SpeechServer:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.stats = Stats()
        self.pool = WorkerPool(
            config.workers,
            RecognizerSettings(decoders=config.decoders_per_worker, max_utterance_s=config.max_utterance_s),
            log_level=logging.getLevelName(config.log_level.upper()),
        )
        self.live: set[Session] = set()
        self.per_key = collections.Counter[str]()
        self.shutting_down = False
        self.url = ""
        self.started = time.monotonic()
        self._ws: Server | None = None
        self._idle = asyncio.Event()

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
            # Idle sessions end by --idle-timeout; pooled clients ping at the protocol level.
            ping_interval=None,
        )
        port = self._ws.sockets[0].getsockname()[1]
        host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
        self.url = f"{cfg.scheme}://{host}:{port}"
        log.info("listening on %s (%d workers, max %d sessions)", self.url, cfg.workers, cfg.max_sessions)

    async def shutdown(self, force: asyncio.Event | None = None) -> None:
        """Stop accepting, let sessions finish within the grace period, close the rest with 1001."""
        self.shutting_down = True
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

    def health(self) -> dict[str, Any]:
        s = self.stats
        return {
            "status": "shutting_down" if self.shutting_down else "ok",
            "sessions": s.sessions,
            "capacity": self.config.max_sessions,
            "peak_sessions": s.peak_sessions,
            "stt_sessions": s.by_service["stt"],
            "tts_sessions": s.by_service["tts"],
            "streaming_stt": s.streaming_stt,
            "peak_streaming_stt": s.peak_streaming_stt,
            "connections_total": s.connections_total,
            "rejected_unauthorized": s.rejected_unauthorized,
            "rejected_busy": s.rejected_busy,
            "errors": dict(s.errors),
            "workers": self.pool.count,
            "workers_alive": self.pool.alive,
            "worker_restarts": self.pool.restarts,
            "worker_pids": [w.pid for w in self.pool.workers if w.alive],
            "engine_calls": self.pool.calls(),
            "decoders_per_worker": self.config.decoders_per_worker,
            "uptime_s": round(time.monotonic() - self.started, 1),
        }

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path.rstrip("/") or "/"
        if path == HEALTH_PATH:
            response = connection.respond(HTTPStatus.OK, json.dumps(self.health()) + "\n")
            del response.headers["Content-Type"]
            response.headers["Content-Type"] = "application/json"
            response.headers["Cache-Control"] = "no-store"
            return response
        if path not in (p.STT_PATH, p.TTS_PATH):
            return connection.respond(HTTPStatus.NOT_FOUND, f"no such endpoint; use {p.STT_PATH} or {p.TTS_PATH}\n")
        return None

    # -- WebSocket ----------------------------------------------------------------------

    def authenticate(self, request: Request) -> str | None:
        """A label for the key the client presented ("key1", ...), or None. Never the key itself."""
        if self.config.no_auth:
            return "anonymous"
        offered = [request.headers.get("X-Api-Key")]
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
        self.stats.count_error(code.value)
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
        if label is None:
            self.stats.rejected_unauthorized += 1
            log.info("session %s rejected: UNAUTHORIZED", service)
            await self._reject(
                ws,
                ErrorCode.UNAUTHORIZED,
                "a valid API key is required (?token= or X-Api-Key)",
                p.CLOSE_POLICY_VIOLATION,
            )
            return
        cfg = self.config
        if self.shutting_down:
            await self._reject(ws, ErrorCode.SERVER_BUSY, "the server is shutting down", p.CLOSE_TRY_AGAIN_LATER)
            return
        per_key_full = cfg.max_sessions_per_key is not None and self.per_key[label] >= cfg.max_sessions_per_key
        if self.stats.sessions >= cfg.max_sessions or per_key_full:
            self.stats.rejected_busy += 1
            what = "this API key's" if per_key_full else "the server's"
            log.info("session %s rejected: SERVER_BUSY (%s %s)", service, label, what)
            await self._reject(
                ws, ErrorCode.SERVER_BUSY, f"{what} session limit is reached; retry later", p.CLOSE_TRY_AGAIN_LATER
            )
            return
        session: Session = SttSession(self, ws, label) if service == "stt" else TtsSession(self, ws, label)
        self.stats.opened(service)
        self.per_key[label] += 1
        self.live.add(session)
        try:
            await session.run()
        finally:
            self.live.discard(session)
            self.stats.closed(service)
            self.per_key[label] -= 1
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
    server = SpeechServer(config)
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
