"""What STT and TTS sessions share: a reader, a dispatcher, an ordered writer, idle timeout, fatal ends.

The reader takes frames off the socket into a small inbox bounded in bytes; the dispatcher
parses them and starts work (worker calls run concurrently); everything the client must see
goes through one bounded queue, so replies keep the order of the requests that caused them. A
session whose work is behind stops dispatching, then its inbox fills and the reader stops
reading (TCP backpressure) instead of growing memory; until the inbox is full the socket is
still read, so the client's WebSocket pings are answered while its messages wait. A fatal
condition (oversized frame, idle, dead worker, shutdown) resolves ``_abort``: ``run`` then stops
the tasks, sends the error and closes with the matching code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from voxbeam import protocol as p
from voxbeam.protocol import ErrorCode
from voxbeam.protocol_state import Phase, ProtocolState, Role
from voxbeam.server.channel import Channel, ChannelClosed
from voxbeam.server.context import ServerContext

log = logging.getLogger("voxbeam.server.session")

OUT_QUEUE = 16
# Not a close code: the connection is dropped without a closing handshake.
CLOSE_ABORT = -1
# The inbox holds at least this much (and at least two of the largest messages allowed).
INBOX_BYTES = 1 << 20
# PendingReply output: waits for work already started, then gives its messages (all at once, or as
# they come: a streamed synthesis).
PendingReply = Callable[[], Awaitable[list[p.ServerMessage]] | AsyncIterator[p.ServerMessage]]
OutItem = p.ServerMessage | PendingReply


class ByteBudget:
    """Bytes in flight; ``acquire`` waits while over the limit (one waiter at a time)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._freed = asyncio.Event()

    async def acquire(self, n: int) -> None:
        # A single message larger than the limit still passes when nothing else is in flight.
        while self.used and self.used + n > self.limit:
            self._freed.clear()
            await self._freed.wait()
        self.used += n

    def release(self, n: int) -> None:
        self.used -= n
        self._freed.set()


@dataclass(frozen=True)
class Abort:
    code: ErrorCode | None
    message: str
    close_code: int
    reason: str


