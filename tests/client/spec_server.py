"""A speech service that does what the VoxNexus spec's text says, and nothing more: a protocol double.

It is not an engine and not our server. What it does (and our server does differently):

- ``ready`` has the spec's fields only: no ``model``.
- ``{"type": "ping"}`` is accepted and answered with nothing (the spec defines no ``pong``).
- Every ``unknown_every``-th message it sends is preceded by one of a type the spec does not
  define (``{"type": "status", ...}``), as a newer service might send.
- After ``idle_timeout`` seconds without a client message it sends an ``IDLE_TIMEOUT`` error
  and closes (the spec names no idle time; 60 s by default, configurable so tests need not wait).
- One ``request_id`` per connection, as in the spec's examples (ours starts a new one per flush).
- Optional WebSocket-level keepalive pings from the server (``ping_interval``).
- Either service can be left out (``services=("tts",)``): its path then answers HTTP 404.
- ``ready_extra``: fields a service adds to its STT ``ready`` beside the spec's (none by default),
  such as the ``capacity`` some services advertise there instead of on ``/healthz``; it has no
  ``/healthz`` of its own.

"Recognition" is deterministic: the final transcript of a flushed recognition session is
``"<milliseconds> ms <first 8 hex of the audio's SHA-256>"``, so equal audio gives equal text
and any lost, doubled or reordered chunk shows. Synthesis returns a WAV of silence lasting
60 ms per character. Languages: en-US only; voices: ``vl-jenny`` (en-US) and ``vl-xiaoxiao`` (zh-CN).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import io
import itertools
import json
import uuid
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from voxbeam.client.sync import BackgroundLoop

STT_PATH = "/v1/stt/realtime"
TTS_PATH = "/v1/tts/realtime"
VOICES = {"vl-jenny": "en-US", "vl-xiaoxiao": "zh-CN"}
LANGUAGES = ("en-US",)


def transcript_for(pcm: bytes, sample_rate: int) -> str:
    """What the double "recognises" in ``pcm``: its length and a digest of its bytes."""
    ms = len(pcm) * 1000 // (2 * sample_rate)
    return f"{ms} ms {hashlib.sha256(pcm).hexdigest()[:8]}"


@dataclass
class Counters:
    connections: int = 0
    rejected: int = 0
    idle_closes: int = 0
    unknown_sent: int = 0
    pings_received: int = 0
    flushes: int = 0
    utterances: int = 0
    open_now: int = 0
    peak_open: int = 0
    close_codes: list[int | None] = field(default_factory=list)


class SpecServer:
    """Run with ``async with SpecServer(...) as srv`` (or ``ThreadedSpecServer`` for sync code)."""

    def __init__(
        self,
        *,
        api_key: str = "spec-key",
        services: tuple[str, ...] = ("stt", "tts"),
        idle_timeout: float = 60.0,
        unknown_every: int = 7,
        ping_interval: float | None = None,
        ping_timeout: float = 10.0,
        decode_speed: float | None = None,
        ready_extra: dict[str, Any] | None = None,
    ) -> None:
        self.api_key = api_key
        self.ready_extra = dict(ready_extra or {})
        # Times real time a flushed recognition takes, in silence (a busy service): None answers at once.
        self.decode_speed = decode_speed
        self.services = services
        self.idle_timeout = idle_timeout
        self.unknown_every = unknown_every
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.counters = Counters()
        self.port = 0
        self._server: Server | None = None
        self._sent = itertools.count(1)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def start(self) -> SpecServer:
        self._server = await serve(
            self._handler,
            "127.0.0.1",
            0,
            process_request=self._process_request,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout if self.ping_interval else None,
            compression=None,
            max_size=2**24,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> SpecServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- HTTP: routing and auth ------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        service = {STT_PATH: "stt", TTS_PATH: "tts"}.get(parts.path.rstrip("/"))
        if service is None or service not in self.services:
            return connection.respond(HTTPStatus.NOT_FOUND, "no such endpoint\n")
        offered = [request.headers.get("X-Api-Key") or "", *parse_qs(parts.query).get("token", [])]
        if not any(hmac.compare_digest(k.encode(), self.api_key.encode()) for k in offered if k):
            self.counters.rejected += 1
            return connection.respond(HTTPStatus.UNAUTHORIZED, "invalid API key\n")
        return None

    # -- WebSocket -------------------------------------------------------------------------

    async def _send(self, ws: ServerConnection, msg: dict[str, Any]) -> None:
        if self.unknown_every and next(self._sent) % self.unknown_every == 0:
            self.counters.unknown_sent += 1
            await ws.send(json.dumps({"type": "status", "note": "a message type the spec does not define"}))
        await ws.send(json.dumps(msg))

    async def _handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        service = "stt" if urlsplit(ws.request.path).path.rstrip("/") == STT_PATH else "tts"
        c = self.counters
        c.connections += 1
        c.open_now += 1
        c.peak_open = max(c.peak_open, c.open_now)
        try:
            await (self._stt(ws) if service == "stt" else self._tts(ws))
        except ConnectionClosed:
            pass
        finally:
            c.open_now -= 1
            c.close_codes.append(ws.close_code)

    async def _messages(self, ws: ServerConnection) -> AsyncIterator[dict[str, Any]]:
        """Client messages until the client leaves or stays silent for ``idle_timeout``."""
        while True:
            try:
                async with asyncio.timeout(self.idle_timeout):
                    frame = await ws.recv()
            except TimeoutError:
                self.counters.idle_closes += 1
                with contextlib.suppress(ConnectionClosed):
                    await ws.send(
                        json.dumps(
                            {
                                "type": "error",
                                "error": f"no message for {self.idle_timeout:g} s",
                                "code": "IDLE_TIMEOUT",
                            }
                        )
                    )
                    await ws.close(1000, "idle")
                return
            msg = json.loads(frame)
            if msg.get("type") == "ping":
                self.counters.pings_received += 1
                continue  # the spec's clients send it; the spec defines no answer
            yield msg

    async def _error(self, ws: ServerConnection, code: str, text: str, request_id: str | None) -> None:
        await self._send(ws, {"type": "error", "error": text, "code": code, "request_id": request_id})

    async def _stt(self, ws: ServerConnection) -> None:
        request_id = "req_" + uuid.uuid4().hex[:10]
        ready = False
        rate = 16000
        timestamps = False
        pcm = bytearray()
        chunks = 0
        async for msg in self._messages(ws):
            kind = msg.get("type")
            if kind == "init":
                language = msg.get("language", "en-US")
                if language not in LANGUAGES:
                    await self._error(ws, "UNSUPPORTED_LANGUAGE", f"language {language} is not supported", None)
                    continue
                rate = int(msg.get("sample_rate", 16000))
                timestamps = bool(msg.get("enable_timestamps", False))
                ready = True
                await self._send(
                    ws,
                    {
                        "type": "ready",
                        "request_id": request_id,
                        "language": language,
                        "format": "pcm",
                        "sample_rate": rate,
                        **self.ready_extra,
                    },
                )
            elif not ready:
                await self._error(ws, "NOT_INITIALIZED", "send init first", None)
            elif kind == "audio":
                pcm += base64.b64decode(msg["data"])
                chunks += 1
                if chunks % 5 == 0:
                    heard = f"{len(pcm) * 1000 // (2 * rate)} ms so far"
                    await self._send(
                        ws, {"type": "transcript", "request_id": request_id, "text": heard, "is_final": False}
                    )
            elif kind == "command" and msg.get("command") == "flush":
                self.counters.flushes += 1
                if pcm:
                    ms = len(pcm) * 1000 // (2 * rate)
                    if self.decode_speed:
                        await asyncio.sleep(ms / 1000 / self.decode_speed)
                    final: dict[str, Any] = {
                        "type": "transcript",
                        "request_id": request_id,
                        "text": transcript_for(bytes(pcm), rate),
                        "is_final": True,
                        "language": "en",
                        "confidence": 0.9,
                        "offset": 0,
                        "duration": ms,
                    }
                    if timestamps:
                        final["words"] = [{"word": "clip", "offset": 0, "duration": ms, "confidence": 0.9}]
                    await self._send(ws, final)
                await self._send(ws, {"type": "flush_done", "request_id": request_id})
                pcm.clear()
                chunks = 0
            else:
                await self._error(ws, "INVALID_MESSAGE", f"unexpected {kind!r}", request_id)

    async def _tts(self, ws: ServerConnection) -> None:
        request_id = "req_" + uuid.uuid4().hex[:10]
        ready = False
        rate = 16000
        fmt = "wav"
        text = ""
        async for msg in self._messages(ws):
            kind = msg.get("type")
            if kind == "init":
                voice = msg.get("voice_id") or "vl-jenny"
                if voice not in VOICES:
                    await self._error(ws, "VOICE_NOT_FOUND", "Invalid voice_id", request_id)
                    continue
                fmt = msg.get("format", "wav")
                if fmt not in ("wav", "pcm"):
                    await self._error(ws, "UNSUPPORTED_FORMAT", f"format {fmt} is not supported", request_id)
                    continue
                rate = int(msg.get("sample_rate", 16000))
                ready = True
                await self._send(
                    ws,
                    {
                        "type": "ready",
                        "request_id": request_id,
                        "voice_id": voice,
                        "language": VOICES[voice],
                        "format": fmt,
                        "sample_rate": rate,
                    },
                )
            elif not ready:
                await self._error(ws, "NOT_INITIALIZED", "send init first", None)
            elif kind == "text":
                text += str(msg.get("text", ""))
                if not msg.get("is_final"):
                    continue
                self.counters.utterances += 1
                pcm = b"\0\0" * (rate * 60 * len(text) // 1000)
                text = ""
                data = pcm if fmt == "pcm" else _wav(pcm, rate)
                step = 16 * 1024
                for i in range(0, len(data), step):
                    piece = data[i : i + step]
                    last = i + step >= len(data)
                    await self._send(ws, {"type": "audio", "data": base64.b64encode(piece).decode(), "is_final": last})
            else:
                await self._error(ws, "INVALID_MESSAGE", f"unexpected {kind!r}", request_id)


def _wav(pcm: bytes, rate: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return out.getvalue()


class ThreadedSpecServer:
    """A ``SpecServer`` on its own background loop, for synchronous code (Beam pipelines, jobs)."""

    def __init__(self, **kw: Any) -> None:
        self.loop = BackgroundLoop(name="spec-server")
        self.server: SpecServer = self.loop.run(SpecServer(**kw).start(), timeout=10)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def api_key(self) -> str:
        return self.server.api_key

    @property
    def counters(self) -> Counters:
        return self.server.counters

    def close(self) -> None:
        try:
            self.loop.run(self.server.close(), timeout=30)
        finally:
            self.loop.close()

    def __enter__(self) -> ThreadedSpecServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
