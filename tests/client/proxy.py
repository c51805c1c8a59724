"""A TCP proxy on 127.0.0.1 that injects faults between the client and a real server.

Faults apply to connections as they are accepted, so a test can say "cut the next two
connections after 40 kB" and let retries reach the server through clean ones:

- ``cut(after_bytes, connections)``: drop the connection (RST) once that many client bytes passed.
- ``stall(after_bytes, connections)``: stop forwarding in both directions, sockets left open.
- ``refuse()`` / ``accept()``: close / reopen the listening socket (connection refused).
- ``reset_on_accept(connections)``: accept, then close at once (dies during the handshake).
- ``busy(connections)``: answer the WebSocket handshake itself, then a SERVER_BUSY error message
  and close code 1013, as a service at capacity does; the server never sees the connection.

``cut`` and ``stall`` count client bytes by default, server bytes with ``downstream=True`` (a TTS
session sends little and receives a lot). A stall with ``hold`` resets the connection after that
many seconds, as a network black hole eventually does, instead of holding it until ``close()``.
When no queued fault is left, ``policy`` (e.g. ``RandomFaults``) picks one per connection.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Fault:
    kind: str  # "cut" | "stall" | "reset" | "busy"
    after_bytes: int = 0
    downstream: bool = False  # count server -> client bytes instead of client -> server
    hold: float | None = None  # stall: reset the connection after this many seconds


class RandomFaults:
    """A seeded per-connection choice of fault: cut, stall or busy with the given probabilities.

    Byte offsets are drawn from ``at_bytes`` and counted downstream with probability
    ``downstream`` (so both STT uploads and TTS downloads are cut mid-stream). The sequence of
    choices is fixed by ``seed``; which record meets which fault depends on scheduling.
    """

    def __init__(
        self,
        seed: int,
        *,
        cut: float = 0.0,
        stall: float = 0.0,
        busy: float = 0.0,
        at_bytes: tuple[int, int] = (2_000, 60_000),
        downstream: float = 0.5,
        stall_hold: float | None = 5.0,
    ) -> None:
        if cut + stall + busy > 1.0:
            raise ValueError("fault probabilities add up to more than 1")
        self._rng = random.Random(seed)
        self._p = (cut, stall, busy)
        self._at = at_bytes
        self._downstream = downstream
        self._hold = stall_hold

    def __call__(self) -> _Fault | None:
        cut, stall, busy = self._p
        x = self._rng.random()
        after = self._rng.randint(*self._at)
        down = self._rng.random() < self._downstream
        if x < cut:
            return _Fault("cut", after, down)
        if x < cut + stall:
            return _Fault("stall", after, down, self._hold)
        if x < cut + stall + busy:
            return _Fault("busy")
        return None


class FaultProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._faults: list[_Fault] = []
        self._pumps: set[asyncio.Task[None]] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.accepted = 0
        self.faults_injected = 0
        self.injected: collections.Counter[str] = collections.Counter()  # by kind
        self.policy: Callable[[], _Fault | None] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def start(self) -> FaultProxy:
        await self.accept()
        return self

    async def accept(self) -> None:
        """(Re)open the listening socket on the same port."""
        if self._server is not None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        self._server = await asyncio.start_server(self._handle, sock=sock)

    async def refuse(self) -> None:
        """Close the listener: new connections are refused; open ones keep going."""
        if self._server is not None:
            self._server.close()
            self._server = None

    def cut(self, after_bytes: int, connections: int = 1, *, downstream: bool = False) -> None:
        self._faults += [_Fault("cut", after_bytes, downstream) for _ in range(connections)]

    def stall(
        self, after_bytes: int, connections: int = 1, *, downstream: bool = False, hold: float | None = None
    ) -> None:
        self._faults += [_Fault("stall", after_bytes, downstream, hold) for _ in range(connections)]

    def reset_on_accept(self, connections: int = 1) -> None:
        self._faults += [_Fault("reset") for _ in range(connections)]

    def busy(self, connections: int = 1) -> None:
        self._faults += [_Fault("busy") for _ in range(connections)]

    def clear(self) -> None:
        self._faults.clear()
        self.policy = None

    def _injected(self, kind: str) -> None:
        self.faults_injected += 1
        self.injected[kind] += 1

    async def close(self) -> None:
        await self.refuse()
        for w in list(self._writers):
            _abort(w)
        # Cancel the pumps, not the handlers: asyncio logs a cancelled client_connected_cb as an error.
        for t in list(self._pumps):
            t.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        fault = self._faults.pop(0) if self._faults else (self.policy() if self.policy is not None else None)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        try:
            if fault is not None and fault.kind == "reset":
                self._injected("reset")
                _abort(writer)
                return
            if fault is not None and fault.kind == "busy":
                with contextlib.suppress(ConnectionError, OSError, asyncio.IncompleteReadError, TimeoutError):
                    if await _answer_busy(reader, writer):
                        self._injected("busy")
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                _abort(writer)
                return
            self._writers.add(up_writer)
            stalled = asyncio.Event()
            cut = asyncio.Event()

            async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, upstream: bool) -> None:
                sent = 0
                try:
                    while True:
                        data = await src.read(65536)
                        if not data:
                            break
                        if stalled.is_set():
                            await asyncio.Future()  # hold everything: a silent, open connection
                        if fault is not None and upstream != fault.downstream and not cut.is_set():
                            room = fault.after_bytes - sent
                            if len(data) >= room:
                                dst.write(data[: max(0, room)])
                                self._injected(fault.kind)
                                if fault.kind == "cut":
                                    cut.set()
                                    return
                                stalled.set()
                                if fault.hold is not None:
                                    asyncio.get_running_loop().call_later(fault.hold, cut.set)
                                await asyncio.Future()
                        sent += len(data)
                        dst.write(data)
                        await dst.drain()
                    with contextlib.suppress(OSError):
                        dst.write_eof()
                except (ConnectionError, OSError, asyncio.IncompleteReadError):
                    # One end died (a killed server resets): the other end sees it die too, as it
                    # would without the proxy, instead of a connection that merely goes quiet.
                    _abort(dst)

            tasks = [
                asyncio.create_task(pump(reader, up_writer, True)),
                asyncio.create_task(pump(up_reader, writer, False)),
            ]
            cut_wait = asyncio.create_task(cut.wait())
            self._pumps.update((*tasks, cut_wait))
            await asyncio.wait([*tasks, cut_wait], return_when=asyncio.FIRST_COMPLETED)
            if cut.is_set():
                _abort(writer)
                _abort(up_writer)
            else:
                await asyncio.wait(tasks, return_when=asyncio.ALL_COMPLETED)
            for t in (*tasks, cut_wait):
                t.cancel()
            await asyncio.gather(*tasks, cut_wait, return_exceptions=True)
            self._pumps.difference_update((*tasks, cut_wait))
            _abort(up_writer)
            self._writers.discard(up_writer)
        finally:
            _abort(writer)
            self._handlers.discard(task)
            self._writers.discard(writer)


async def _answer_busy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Complete the WebSocket handshake, then say SERVER_BUSY and close with 1013 (sans-I/O websockets)."""
    from websockets.http11 import Request
    from websockets.server import ServerProtocol

    proto = ServerProtocol()
    request = None
    async with asyncio.timeout(10):
        while request is None:
            data = await reader.read(65536)
            if not data:
                return False
            proto.receive_data(data)
            request = next((e for e in proto.events_received() if isinstance(e, Request)), None)
    proto.send_response(proto.accept(request))
    busy = {"type": "error", "error": "the service is at capacity (fault proxy)", "code": "SERVER_BUSY"}
    proto.send_text(json.dumps(busy).encode())
    proto.send_close(1013, "try again later")
    for chunk in proto.data_to_send():
        writer.write(chunk)
    await writer.drain()
    # Give the client a moment to answer the close frame, as a server would, then hang up.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(2):
            while await reader.read(65536):
                pass
    return True


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0): the peer sees a reset, not a tidy FIN."""
    transport = writer.transport
    if transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    transport.abort()