class Session:
    """One WebSocket connection to an endpoint, after auth and admission (the socket behind a ``Channel``)."""

    service: p.Service
    out_queue = OUT_QUEUE  # items waiting for the writer; the reader waits when it is full

    def __init__(self, ctx: ServerContext, ws: Channel, key_label: str) -> None:
        self.ctx = ctx
        self.config = ctx.config
        self.ws = ws
        self.key_label = key_label
        # The protocol's rules (message types, init first and once, recognition sessions and their
        # ids) live in the sans-I/O core; the session feeds it what comes and goes.
        self.state = ProtocolState(self.service, Role.SERVER)
        self.request_id: str | None = None
        self.request_ids: list[str] = []
        self.outcome = "ok"
        self.error_codes: list[str] = []
        self.started = time.monotonic()
        self._out: asyncio.Queue[OutItem] = asyncio.Queue(self.out_queue)
        self._inbox: asyncio.Queue[tuple[str | bytes, int]] = asyncio.Queue()
        self._inbox_budget = ByteBudget(max(INBOX_BYTES, 2 * self.config.max_message_size))
        self._working = False
        self._abort: asyncio.Future[Abort] = asyncio.get_running_loop().create_future()
        self._opened_at = self._active_at = asyncio.get_running_loop().time()
        self.admitted = False  # holds a session slot (from its first init on)
        self.live_slot = False  # holds one of the live streams the server admits

    # -- life cycle ---------------------------------------------------------------------

    async def run(self) -> None:
        tasks = (
            asyncio.create_task(self._read_loop(), name=f"{self.service}-reader"),
            asyncio.create_task(self._dispatch_loop(), name=f"{self.service}-dispatcher"),
            asyncio.create_task(self._write_loop(), name=f"{self.service}-writer"),
        )
        try:
            waiting: set[asyncio.Future[Any]] = {*tasks, self._abort}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    exc = task.exception()
                    log.error("%s session failed", self.service, exc_info=exc)
                    self.fail(ErrorCode.INTERNAL_ERROR, "internal server error", p.CLOSE_INTERNAL_ERROR)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            try:
                if self._abort.done():
                    await self._close_with(self._abort.result())
            finally:
                try:
                    await self.cleanup()
                finally:
                    if self.admitted:
                        self.ctx.release(self.service, self.key_label)
                    if self.live_slot:
                        self.ctx.release_live()

    async def _close_with(self, abort: Abort) -> None:
        if abort.close_code == CLOSE_ABORT:
            # A client that stopped reading, or never started, would not read a close frame either: drop
            # the connection (after the error, when there is one and its frame goes out at once).
            if abort.code is not None:
                with contextlib.suppress(ChannelClosed, TimeoutError):
                    async with asyncio.timeout(0.05):
                        await self.ws.send(p.serialize(p.error(abort.code, abort.message, self.request_id)))
            self.ws.abort()
            return
        with contextlib.suppress(ChannelClosed, TimeoutError):
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
            self.ctx.count_error(code.value)
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
        return self._working or not self._out.empty() or not self._inbox.empty()

    def mid_request(self) -> bool:
        """Whether the client is in the middle of something (a shutdown lets it finish); subclasses extend."""
        return self.busy()

    def drain(self) -> None:
        """During a shutdown: close with 1001 once nothing is in progress (the grace period bounds the wait)."""
        if self.ctx.shutting_down and not self.mid_request():
            self.shutdown()

    async def _read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                async with asyncio.timeout_at(self._deadline()):
                    frame = await self.ws.recv()
            except TimeoutError:
                if self._timed_out(loop.time()):
                    return
                continue
            except ChannelClosed:
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
            await self._inbox_budget.acquire(size)
            self._inbox.put_nowait((frame, size))

    def _deadline(self) -> float:
        """Loop time by which the client must do something: init in time, then not stay idle.

        Pings keep the connection alive but are not activity: a client that only pings holds a
        slot for nothing.
        """
        deadline = self._active_at + self.config.idle_timeout
        if not self.initialized:
            deadline = min(deadline, self._opened_at + self.config.init_timeout)
        return deadline

    def _timed_out(self, now: float) -> bool:
        """Whether the deadline that passed ends the session (and ends it)."""
        if not self.initialized and now >= self._opened_at + self.config.init_timeout:
            limit = self.config.init_timeout
            # Dropped at once, without waiting on a closing handshake: connections that never init must
            # cost their holder, not the server (15 s each held the address's connection slots).
            self.fail(ErrorCode.IDLE_TIMEOUT, f"no init within {limit:g} s; closing the connection", CLOSE_ABORT)
            return True
        if self.busy():  # work in flight: a silent client is waiting for it, not idle
            self._active_at = now
            return False
        if now >= self._active_at + self.config.idle_timeout:
            idle = self.config.idle_timeout
            self.fail(ErrorCode.IDLE_TIMEOUT, f"no message for {idle:g} s; closing the session", p.CLOSE_NORMAL)
            return True
        return False

    async def _dispatch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            frame, size = await self._inbox.get()
            self._inbox_budget.release(size)
            if p.message_type(frame) != "ping":
                self._active_at = loop.time()
            await self._dispatch(frame)

    @property
    def initialized(self) -> bool:
        return self.state.phase is Phase.READY

    async def _dispatch(self, frame: str | bytes) -> None:
        try:
            msg = p.parse_client_message(frame, self.service)
        except p.ProtocolError as exc:
            kind = p.message_type(frame)
            if kind is not None and kind not in ("init", "ping") and self.state.client_type_allowed(kind):
                # A message of a known type, malformed: before init, that it came too early says more.
                exc = self._too_early() or exc
            await self.report(exc.code, exc.message)
            return
        try:
            self.state.receive(msg)
        except p.ProtocolError as exc:
            await self.report(exc.code, exc.message)
            return
        if isinstance(msg, p.Ping):
            await self.emit(p.Pong())
        elif isinstance(msg, (p.SttInit, p.TtsInit)):
            self.ws.initialized = True  # no longer counted as pre-init
            if not self.admitted:
                live = msg.realtime if isinstance(msg, p.SttInit) else None
                refused = self.ctx.admit(self.service, self.key_label, live)
                if refused:
                    self.fail(ErrorCode.SERVER_BUSY, refused, p.CLOSE_TRY_AGAIN_LATER)
                    return
                self.admitted = True
                self.live_slot = bool(live)
            await self.on_init(msg)
        else:
            await self.on_message(msg)

    def _too_early(self) -> p.ProtocolError | None:
        if self.initialized:
            return None
        return p.ProtocolError(ErrorCode.NOT_INITIALIZED, "send an init message first")

    async def on_init(self, msg: p.SttInit | p.TtsInit) -> None:
        raise NotImplementedError

    async def on_message(self, msg: p.ClientMessage) -> None:
        raise NotImplementedError

    # -- writing ------------------------------------------------------------------------

    async def emit(self, item: OutItem) -> None:
        """Queue a message (or deferred messages) for the client, in order; waits when the queue is full."""
        if self.state.phase is Phase.INITIALIZING and isinstance(item, (p.SttReady, p.TtsReady, p.Error)):
            self.state.send(item)  # the init's outcome holds from now on, whenever the client sees it
        await self._out.put(item)

    async def report(self, code: ErrorCode, message: str, request_id: str | None = None) -> None:
        """A recoverable error: the client is told, the session goes on."""
        await self.emit(p.error(code, message, request_id or self.request_id))

    async def _write_loop(self) -> None:
        while True:
            item = await self._out.get()
            self._working = True
            try:
                if not callable(item):
                    await self._send(item)
                    continue
                produced = item()
                if isinstance(produced, AsyncIterator):
                    async for msg in produced:
                        await self._send(msg)
                else:
                    for msg in await produced:
                        await self._send(msg)
            except ChannelClosed:
                return
            finally:
                self._working = False
                self.drain()

    async def _send(self, msg: p.ServerMessage) -> None:
        if isinstance(msg, (p.Transcript, p.FlushDone)):
            self.state.send(msg)  # a recognition session's results under its own id, flush_done once
        if isinstance(msg, p.Error):
            self.error_codes.append(msg.code)
            self.ctx.count_error(msg.code)
        try:
            # A client that reads nothing for this long is gone or hostile: what it is owed is dropped.
            async with asyncio.timeout(self.config.send_timeout):
                await self.ws.send(p.serialize(msg))
        except TimeoutError:
            self.fail(None, "", CLOSE_ABORT, "the client read nothing for too long")
            raise ChannelClosed() from None
