"""The seam between a session and the library that owns its socket.

``Session`` (and so ``SttSession`` / ``TtsSession``) sees one WebSocket connection as a
``Channel``: receive a frame, send a text frame, close with a code, drop the connection, and the
bookkeeping the front's admission reads (whose key, from which address, initialized yet). The
front wraps aiohttp's ``WebSocketResponse`` in ``AiohttpChannel``; a session never touches
aiohttp, so the front can change library without the session logic noticing.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import WSMsgType, web


class ChannelClosed(Exception):
    """The connection is gone (closed by either end, or dropped): nothing more can be read or sent."""


class Channel:
    """One WebSocket connection, as a session uses it."""

    def __init__(self, label: str, address: str | None) -> None:
        self.label = label  # the key's label ("key1"); never the key
        self.address = address  # the client's address (the peer's, or the one a trusted proxy names)
        self.initialized = False  # set at the session's first init: no longer counted as pre-init

    async def recv(self) -> str | bytes:
        """The next data frame (text as str, binary as bytes); ``ChannelClosed`` once the connection ends."""
        raise NotImplementedError

    async def send(self, text: str) -> None:
        """Send one text frame, waiting while the client does not read (TCP backpressure)."""
        raise NotImplementedError

    async def close(self, code: int, reason: str) -> None:
        """The closing handshake with ``code``."""
        raise NotImplementedError

    def abort(self) -> None:
        """Drop the connection at once, without a closing handshake (close 1006 for the client)."""
        raise NotImplementedError

    @property
    def close_code(self) -> int | None:
        raise NotImplementedError


class AiohttpChannel(Channel):
    """A ``Channel`` over aiohttp's server-side WebSocket."""

    def __init__(
        self, ws: web.WebSocketResponse, transport: asyncio.Transport | None, label: str, address: str | None
    ) -> None:
        super().__init__(label, address)
        self.ws = ws
        self._transport = transport

    async def recv(self) -> str | bytes:
        msg = await self.ws.receive()
        if msg.type is WSMsgType.TEXT or msg.type is WSMsgType.BINARY:
            return msg.data
        # CLOSE (answered by aiohttp), CLOSING, CLOSED, or ERROR: a frame over the hard cap, which aiohttp
        # has already answered with close 1009.
        raise ChannelClosed

    async def send(self, text: str) -> None:
        if self.ws.closed:
            raise ChannelClosed
        try:
            await self.ws.send_str(text)
        except ConnectionError as exc:  # the transport is closing or gone
            raise ChannelClosed from exc

    async def close(self, code: int, reason: str) -> None:
        try:
            await self.ws.close(code=code, message=reason.encode())
        except ConnectionError as exc:
            raise ChannelClosed from exc

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code


async def answer_and_close(request: web.BaseRequest, response: web.StreamResponse) -> web.StreamResponse:
    """Send ``response`` and close the connection at once: whatever the client sent after its headers (a
    body, WebSocket frames) is never read, not even to be discarded."""
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()  # closes the transport once the answer is written; reads nothing more
    # Let the connection's end run before aiohttp finishes the request: it drops the HTTP parser, so what
    # came after a refused upgrade request's headers (WebSocket frames) is not parsed as further requests.
    # Parsed, each piece of it became a kept "bad request" holding its bytes: 100 refused connections that
    # sent 2 MiB each left the front ~110 MiB larger, for good.
    await asyncio.sleep(0)
    return response


class LocalChannel(Channel):
    """A ``Channel`` whose far end is code in this process: the HTTP API drives a session through it.

    ``put`` hands the session a frame (waiting while ``inbound`` frames are queued), ``put_end`` tells it
    the client is gone; what the session sends comes out of ``get`` as text, None once it closed or dropped.
    """

    def __init__(self, label: str, address: str | None, inbound: int = 4, outbound: int = 256) -> None:
        super().__init__(label, address)
        self._in: asyncio.Queue[str | None] = asyncio.Queue(inbound)
        self._out: asyncio.Queue[str | None] = asyncio.Queue(outbound)
        self._code: int | None = None
        self._ending: asyncio.Future[None] | None = None

    # -- the session's end ----------------------------------------------------------------

    async def recv(self) -> str | bytes:
        frame = await self._in.get()
        if frame is None:
            self._in.put_nowait(None)  # every later read ends too
            raise ChannelClosed
        return frame

    async def send(self, text: str) -> None:
        if self._code is not None:
            raise ChannelClosed
        await self._out.put(text)

    async def close(self, code: int, reason: str) -> None:
        self._end(code)

    def abort(self) -> None:
        self._end(1006)

    def _end(self, code: int) -> None:
        if self._code is None:
            self._code = code
            with contextlib.suppress(asyncio.QueueFull):
                self._out.put_nowait(None)

    @property
    def close_code(self) -> int | None:
        return self._code

    # -- the driver's end -------------------------------------------------------------------

    async def put(self, frame: str) -> None:
        await self._in.put(frame)

    def put_end(self) -> None:
        """The driver is done (or gone): the session's next read ends it."""
        try:
            self._in.put_nowait(None)
        except asyncio.QueueFull:  # after the frames already queued
            self._ending = asyncio.ensure_future(self._in.put(None))

    async def get(self) -> str | None:
        """The session's next message, or None once it has closed the channel."""
        if self._code is not None and self._out.empty():
            return None
        return await self._out.get()
