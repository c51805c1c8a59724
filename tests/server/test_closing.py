"""The front's closes reach the client while it is still sending (``channel.LingeringServer``, no engines).

After a frame over the size cap, a text frame that is not UTF-8, or a refused request, the client's bytes still
in flight must not turn our close frame or our HTTP answer into a reset: the client gets the close code and the
reason (never 1006), or the status line, and no reset. (A reset while the client still sends makes clients such
as websockets' drop the connection without reading what had arrived: the fuzz test's 1006.)
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Iterator

from aiohttp import web

from voxbeam.server.channel import AiohttpChannel, ChannelClosed, LingeringServer, answer_and_close

CAP = 64 * 1024  # the test server's max_msg_size
BIG = 4 * 1024 * 1024  # still being sent when the server decides to close


async def handle(request: web.BaseRequest) -> web.StreamResponse:
    if request.path == "/refused":
        return await answer_and_close(request, web.Response(status=401, text="a key, please\n"))
    ws = web.WebSocketResponse(max_msg_size=CAP, heartbeat=None, timeout=5)
    await ws.prepare(request)
    channel = AiohttpChannel(ws, request.transport, "key", None)
    with contextlib.suppress(ChannelClosed):
        while await channel.recv() != "close":
            pass
        await channel.close(1008, "as asked")
    return ws


@contextlib.contextmanager
def serving() -> Iterator[int]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="closing-server", daemon=True)
    thread.start()

    async def start() -> web.ServerRunner:
        runner = web.ServerRunner(LingeringServer(handle, access_log=None))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner

    runner = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield runner.addresses[0][1]
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def exchange(port: int, head: bytes, data: bytes) -> tuple[bytes, OSError | None]:
    """Send ``head``, then ``data`` at once, then read to the end: what came back after the head's answer (a
    101's or not), and the error if the server reset the connection (while we sent, or before its EOF)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        got = b""
        while b"\r\n\r\n" not in got:
            got += sock.recv(4096)
        try:
            sock.sendall(data)
            while chunk := sock.recv(65536):
                got += chunk
        except OSError as exc:  # ECONNRESET, EPIPE
            return got, exc
    return got, None


UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def frame(opcode: int, payload: bytes) -> bytes:
    """A client's frame, masked with a zero key (the payload as is)."""
    n = len(payload)
    length = bytes([0x80 | n]) if n < 126 else bytes([0x80 | 127]) + struct.pack("!Q", n)
    return bytes([0x80 | opcode]) + length + b"\0\0\0\0" + payload


def closed_with(port: int, data: bytes) -> tuple[int, bytes]:
    """The server's close frame (code, reason) after ``data``; a reset fails the test."""
    got, reset = exchange(port, UPGRADE, data)
    assert got.startswith(b"HTTP/1.1 101") and reset is None, (got[:200], reset)
    close = got.split(b"\r\n\r\n", 1)[1]
    assert close[0] == 0x88 and close[1] < 126, close[:20]  # the server's only frame: a close, unmasked
    payload = close[2 : 2 + close[1]]
    return struct.unpack("!H", payload[:2])[0], payload[2:]


def test_a_client_still_sending_gets_the_close_frame_and_no_reset():
    big = frame(2, b"\0" * BIG)
    with serving() as port:
        assert closed_with(port, big)[0] == 1009  # over the cap: aiohttp's own close
        assert closed_with(port, frame(1, b"\xff\xfe") + big)[0] == 1007  # text that is not UTF-8
        assert closed_with(port, frame(1, b"close") + big) == (1008, b"as asked")  # ours


def test_a_refused_request_gets_its_answer_and_no_reset_while_its_body_still_arrives():
    with serving() as port:
        got, reset = exchange(
            port, f"POST /refused HTTP/1.1\r\nHost: x\r\nContent-Length: {BIG}\r\n\r\n".encode(), b"\0" * BIG
        )
        assert got.startswith(b"HTTP/1.1 401") and reset is None, (got[:200], reset)
