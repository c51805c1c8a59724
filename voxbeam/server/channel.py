"""The seam between a session and the library that owns its socket.

``Session`` (and so ``SttSession`` / ``TtsSession``) sees one WebSocket connection as a
``Channel``: receive a frame, send a text frame, close with a code, drop the connection, and the
bookkeeping the front's admission reads (whose key, from which address, initialized yet). The
front wraps aiohttp's ``WebSocketResponse`` in ``AiohttpChannel``; a session never touches
aiohttp, so the front can change library without the session logic noticing. ``LingeringServer`` is the
aiohttp server the front runs: its connections close without losing their last words (see ``LingeringClose``).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiohttp import WSMsgType, web

# How long a connection the server has closed still reads (and drops) what its client sends, at most.
LINGER = 2.0


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
    body, WebSocket frames) never reaches aiohttp (the lingering close drops it; see ``LingeringClose``)."""
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()  # closes the transport once the answer is written; parses nothing more
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


class LingeringServer(web.Server):
    """aiohttp's low-level server, whose connections each sit behind a ``LingeringClose``."""

    def __call__(self) -> Any:  # the protocol factory asyncio calls for each accepted connection
        return LingeringClose(super().__call__())


class LingeringClose(asyncio.Protocol, asyncio.Transport):
    """Between a socket's transport and aiohttp's protocol, turning aiohttp's ``close()`` into a lingering close.

    aiohttp closes the socket as soon as its last bytes are written (a close frame, an HTTP error), even when
    the client is still sending: the rest of a frame over the size cap, frames after one it could not parse
    (invalid UTF-8, a protocol error), frames after our own close, a refused request's body. Closing a socket
    with received bytes unread makes the kernel answer with a reset (RST) instead of a FIN, and a client that
    is still sending then drops the connection without reading what had arrived: our close frame with its code
    and reason (the client sees 1006), or the HTTP answer. So, as websockets and nginx do: the queued bytes go
    out, then a FIN (half-close), and what the client still sends is read and dropped (``_Discard``) until it
    closes its end, or for at most ``LINGER`` seconds (then an abort). aiohttp is told the connection is lost
    at once, as after a plain close, so nothing of its (a refused request's buffered bytes) lives on meanwhile.
    TLS transports cannot half-close: they close as before (TLS's own closing handshake reads on meanwhile).
    ``abort()`` stays abortive (the init deadline's documented 1006).
    """

    def __init__(self, inner: asyncio.Protocol) -> None:
        super().__init__()
        self._inner = inner
        self._transport: asyncio.Transport | None = None
        self._lingering = False

    # -- the socket's protocol (until it lingers) -----------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._inner.connection_made(self)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    # -- aiohttp's transport ----------------------------------------------------------------

    def close(self) -> None:
        transport = self._transport
        if transport is None or self._lingering or transport.is_closing():
            return
        if not transport.can_write_eof():
            transport.close()
            return
        self._lingering = True
        loop = asyncio.get_running_loop()
        discard = _Discard()
        transport.set_protocol(discard)
        try:
            transport.write_eof()  # the FIN goes once the queued bytes are out
        except OSError:  # the client is gone already
            transport.abort()
        else:
            transport.resume_reading()  # in case aiohttp held reading back
            discard.deadline = loop.call_later(LINGER, transport.abort)
        loop.call_soon(self._inner.connection_lost, None)

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def is_closing(self) -> bool:
        return self._lingering or self._transport is None or self._transport.is_closing()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert self._transport is not None
        self._transport.write(data)

    def writelines(self, list_of_data: Any) -> None:
        assert self._transport is not None
        self._transport.writelines(list_of_data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default) if self._transport is not None else default

    def pause_reading(self) -> None:
        if self._transport is not None and not self._lingering:
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._transport is not None and not self._lingering:
            self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport is not None and self._transport.is_reading()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() if self._transport is not None else 0


class _Discard(asyncio.BufferedProtocol):
    """A lingering socket's protocol: what arrives is read into one scratch buffer (shared: it is never read
    back, so the bytes cost no memory) and dropped; the client's EOF closes the socket."""

    scratch = memoryview(bytearray(65536))

    def __init__(self) -> None:
        self.deadline: asyncio.TimerHandle | None = None

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.scratch

    def buffer_updated(self, nbytes: int) -> None:
        pass

    def eof_received(self) -> bool:
        return False  # the client has closed its end too: the transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
