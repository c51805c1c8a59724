"""One STT or TTS session: a WebSocket connection that has been initialised and said ``ready``.

A reader task owns the receiving side for the whole life of the connection and files messages
into an inbox, so that audio can be sent while transcripts arrive, and so that a session sitting
idle in the pool still notices a server close or an ``IDLE_TIMEOUT``. Every message sent and
received goes through the protocol's state machine (``voxbeam.protocol_state``); message types
this version does not know are ignored. A session serves one request at a time; after any
failure it is closed, never reused.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from voxbeam import audio, protocol
from voxbeam.client._stats import Stats
from voxbeam.client.connector import Connector, close_error
from voxbeam.client.recognition import AudioUpload, Finals, RecognitionResult
from voxbeam.errors import (
    AuthenticationError,
    ConnectionLostError,
    ProtocolViolationError,
    RequestTimeoutError,
    ServiceError,
    VoxBeamError,
    service_error,
)
from voxbeam.protocol import Service
from voxbeam.protocol_state import ProtocolState, Role

logger = logging.getLogger("voxbeam.client")

InitMessage = protocol.SttInit | protocol.TtsInit


class SessionState(enum.Enum):
    NEW = "new"
    CONNECTING = "connecting"
    IDLE = "idle"
    BUSY = "busy"
    CLOSED = "closed"


class _Signal(enum.Enum):
    CLOSED = "closed"  # the reader ended: the connection is gone
    SENDER_DONE = "sender_done"  # the audio sender finished or failed


_ids = itertools.count(1)


class Session:
    """A ready STT or TTS session. Created and opened by the pool; used by one request at a time."""

    def __init__(
        self,
        endpoint: str,
        kind: Service,
        init: InitMessage,
        connector: Connector,
        stats: Stats,
        *,
        on_closed: Callable[[Session], None] | None = None,
    ) -> None:
        self.id = next(_ids)
        self.endpoint = endpoint
        self.kind = kind
        self.init = init
        self.state = SessionState.NEW
        self.protocol = ProtocolState(kind, Role.CLIENT)
        self.ready: protocol.SttReady | protocol.TtsReady | None = None
        self.connected = False
        self.last_used = time.monotonic()
        # The pool's key for this session: kind + serialised init (computed once, used per release).
        self.key: tuple[Service, str] = (kind, protocol.serialize(init))
        self._connector = connector
        self._stats = stats
        self._on_closed = on_closed
        self._ws: ClientConnection | None = None
        self._inbox: asyncio.Queue[protocol.ServerMessage | _Signal] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._keepalive: asyncio.Task[None] | None = None
        self._close_error: VoxBeamError | None = None
        self._idle_error: ServiceError | None = None
        self._unknown: set[str] = set()
        # The spec suggests {"type":"ping"}; a service that answers it with an error gets no more.
        self._protocol_ping = True
        self._ping_sent_at = 0.0

    def __repr__(self) -> str:
        return f"<Session #{self.id} {self.kind} {self.state.value} endpoint={self._connector.redact(self.endpoint)}>"

    @property
    def closed(self) -> bool:
        return self.state is SessionState.CLOSED

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, send ``init`` and wait for ``ready``; raises a typed error otherwise."""
        self.state = SessionState.CONNECTING
        try:
            self._ws = await self._connector.connect(self.endpoint, self.kind)
        except BaseException as exc:
            if isinstance(exc, VoxBeamError):
                self._stats.incr("connect_failures")
            self.state = SessionState.CLOSED
            raise
        self.connected = True
        self._stats.incr("connections_opened")
        self._reader = asyncio.create_task(self._read_loop(), name=f"voxbeam-session-{self.id}-reader")
        timeout = self._connector.config.timeouts.ready
        try:
            await self._send(self.init, timeout)
            msg = await self._next(timeout, "ready")
            if isinstance(msg, protocol.Error):
                raise service_error(msg.code, msg.error, msg.request_id)
            if not isinstance(msg, (protocol.SttReady, protocol.TtsReady)):
                raise ProtocolViolationError(f"expected 'ready', got {msg.type!r}")
        except AuthenticationError as exc:
            await self.close()
            where = self._connector.display_url(self.endpoint, self.kind)
            raise AuthenticationError(f"{where} rejected the API key: {exc.message}") from None
        except BaseException:
            await self.close()
            raise
        self.ready = msg
        self.state = SessionState.IDLE
        self._stats.incr("sessions_opened")
        self._keepalive = asyncio.create_task(self._keepalive_loop(), name=f"voxbeam-session-{self.id}-ping")
        where = self._connector.display_url(self.endpoint, self.kind)
        logger.debug("session #%d ready on %s (%s)", self.id, where, msg.request_id)

    async def close(self) -> None:
        """Close the connection (bounded by close_timeout) and stop the helper tasks."""
        if self.state is not SessionState.CLOSED:
            self.state = SessionState.CLOSED
        current = asyncio.current_task()
        if self._keepalive is not None and self._keepalive is not current:
            self._keepalive.cancel()
        if self._ws is not None:
            try:
                await self._ws.close()
            except Exception:  # the peer may already be gone; closing is best effort
                pass
        if self._reader is not None and self._reader is not current:
            try:
                await asyncio.wait_for(asyncio.shield(self._reader), 2.0)
            except Exception:
                self._reader.cancel()
        self._closed_notify()

    def _closed_notify(self) -> None:
        callback, self._on_closed = self._on_closed, None
        if callback is not None:
            callback(self)

    # -- receiving -------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        ws = self._ws
        assert ws is not None
        try:
            async for frame in ws:
                try:
                    msg = protocol.parse_server_message(frame, self.kind, allow_unknown=True)
                    self.protocol.receive(msg)
                except protocol.ProtocolError as exc:
                    self._close_error = ProtocolViolationError(f"the service broke the protocol: {exc.message}")
                    await ws.close(protocol.CLOSE_PROTOCOL_ERROR, "protocol error")
                    break
                if isinstance(msg, protocol.Unknown):
                    if msg.kind not in self._unknown:  # one line per type, not one per message
                        self._unknown.add(msg.kind)
                        logger.debug("session #%d: ignoring messages of unknown type %r", self.id, msg.kind)
                    continue
                if isinstance(msg, protocol.Pong):
                    continue  # liveness is the WebSocket's own ping; this pong proves nothing more
                if self.state is SessionState.IDLE:
                    # Nobody is waiting: an idle session only hears about its own end (IDLE_TIMEOUT ...).
                    if isinstance(msg, protocol.Error):
                        self._on_idle_error(msg)
                    continue
                self._inbox.put_nowait(msg)
            if self._close_error is None:
                self._close_error = self._error_for_close(ws)
        except ConnectionClosed:
            self._close_error = self._error_for_close(ws)
        except Exception as exc:  # never let the reader die silently
            self._close_error = ConnectionLostError(self._connector.redact(f"connection failed: {exc!r}"))
        finally:
            was_idle = self.state is SessionState.IDLE
            self.state = SessionState.CLOSED
            self._inbox.put_nowait(_Signal.CLOSED)
            if self._keepalive is not None:
                self._keepalive.cancel()
            if was_idle:
                logger.debug("session #%d closed while idle: %s", self.id, self._close_error)
            self._closed_notify()

    def _on_idle_error(self, msg: protocol.Error) -> None:
        if msg.code == protocol.ErrorCode.INVALID_MESSAGE.value and time.monotonic() - self._ping_sent_at < 5.0:
            # Most likely the answer to our protocol ping, which the spec leaves undefined.
            self._protocol_ping = False
            logger.debug("session #%d: the service refused {'type': 'ping'} (%s); not sending it again", self.id, msg)
            return
        self._idle_error = service_error(msg.code, msg.error, msg.request_id)
        logger.debug("session #%d got %s while idle", self.id, msg.code)

    def _error_for_close(self, ws: ClientConnection) -> VoxBeamError:
        if self._idle_error is not None:
            return self._idle_error
        return close_error(ws.close_code, ws.close_reason, self._connector.redact)

    def failure(self) -> VoxBeamError:
        """A fresh exception saying why this session can no longer be used."""
        err = self._close_error or ConnectionLostError("the session is closed")
        if isinstance(err, ServiceError):
            return service_error(err.code, err.message, err.request_id)
        return type(err)(err.message)

    async def _get(self, timeout: float) -> protocol.ServerMessage | _Signal:
        if not self._inbox.empty():
            return self._inbox.get_nowait()
        # asyncio.timeout, not wait_for: no task per message.
        async with asyncio.timeout(timeout):
            return await self._inbox.get()

    async def _next(self, timeout: float, what: str) -> protocol.ServerMessage:
        if self.state is SessionState.CLOSED and self._inbox.empty():
            raise self.failure()
        try:
            item = await self._get(timeout)
        except TimeoutError:
            self._stats.incr("timeouts")
            raise RequestTimeoutError(f"no {what} from the service within {timeout}s") from None
        if isinstance(item, _Signal):
            raise self.failure()
        return item

    # -- sending ---------------------------------------------------------------------------

    async def _send(self, msg: protocol.ClientMessage, timeout: float | None) -> None:
        """Send one message; ``timeout=None`` when a watchdog elsewhere bounds the wait (audio)."""
        ws = self._ws
        if ws is None or self.state is SessionState.CLOSED:
            raise self.failure()
        self.protocol.send(msg)  # our own bug if it raises: never sent
        try:
            if timeout is None:
                await ws.send(protocol.serialize(msg))
                return
            async with asyncio.timeout(timeout):
                await ws.send(protocol.serialize(msg))
        except TimeoutError:
            self._stats.incr("timeouts")
            raise RequestTimeoutError(f"the service accepted no data for {timeout}s") from None
        except ConnectionClosed:
            if self._close_error is None:
                self._close_error = self._error_for_close(ws)
            raise self.failure() from None

    # -- exchanges -------------------------------------------------------------------------

    def _begin(self) -> None:
        if self.state is not SessionState.IDLE:
            if self.closed:
                raise self.failure()
            raise ProtocolViolationError(f"session #{self.id} is {self.state.value}")
        self.state = SessionState.BUSY
        self._idle_error = None  # an error heard while idle that did not end the session is history
        while not self._inbox.empty():  # nothing should be there; never hand a stale message to a new request
            self._inbox.get_nowait()

    def _end(self) -> None:
        if self.state is SessionState.BUSY:
            self.state = SessionState.IDLE
        self.last_used = time.monotonic()

    async def recognize(
        self,
        chunks: AsyncIterator[bytes],
        *,
        result_timeout: float,
        pacing_bytes_per_s: int | None = None,
        on_transcript: Callable[[protocol.Transcript], None] | None = None,
    ) -> RecognitionResult:
        """Stream ``chunks`` as one recognition session, flush, and collect its finals (``on_transcript``
        hears every transcript, partials too, as it arrives)."""
        self._begin()
        rate = self.init.sample_rate * audio.BYTES_PER_SAMPLE
        upload = AudioUpload(self._send, self._stats, chunks, result_timeout, pacing_bytes_per_s, rate)
        task = asyncio.create_task(upload.run(), name=f"voxbeam-session-{self.id}-sender")
        task.add_done_callback(lambda _t: self._inbox.put_nowait(_Signal.SENDER_DONE))
        finals = Finals(self.protocol.open.request_id, on_transcript)
        try:
            await self._receive_finals(finals, upload, task, result_timeout)
            await task
        except BaseException:
            task.cancel()
            try:
                await task
            except BaseException:  # its failure is already being reported (or superseded)
                pass
            raise
        self._end()
        return finals.result()

    async def _receive_finals(
        self, finals: Finals, upload: AudioUpload, sender: asyncio.Task[None], result_timeout: float
    ) -> None:
        """Receive until the ``flush_done`` that ends the recognition, watching both directions for a stall."""
        while True:
            try:
                item = await self._get(result_timeout)
            except TimeoutError:
                if upload.may_stay_silent(result_timeout, finals.heard_ms):
                    continue
                self._stats.incr("timeouts")
                raise RequestTimeoutError(
                    f"no transcript from the service within {result_timeout}s"
                    + (" after flush" if upload.flushed else " (audio stalled)")
                ) from None
            if item is _Signal.SENDER_DONE:
                if not sender.cancelled() and sender.exception() is not None:
                    raise sender.exception()  # type: ignore[misc]
                continue
            if item is _Signal.CLOSED:
                raise self.failure()
            assert not isinstance(item, _Signal)
            upload.progress = time.monotonic()
            if finals.add(item):
                return

    async def synthesize(self, text: str, *, result_timeout: float) -> bytes:
        """Send one utterance (``is_final: true``) and collect its audio until ``is_final``."""
        self._begin()
        await self._send(protocol.Text(text=text, is_final=True), result_timeout)
        parts: list[bytes] = []
        while True:
            msg = await self._next(result_timeout, "audio")
            if isinstance(msg, protocol.Audio):
                parts.append(msg.data)
                if msg.is_final:
                    break
            elif isinstance(msg, protocol.Error):
                raise service_error(msg.code, msg.error, msg.request_id)
            else:
                raise ProtocolViolationError(f"unexpected {msg.type!r} message on a TTS session")
        self._end()
        data = b"".join(parts)
        # A WAV streamed sentence by sentence declares an unknown length: write the sizes in.
        return audio.finalize_wav(data) if self.init.format == "wav" else data

    # -- keepalive -------------------------------------------------------------------------

    async def _keepalive_loop(self) -> None:
        """While idle in the pool: the protocol's ping (the service's idle timer) and a WebSocket ping.

        Only the WebSocket pong is required, and only while the session stays idle: a request
        that takes the session meanwhile proves it alive, and a loaded server may answer late.
        """
        config = self._connector.config
        ws = self._ws
        assert ws is not None
        while self.state is not SessionState.CLOSED:
            await asyncio.sleep(config.ping_interval)
            if self.state is not SessionState.IDLE:
                continue
            try:
                if self._protocol_ping:
                    self._ping_sent_at = time.monotonic()
                    await self._send(protocol.Ping(), config.ping_timeout)
                pong = await ws.ping()
                self._stats.incr("pings")
                try:
                    async with asyncio.timeout(config.ping_timeout):
                        await asyncio.shield(pong)
                except TimeoutError:
                    if self.state is not SessionState.IDLE:
                        continue
                    logger.debug("session #%d: no pong within %ss, closing", self.id, config.ping_timeout)
                    self._close_error = ConnectionLostError(
                        f"the service did not answer a WebSocket ping within {config.ping_timeout:g} s"
                    )
                    await self.close()
                    return
            except (VoxBeamError, ConnectionClosed):
                if self.state is SessionState.IDLE:
                    await self.close()
                    return
