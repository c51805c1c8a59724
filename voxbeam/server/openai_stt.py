"""``POST /v1/audio/transcriptions`` and ``/v1/audio/translations``: an upload through a bulk STT session.

One code path: the upload is decoded to 16 kHz PCM exactly as VoxBeam's client decodes a file
(``audio.decode_to_pcm``), and fed, through a ``LocalChannel``, to an ``SttSession`` as a bulk
WebSocket client would feed it (``realtime: false``, timestamps on, one flush). So the session's
admission (slots, per-key share, load), fair queues and batched decoding are the WebSocket ones, and
the same file gives the same finals either way. The response is built from those finals
(``openai_formats``); with ``stream=true`` each final is sent as it comes, as a server-sent event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import TypeVar

from aiohttp import web

from voxbeam import audio
from voxbeam import protocol as p
from voxbeam.errors import AudioError
from voxbeam.protocol import ErrorCode
from voxbeam.server import openai_formats as fmt
from voxbeam.server.channel import LocalChannel
from voxbeam.server.context import ServerContext
from voxbeam.server.openai_api import STT_ALIASES, ApiError
from voxbeam.server.session import Session
from voxbeam.server.stt import SttSession
from voxbeam.server.uploads import Spool, Upload

RATE = 16000
FRAME_MS = 1000  # PCM per audio message: 32 KiB (43 KiB of base64, well under --max_message_size)
GRANULARITIES = ("word", "segment")
GONE_CHECK_S = 1.0  # how often a request waiting for its transcript looks whether its client is still there
T = TypeVar("T")
# A session's error, as the HTTP status OpenAI's clients expect for it.
_STATUS = {
    ErrorCode.SERVER_BUSY: HTTPStatus.SERVICE_UNAVAILABLE,
    ErrorCode.INTERNAL_ERROR: HTTPStatus.SERVICE_UNAVAILABLE,
    ErrorCode.IDLE_TIMEOUT: HTTPStatus.SERVICE_UNAVAILABLE,
}


@dataclass(frozen=True)
class Request:
    """What a transcription request asks for, checked."""

    init: p.SttInit
    response_format: str
    granularities: frozenset[str]
    stream: bool
    task: str


class Transcriber:
    def __init__(
        self, ctx: ServerContext, spool: Spool, track: Callable[[Session], None], untrack: Callable[[Session], None]
    ) -> None:
        self.ctx = ctx
        self.spool = spool
        self._track, self._untrack = track, untrack

    async def handle(self, request: web.BaseRequest, label: str, address: str | None, task: str) -> web.StreamResponse:
        upload = await self.spool.receive(request)
        try:
            asked = self.parse(upload, task)
            if upload.path is None:
                raise ApiError(HTTPStatus.BAD_REQUEST, "'file' is required: the audio, as a multipart file", "file")
            decoded: list[float] = []
            async with contextlib.aclosing(self.recognize(upload.path, asked.init, label, address, decoded)) as finals:
                if asked.stream:
                    return await self._stream(request, finals)
                got = await _unless_gone(request, _collect(finals))
            ends = max((t.offset + t.duration for t in got), default=0) / 1000
            duration_s = decoded[0] if decoded else ends
            language = next((t.language for t in got if t.language), asked.init.language) or self._language(asked)
            text = fmt.body(got, asked.response_format, task, language, duration_s, set(asked.granularities))
            response = web.Response(text=text, content_type=fmt.CONTENT_TYPES[asked.response_format])
            response.headers["Server"] = "VoxBeam"
            return response
        finally:
            upload.close()

    async def _stream(self, request: web.BaseRequest, finals: AsyncIterator[p.Transcript]) -> web.StreamResponse:
        # The first final (or the error that comes instead) before the 200: a refusal is still a status.
        first = await anext(finals, None)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
        response.headers["Server"] = "VoxBeam"
        await response.prepare(request)
        texts = []
        try:
            if first is not None:
                texts.append(first.text.strip())
                await response.write(fmt.sse({"type": "transcript.text.delta", "delta": first.text.strip()}))
            async for t in finals:
                delta = (" " if texts else "") + t.text.strip()
                texts.append(t.text.strip())
                await response.write(fmt.sse({"type": "transcript.text.delta", "delta": delta}))
            await response.write(fmt.sse({"type": "transcript.text.done", "text": " ".join(x for x in texts if x)}))
        except ApiError as exc:  # past the status line: the error goes in the stream
            await response.write(fmt.sse({"type": "error", "error": {"message": exc.message, "code": exc.code}}))
        await response.write_eof()
        return response

    def parse(self, upload: Upload, task: str) -> Request:
        """The form's fields as a request; ApiError (400) naming the field that is wrong."""
        response_format = (upload.get("response_format") or "json").strip().lower()
        if response_format not in fmt.FORMATS:
            formats = ", ".join(fmt.FORMATS)
            raise ApiError(HTTPStatus.BAD_REQUEST, f"response_format must be one of {formats}", "response_format")
        asked = upload.fields.get("timestamp_granularities[]", []) + upload.fields.get("timestamp_granularities", [])
        granularities = frozenset(g.strip().lower() for g in asked if g.strip())
        if granularities - set(GRANULARITIES):
            message = "timestamp_granularities: word or segment"
            raise ApiError(HTTPStatus.BAD_REQUEST, message, "timestamp_granularities")
        if granularities and response_format != "verbose_json":
            message = "timestamp_granularities needs response_format verbose_json"
            raise ApiError(HTTPStatus.BAD_REQUEST, message, "timestamp_granularities")
        stream = (upload.get("stream") or "false").strip().lower() in ("true", "1")
        if stream and response_format not in ("json", "text"):
            raise ApiError(HTTPStatus.BAD_REQUEST, "stream=true needs response_format json or text", "stream")
        temperature = upload.get("temperature")
        if temperature is not None and temperature.strip():
            try:
                value = float(temperature)
            except ValueError:
                raise ApiError(HTTPStatus.BAD_REQUEST, "temperature must be a number", "temperature") from None
            if value != 0:
                message = (
                    "only temperature 0 is served: this server decodes with beam search (5 beams), no sampling; "
                    "leave temperature out or send 0"
                )
                raise ApiError(HTTPStatus.BAD_REQUEST, message, "temperature")
        model = self._model(upload.get("model"), task)
        language = (upload.get("language") or "").strip() or None
        if task == "translate":
            language = None  # what is spoken is detected; the text is English
        detect = language is None and self._multilingual(model)
        init = p.SttInit(
            language=language,
            enable_timestamps=True,
            enable_language_detection=detect,
            realtime=False,
            prompt=(upload.get("prompt") or "").strip() or None,
            task="translate" if task == "translate" else None,
            model=model,
        )
        return Request(init, response_format, granularities, stream, task)

    def _language(self, asked: Request) -> str | None:
        """The language an English-only model transcribes (its finals do not say, as detection was not asked)."""
        found = self.ctx.stt_models.get(asked.init.model) if asked.init.model else self.ctx.stt_model
        return found.languages[0] if found and not found.detects_language else None

    def _multilingual(self, model: str | None) -> bool:
        found = self.ctx.stt_models.get(model) if model else self.ctx.stt_model
        return bool(found and found.detects_language)

    def _model(self, asked: str | None, task: str) -> str | None:
        """The served model a request's ``model`` names (None: the default). OpenAI's names pick the default, or
        for a translation the first multilingual model served; a translation without one is a 400."""
        name = (asked or "").strip()
        served = self.ctx.stt_models
        if name and name not in STT_ALIASES:
            if name not in served:
                listed = ", ".join([*served, *STT_ALIASES])
                message = f"model {name!r} is not served here; use one of {listed}"
                raise ApiError(HTTPStatus.BAD_REQUEST, message, "model", "model_not_found")
            if task == "translate" and not served[name].detects_language:
                raise self._no_translation(name)
            return None if served[name] is self.ctx.stt_model else name
        if task != "translate" or self.ctx.stt_model.detects_language:
            return None
        multilingual = next((m.name for m in served.values() if m.detects_language), None)
        if multilingual is None:
            raise self._no_translation(self.ctx.stt_model.name)
        return multilingual

    def _no_translation(self, model: str) -> ApiError:
        message = (
            f"translation needs a multilingual model and {model} is English-only: run the server with "
            "--stt_model tiny.en,base (pip install 'voxbeam[multilingual]')"
        )
        return ApiError(HTTPStatus.BAD_REQUEST, message, "model", "model_not_multilingual")

    async def recognize(
        self, path: str, init: p.SttInit, label: str, address: str | None, decoded: list[float]
    ) -> AsyncGenerator[p.Transcript, None]:
        """The finals of ``path`` through a bulk STT session, in order; ApiError for a refusal or bad audio."""
        channel = LocalChannel(label, address)
        session = SttSession(self.ctx, channel, label)
        self._track(session)
        run = asyncio.create_task(session.run(), name="http-stt-session")
        feeding: asyncio.Task[None] | None = None
        try:
            await channel.put(p.serialize(init))
            ready = await self._next(channel)
            if not isinstance(ready, p.SttReady):
                raise self._refused(ready)
            feeding = asyncio.create_task(self._feed(channel, path, decoded))
            while True:
                msg = await self._next(channel)
                if isinstance(msg, p.Transcript):
                    if msg.is_final:
                        yield msg
                elif isinstance(msg, p.FlushDone):
                    break
                elif isinstance(msg, p.Error):
                    raise self._refused(msg)
            await feeding  # the decode's own error (a file that breaks off) once its audio is done
        finally:
            if feeding is not None and not feeding.done():
                feeding.cancel()
            channel.put_end()
            await asyncio.gather(run, *(t for t in (feeding,) if t is not None), return_exceptions=True)
            self._untrack(session)

    async def _next(self, channel: LocalChannel) -> p.ServerMessage | None:
        frame = await channel.get()
        return None if frame is None else p.parse_server_message(frame, "stt", allow_unknown=True)

    def _refused(self, msg: p.ServerMessage | None) -> ApiError:
        if not isinstance(msg, p.Error):
            return ApiError(HTTPStatus.SERVICE_UNAVAILABLE, "the recognition session ended early", code="server_error")
        try:
            code: ErrorCode | None = ErrorCode(msg.code)
        except ValueError:
            code = None
        status = _STATUS.get(code, HTTPStatus.BAD_REQUEST) if code else HTTPStatus.BAD_REQUEST
        if code is ErrorCode.SERVER_BUSY and "API key" in msg.error:
            status = HTTPStatus.TOO_MANY_REQUESTS
        later = status in (HTTPStatus.SERVICE_UNAVAILABLE, HTTPStatus.TOO_MANY_REQUESTS)
        headers = {"Retry-After": "1"} if later else {}
        return ApiError(HTTPStatus(status), msg.error, code=msg.code.lower(), headers=headers)

    async def _feed(self, channel: LocalChannel, path: str, decoded: list[float]) -> None:
        """The file as audio messages of FRAME_MS, decoded in a thread (the event loop serves the sockets), then
        a flush; a file that cannot be decoded (or breaks off) is a 400 once what did decode is recognized."""
        chunks = audio.decode_to_pcm(path, RATE, FRAME_MS)
        total = 0
        try:
            while (pcm := await asyncio.to_thread(_next_chunk, chunks)) is not None:
                total += len(pcm)
                await channel.put(p.serialize(p.Audio(data=pcm)))
        except AudioError as exc:
            message = f"the file cannot be read as audio: {exc}"
            raise ApiError(HTTPStatus.BAD_REQUEST, message, "file", "invalid_audio") from None
        finally:
            decoded.append(total / 2 / RATE)
            # Not after a cancel: the session is being ended then.
            if not asyncio.current_task().cancelling():  # type: ignore[union-attr]
                await channel.put(json.dumps({"type": "command", "command": "flush"}))


def _next_chunk(chunks: Iterator[bytes]) -> bytes | None:
    return next(chunks, None)


async def _collect(finals: AsyncIterator[p.Transcript]) -> list[p.Transcript]:
    return [t async for t in finals]


async def _unless_gone(request: web.BaseRequest, work: Awaitable[T]) -> T:
    """``work``'s result; cancelled (its session ended, its queued decoding dropped) if the client goes away first."""
    task = asyncio.ensure_future(work)
    while True:
        done, _ = await asyncio.wait({task}, timeout=GONE_CHECK_S)
        if done:
            return task.result()
        transport = request.transport
        if transport is None or transport.is_closing():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise ConnectionResetError("the client went away")
