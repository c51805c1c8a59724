"""A bare WebSocket client for the server tests (the project's client is tested elsewhere)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import ssl
import time
from collections.abc import Sequence
from typing import Any

import av
import numpy as np
from websockets.asyncio.client import ClientConnection, connect

from voxbeam import protocol as p

TIMEOUT = 30.0
CHUNK = 3200  # 100 ms of 16 kHz s16le, as the spec recommends


def insecure_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def endpoint(server: Any, service: str) -> str:
    return server.url + (p.STT_PATH if service == "stt" else p.TTS_PATH)


async def connect_to(
    server: Any, service: str, *, auth: str | None = "header", key: str | None = None, **kw: Any
) -> ClientConnection:
    """Open a connection; ``auth`` is "header", "token" or None (no key)."""
    key = server.api_key if key is None else key
    url = endpoint(server, service)
    headers = {}
    if auth == "header":
        headers["X-Api-Key"] = key
    elif auth == "token":
        url += f"?token={key}"
    if url.startswith("wss://"):
        kw.setdefault("ssl", insecure_tls())
    return await connect(url, additional_headers=headers, open_timeout=TIMEOUT, max_size=None, **kw)


async def recv(ws: ClientConnection, timeout: float = TIMEOUT) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        frame = await ws.recv()
    assert isinstance(frame, str), "the server sends text frames only"
    msg: dict[str, Any] = json.loads(frame)
    return msg


async def send(ws: ClientConnection, msg: dict[str, Any]) -> None:
    await ws.send(json.dumps(msg))


async def init(ws: ClientConnection, **fields: Any) -> dict[str, Any]:
    await send(ws, {"type": "init", **fields})
    return await recv(ws)


async def expect_error(ws: ClientConnection, code: str) -> dict[str, Any]:
    msg = await recv(ws)
    assert msg["type"] == "error", msg
    assert msg["code"] == code, msg
    assert set(msg) <= {"type", "error", "code", "request_id"} and msg["error"], msg
    return msg


async def closed_with(ws: ClientConnection, timeout: float = TIMEOUT) -> int | None:
    """Wait for the server to close; the close code."""
    async with asyncio.timeout(timeout):
        await ws.wait_closed()
    return ws.close_code


async def ping_ok(ws: ClientConnection) -> None:
    await send(ws, {"type": "ping"})
    assert (await recv(ws)) == {"type": "pong"}


def audio_msg(pcm: bytes) -> dict[str, Any]:
    return {"type": "audio", "data": base64.b64encode(pcm).decode("ascii")}


async def synthesize(ws: ClientConnection, texts: Sequence[str]) -> bytes:
    """Send an utterance (the last text is final) and collect its audio file."""
    for i, text in enumerate(texts):
        await send(ws, {"type": "text", "text": text, "is_final": i == len(texts) - 1})
    data = bytearray()
    while True:
        msg = await recv(ws, 60)
        assert msg["type"] == "audio", msg
        chunk = base64.b64decode(msg["data"])
        assert len(chunk) <= 32 * 1024
        data += chunk
        if msg["is_final"]:
            return bytes(data)


async def tts_pcm(server: Any, texts: Sequence[str], rate: int = 16000, **init_fields: Any) -> bytes:
    async with await connect_to(server, "tts") as ws:
        ready = await init(ws, format="pcm", sample_rate=rate, **init_fields)
        assert ready["type"] == "ready", ready
        return await synthesize(ws, texts)


async def send_audio(ws: ClientConnection, pcm: bytes, chunk: int = CHUNK, realtime_rate: int | None = None) -> None:
    """Send ``pcm`` in chunks: as fast as the socket takes them, or paced like a live source at ``realtime_rate``."""
    started = asyncio.get_running_loop().time()
    for i in range(0, len(pcm), chunk):
        if realtime_rate:
            await asyncio.sleep(max(0.0, started + i / 2 / realtime_rate - asyncio.get_running_loop().time()))
        await send(ws, audio_msg(pcm[i : i + chunk]))


async def until_flush_done(ws: ClientConnection, timeout: float = 120) -> list[dict[str, Any]]:
    """Every message up to and including flush_done."""
    out = []
    while True:
        msg = await recv(ws, timeout)
        out.append(msg)
        if msg["type"] == "flush_done":
            return out


async def transcribe(server: Any, pcm: bytes, rate: int = 16000, **init_fields: Any) -> list[dict[str, Any]]:
    """One recognition session: every message after ready, up to flush_done."""
    async with await connect_to(server, "stt") as ws:
        ready = await init(ws, format="pcm", sample_rate=rate, **init_fields)
        assert ready["type"] == "ready", ready
        sender = asyncio.create_task(send_audio(ws, pcm))
        msgs = await _drain_while(ws, sender)
        await send(ws, {"type": "command", "command": "flush"})
        return msgs + await until_flush_done(ws)


async def _drain_while(ws: ClientConnection, task: asyncio.Task[None]) -> list[dict[str, Any]]:
    """Read messages while ``task`` sends (the server stops reading if we never read)."""
    msgs = []
    while not task.done():
        try:
            msgs.append(await recv(ws, 0.2))
        except TimeoutError:
            pass
    await task
    return msgs


def words(text: str) -> list[str]:
    """Lower-case words without punctuation (recognizers differ in casing and punctuation, and in whether
    they hear "the weather is" or "the weather's": a clitic 's is a word of its own here)."""
    return re.sub(r"(\w)'s\b", r"\1 's", re.sub(r"[^a-z0-9' ]+", " ", text.lower())).split()


def finals(msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in msgs if m["type"] == "transcript" and m["is_final"]]


def decode(data: bytes, rate: int = 16000) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode a whole file with PyAV: (samples, facts about the container)."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        facts = {"format": container.format.name, "codec": stream.codec_context.name, "rate": stream.rate}
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        parts = []
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                parts.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            parts.append(out.to_ndarray().reshape(-1))
    return (np.concatenate(parts) if parts else np.zeros(0, np.int16)), facts


def settled(server: Any, timeout: float = 10.0) -> dict[str, Any]:
    """/healthz once the sessions earlier tests closed are gone from it."""
    deadline = time.monotonic() + timeout
    while True:
        health: dict[str, Any] = server.health()
        if health["sessions"] == 0 or time.monotonic() > deadline:
            return health
        time.sleep(0.05)


def calibrated(server: Any, timeout: float = 90.0) -> dict[str, Any]:
    """/healthz once the workers have measured their speed (a background job at start that holds a worker
    and its memory for seconds: tests that measure memory or time start after it)."""
    deadline = time.monotonic() + timeout
    while (health := server.health())["audio_capacity"] is None:
        assert time.monotonic() < deadline, health
        time.sleep(0.1)
    return health


def silence(seconds: float, rate: int = 16000) -> bytes:
    return b"\0\0" * int(round(seconds * rate))


def worker_processes(server_pid: int) -> list[Any]:
    """The server's engine workers (its other child is multiprocessing's resource tracker)."""
    import psutil

    return [
        c for c in psutil.Process(server_pid).children() if "spawn_main" in " ".join(c.cmdline()) and c.is_running()
    ]
