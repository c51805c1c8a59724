"""The HTTP API's upload spool on its own (no engines): a stalled upload is cut off with 408, one over the cap
without a declared length with 413 as soon as it passes it, the spool's budget answers 503, and the spooled
file is gone once the request is done, however it ended."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from voxbeam.server.openai_api import ApiError
from voxbeam.server.uploads import Spool

BOUNDARY = "b0undary"


def form_head(size_hint: int | None = None) -> bytes:
    length = f"Content-Length: {size_hint}\r\n" if size_hint is not None else "Transfer-Encoding: chunked\r\n"
    return (
        f"POST /up HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n{length}\r\n"
    ).encode()


def part(name: str, value: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


async def serving(spool: Spool, seen: list[str]) -> tuple[web.ServerRunner, int]:
    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        try:
            upload = await spool.receive(request)
        except ApiError as exc:
            return exc.response()
        seen.append(upload.path or "")
        assert upload.path and os.path.getsize(upload.path) == upload.size
        upload.close()
        return web.Response(text=f"{upload.size} {upload.get('model')}")

    runner = web.ServerRunner(web.Server(handle))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]


def exchange(port: int, pieces: list[bytes]) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for piece in pieces:
            try:
                sock.sendall(piece)
            except OSError:  # answered and closed before all of it was sent
                break
        sock.settimeout(10)
        try:
            return sock.recv(65536)
        except ConnectionResetError:
            return b"reset"


def run(spool: Spool, body: Callable[[int], Awaitable[None]]) -> None:
    async def main() -> None:
        runner, port = await serving(spool, [])
        try:
            await body(port)
        finally:
            await runner.cleanup()

    asyncio.run(main())


def test_a_small_upload_is_spooled_read_and_gone(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path), max_upload=1 << 20, budget=4 << 20, idle_timeout=5)

    async def body(port: int) -> None:
        payload = part("model", b"whisper-1") + part("file", b"\1\2" * 5000, "a.wav") + f"--{BOUNDARY}--\r\n".encode()
        got = await asyncio.to_thread(exchange, port, [form_head(len(payload)) + payload])
        assert got.startswith(b"HTTP/1.1 200") and got.endswith(b"10000 whisper-1"), got

    run(spool, body)
    assert not list(tmp_path.iterdir()) and spool.held == 0


def test_an_undeclared_upload_past_the_cap_is_a_413_and_leaves_nothing(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path), max_upload=256 * 1024, budget=4 << 20, idle_timeout=5)

    async def body(port: int) -> None:
        start = chunk(
            b"--" + BOUNDARY.encode() + b'\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'
        )
        pieces = [form_head() + start] + [chunk(b"\0" * 65536) for _ in range(8)]
        got = await asyncio.to_thread(exchange, port, pieces)
        assert got.startswith(b"HTTP/1.1 413") and b'"file_too_large"' in got, got

    run(spool, body)
    assert not list(tmp_path.iterdir()) and spool.held == 0


def test_a_stalled_upload_is_cut_off_with_408(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path), max_upload=1 << 20, budget=4 << 20, idle_timeout=0.5)

    async def body(port: int) -> None:
        start = (
            part("model", b"x")[:-2]
            + b"\r\n--"
            + BOUNDARY.encode()
            + b'\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'
        )
        got = await asyncio.to_thread(exchange, port, [form_head(100_000) + start + b"\0" * 1000])
        assert got.startswith(b"HTTP/1.1 408") and b'"upload_timeout"' in got, got

    run(spool, body)
    assert not list(tmp_path.iterdir()) and spool.held == 0


def test_past_the_spool_budget_an_upload_is_a_503_with_retry_after(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path), max_upload=1 << 20, budget=1 << 20, idle_timeout=5)
    spool.held = 900 * 1024  # other uploads in progress

    async def body(port: int) -> None:
        got = await asyncio.to_thread(exchange, port, [form_head(200_000)])
        assert got.startswith(b"HTTP/1.1 503") and b"Retry-After: 5" in got, got

    run(spool, body)
