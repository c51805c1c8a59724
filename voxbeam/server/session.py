"""What STT and TTS sessions share: a reader, an ordered writer, idle timeout, fatal ends.

The reader parses frames and starts work (worker calls run concurrently); everything the
client must see goes through one bounded queue, so replies keep the order of the requests
that caused them and a slow client stops the reader (TCP backpressure) instead of growing
memory. A fatal condition (oversized frame, idle, dead worker, shutdown) resolves ``_abort``:
``run`` then stops both tasks, sends the error and closes with the matching code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from voxbeam import protocol as p
from voxbeam.protocol import ErrorCode

if TYPE_CHECKING:
    from voxbeam.server.app import SpeechServer

log = logging.getLogger("voxbeam.server.session")

OUT_QUEUE = 16
# Deferred output: a coroutine that waits for work already started and returns its messages.
Deferred = Callable[[], Awaitable[list[p.ServerMessage]]]
OutItem = p.ServerMessage | Deferred


@dataclass(frozen=True)
class Abort:
    code: ErrorCode | None
    message: str
    close_code: int
    reason: str


class Session:
    """One WebSocket connection to an endpoint, after auth and admission."""

    service: Literal["stt", "tts"]

    def __init__(self, server: SpeechServer, ws: ServerConnection, key_label: str) -> None:
        self.server = server
        self.config = server.config
        self.ws = ws
        self.key_label = key_label
        self.initialized = False
        self.request_id: str | None = None
        self.request_ids: list[str] = []
        self.outcome = "ok"
        self.error_codes: list[str] = []
        self.started = time.monotonic()
        self._out: asyncio.Queue[OutItem] = asyncio.Queue(OUT_QUEUE)
        self._working = False
        self._abort: asyncio.Future[Abort] = asyncio.get_running_loop().create_future()

    # -- life cycle ---------------------------------------------------------------------

    async def run(self) -> None:
        reader = asyncio.create_task(self._read_loop(), name=f"{self.service}-reader")
        writer = asyncio.create_task(self._write_loop(), name=f"{self.service}-writer")
        try:
            waiting: set[asyncio.Future[Any]] = {reader, writer, self._abort}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for task in (reader, writer):
                if task.done() and not task.cancelled() and task.exception() is not None:
                    exc = task.exception()
                    log.error("%s session failed", self.service, exc_info=exc)
                    self.fail(ErrorCode.INTERNAL_ERROR, "internal server error", p.CLOSE_INTERNAL_ERROR)
        finally:
            for task in (reader, writer):
                task.cancel()
            await asyncio.gather(reader, writer, return_exceptions=True)
            try:
                if self._abort.done():
                    await self._close_with(self._abort.result())
            finally:
                await self.cleanup()

    async def _close_with(self, abort: Abort) -> None:
        with contextlib.suppress(ConnectionClosed, TimeoutError):
            async with asyncio.timeout(5):
                if abort.code is not None:
                    await self.ws.send(p.serialize(p.error(abort.code, abort.message, self.request_id)))
                await self.ws.close(abort.close_code, abort.reason)

    def fail(self, code: ErrorCode | None, message: str, close_code: int, reason: str = "") -> None:
        """End the session: send ``code`` (if any), then close with ``close_code``. First call wins."""
        if self._abort.done():
            return
        if code is not None:
            self.error_codes.append(code.value)
            self.server.stats.count_error(code.value)
            self.server.metrics.error(code.value)  # [metrics]
            self.outcome = "error"
        elif self.outcome == "ok":
            self.outcome = reason or "closed"
        self._abort.set_result(Abort(code, message, close_code, reason or (code.value if code else "")))

    def shutdown(self) -> None:
        self.fail(None, "", p.CLOSE_GOING_AWAY, "server shutting down")

    async def cleanup(self) -> None:
        """Release engine state; subclasses extend."""

    def summary(self) -> str:
        return ""

    # -- reading ------------------------------------------------------------------------

    def busy(self) -> bool:
        """Work in flight keeps a silent client from counting as idle."""
        return self._working or not self._out.empty()

    def mid_request(self) -> bool:
        """Whether the client is in the middle of something (a shutdown lets it finish); subclasses extend."""
        return self.busy()

    def drain(self) -> None:
        """During a shutdown: close with 1001 once nothing is in progress (the grace period bounds the wait)."""
        if self.server.shutting_down and not self.mid_request():
            self.shutdown()

    async def _read_loop(self) -> None:
        idle = self.config.idle_timeout
        while True:
            try:
                async with asyncio.timeout(idle):
                    frame = await self.ws.recv()
            except TimeoutError:
                if self.busy():
                    continue
                self.fail(ErrorCode.IDLE_TIMEOUT, f"no message for {idle:g} s; closing the session", p.CLOSE_NORMAL)
                return
            except ConnectionClosed:
                if self.outcome == "ok":
                    self.outcome = "client closed"
                return
            size = len(frame) if isinstance(frame, bytes) or frame.isascii() else len(frame.encode())
            if size > self.config.max_message_size:
                self.fail(
                    ErrorCode.MESSAGE_TOO_LARGE,
                    f"a message may be at most {self.config.max_message_size} bytes; this one is {size}",
                    p.CLOSE_MESSAGE_TOO_BIG,
                )
                return
            await self._dispatch(frame)

    async def _dispatch(self, frame: str | bytes) -> None:
        try:
            msg = p.parse_client_message(frame, self.service)
        except p.ProtocolError as exc:
            kind = p.message_type(frame)
            if not self.initialized and kind is not None and kind not in ("init", "ping") and kind in self.KNOWN:
                await self.report(ErrorCode.NOT_INITIALIZED, "send an init message first")
            else:
                await self.report(exc.code, exc.message)
            return
        if isinstance(msg, p.Ping):
            await self.emit(p.Pong())
        elif isinstance(msg, (p.SttInit, p.TtsInit)):
            if self.initialized:
                await self.report(ErrorCode.INVALID_MESSAGE, "the session is already initialized")
            else:
                await self.on_init(msg)
        elif not self.initialized:
            await self.report(ErrorCode.NOT_INITIALIZED, "send an init message first")
        else:
            await self.on_message(msg)

    KNOWN: tuple[str, ...] = ()

    async def on_init(self, msg: p.SttInit | p.TtsInit) -> None:
        raise NotImplementedError

    async def on_message(self, msg: p.ClientMessage) -> None:
        raise NotImplementedError

    # -- writing ------------------------------------------------------------------------

    async def emit(self, item: OutItem) -> None:
        """Queue a message (or deferred messages) for the client, in order; waits when the queue is full."""
        await self._out.put(item)

    async def report(self, code: ErrorCode, message: str, request_id: str | None = None) -> None:
        """A recoverable error: the client is told, the session goes on."""
        await self.emit(p.error(code, message, request_id or self.request_id))

    async def _write_loop(self) -> None:
        while True:
            item = await self._out.get()
            self._working = True
            try:
                msgs = await item() if callable(item) else [item]
                for msg in msgs:
                    if isinstance(msg, p.Error):
                        self.error_codes.append(msg.code)
                        self.server.stats.count_error(msg.code)
                        self.server.metrics.error(msg.code)  # [metrics]
                    await self.ws.send(p.serialize(msg))
            except ConnectionClosed:
                return
            finally:
                self._working = False
            self.drain()
