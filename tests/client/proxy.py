"""A TCP proxy on 127.0.0.1 that injects faults between the client and a real server.

Faults apply to connections as they are accepted, so a test can say "cut the next two
connections after 40 kB" and let retries reach the server through clean ones:

- ``cut(after_bytes, connections)``: drop the connection (RST) once that many client bytes passed.
- ``stall(after_bytes, connections)``: stop forwarding in both directions, sockets left open.
- ``refuse()`` / ``accept()``: close / reopen the listening socket (connection refused).
- ``reset_on_accept(connections)``: accept, then close at once (dies during the handshake).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass


@dataclass
class _Fault:
    kind: str  # "cut" | "stall" | "reset"
    after_bytes: int = 0


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

    def cut(self, after_bytes: int, connections: int = 1) -> None:
        self._faults += [_Fault("cut", after_bytes) for _ in range(connections)]

    def stall(self, after_bytes: int, connections: int = 1) -> None:
        self._faults += [_Fault("stall", after_bytes) for _ in range(connections)]

    def reset_on_accept(self, connections: int = 1) -> None:
        self._faults += [_Fault("reset") for _ in range(connections)]

    def clear(self) -> None:
        self._faults.clear()

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
        fault = self._faults.pop(0) if self._faults else None
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        try:
            if fault is not None and fault.kind == "reset":
                self.faults_injected += 1
                _abort(writer)
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
                with contextlib.suppress(ConnectionError, OSError, asyncio.IncompleteReadError):
                    while True:
                        data = await src.read(65536)
                        if not data:
                            break
                        if stalled.is_set():
                            await asyncio.Future()  # hold everything: a silent, open connection
                        if upstream and fault is not None:
                            room = fault.after_bytes - sent
                            if len(data) >= room:
                                dst.write(data[: max(0, room)])
                                self.faults_injected += 1
                                if fault.kind == "cut":
                                    cut.set()
                                    return
                                stalled.set()
                                await asyncio.Future()
                        sent += len(data)
                        dst.write(data)
                        await dst.drain()
                    with contextlib.suppress(OSError):
                        dst.write_eof()

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
