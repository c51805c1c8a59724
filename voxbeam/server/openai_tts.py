"""``POST /v1/audio/speech``: text through a TTS session, the audio streamed back as sentences render.

The same ``TtsSession`` a WebSocket client gets, driven through a ``LocalChannel``: one init (voice,
format, 24 kHz as OpenAI's audio is, speed), one final text; each ``audio`` message's bytes go out as
a chunk of the response as soon as the session sends it, so the first sentence plays while the rest
renders. AAC, which the WebSocket service does not offer, is encoded here from the session's PCM.

OpenAI's voice names map to installed voices (``voice_table``): the English Piper (neural) voices in
catalog order, round robin, so they are distinct as far as there are enough; with the pinned packages
there is one (``vl-joe``) and every OpenAI name is that voice. Our own voice ids work too.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web

from voxbeam import audio
from voxbeam import protocol as p
from voxbeam.protocol import ErrorCode
from voxbeam.server.channel import LocalChannel
from voxbeam.server.context import ServerContext
from voxbeam.server.openai_api import TTS_MODELS, ApiError
from voxbeam.server.session import Session
from voxbeam.server.tts import TtsSession

OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse")
NEWER_VOICES = ("marin", "cedar")
RATE = 24000  # OpenAI's speech is 24 kHz (its pcm is 24 kHz s16le mono)
FORMATS = {"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac", "flac": "audio/flac", "wav": "audio/wav"}
FORMATS["pcm"] = "audio/pcm"
SPEED = (0.5, 2.0)
MAX_INPUT = 4096  # OpenAI's limit
MAX_BODY = 64 * 1024  # a JSON body with 4096 characters of input, however escaped
BODY_TIMEOUT_S = 30.0


def voice_table(ctx: ServerContext) -> dict[str, str]:
    """OpenAI's voice names -> our voice ids."""
    voices = ctx.voices.voices
    neural = [v.id for v in voices if v.engine == "piper" and v.language.lower().startswith("en")]
    if not neural:
        neural = [ctx.voices.resolve(None, "en").id]
    names = OPENAI_VOICES + NEWER_VOICES
    return {name: neural[i % len(neural)] for i, name in enumerate(names)}


class Speaker:
    def __init__(
        self, ctx: ServerContext, track: Callable[[Session], None], untrack: Callable[[Session], None]
    ) -> None:
        self.ctx = ctx
        self._track, self._untrack = track, untrack

    def voices(self) -> list[dict[str, Any]]:
        """The voices /v1/models lists: OpenAI's names (with the voice each is), then ours."""
        table = voice_table(self.ctx)
        by_id = {v.id: v for v in self.ctx.voices.voices}
        named = [{"name": n, "voice_id": vid, "language": by_id[vid].language} for n, vid in table.items()]
        ours = [{"name": v.id, "voice_id": v.id, "language": v.language} for v in self.ctx.voices.voices]
        return named + ours

    async def _body(self, request: web.BaseRequest) -> dict[str, Any]:
        if request.content_length is not None and request.content_length > 64 * 1024:
            raise ApiError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "the request body is too large", code="body_too_large")
        try:
            async with asyncio.timeout(30):
                raw = await request.content.read(64 * 1024 + 1)
        except TimeoutError:
            raise ApiError(
                HTTPStatus.REQUEST_TIMEOUT, "the request body did not arrive", code="upload_timeout"
            ) from None
        if len(raw) > 64 * 1024:
            raise ApiError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "the request body is too large", code="body_too_large")
        try:
            doc = json.loads(raw)
        except ValueError:
            raise ApiError(HTTPStatus.BAD_REQUEST, "the body must be JSON") from None
        if not isinstance(doc, dict):
            raise ApiError(HTTPStatus.BAD_REQUEST, "the body must be a JSON object")
        return doc

    def _init(self, doc: dict[str, Any]) -> tuple[p.TtsInit, str, str]:
        model = doc.get("model")
        if model is not None and model not in TTS_MODELS and model not in ("piper", "espeak"):
            message = f"model {model!r} is not served here; use one of {', '.join(TTS_MODELS)}"
            raise ApiError(HTTPStatus.BAD_REQUEST, message, "model", "model_not_found")
        text = doc.get("input")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(HTTPStatus.BAD_REQUEST, "'input' is required: the text to speak", "input")
        if len(text) > MAX_INPUT:
            raise ApiError(HTTPStatus.BAD_REQUEST, f"'input' is longer than {MAX_INPUT} characters", "input")
        voice = doc.get("voice")
        if isinstance(voice, dict):  # the newer SDKs' {"id": ...}
            voice = voice.get("id")
        if not isinstance(voice, str) or not voice.strip():
            raise ApiError(HTTPStatus.BAD_REQUEST, "'voice' is required", "voice")
        voice_id = voice_table(self.ctx).get(voice.strip().lower(), voice.strip())
        fmt = str(doc.get("response_format") or "mp3").lower()
        if fmt not in FORMATS:
            raise ApiError(
                HTTPStatus.BAD_REQUEST, f"response_format must be one of {', '.join(FORMATS)}", "response_format"
            )
        speed = doc.get("speed", 1.0)
        if isinstance(speed, bool) or not isinstance(speed, int | float) or not SPEED[0] <= speed <= SPEED[1]:
            message = f"speed must be between {SPEED[0]:g} and {SPEED[1]:g} here (the voices' range)"
            raise ApiError(HTTPStatus.BAD_REQUEST, message, "speed")
        wire = "pcm" if fmt == "aac" else fmt
        return p.TtsInit(voice_id=voice_id, format=wire, sample_rate=RATE, speed=float(speed)), text, fmt

    async def handle(self, request: web.BaseRequest, label: str, address: str | None) -> web.StreamResponse:
        init, text, fmt = self._init(await self._body(request))
        channel = LocalChannel(label, address)
        session = TtsSession(self.ctx, channel, label)
        self._track(session)
        run = asyncio.create_task(session.run(), name="http-tts-session")
        response: web.StreamResponse | None = None
        try:
            await channel.put(p.serialize(init))
            ready = await self._next(channel)
            if not isinstance(ready, p.TtsReady):
                raise _refused(ready)
            await channel.put(p.serialize(p.Text(text=text, is_final=True)))
            encoder = audio.StreamEncoder("aac", RATE) if fmt == "aac" else None
            while True:
                msg = await self._next(channel)
                if isinstance(msg, p.Error) or msg is None:
                    if response is None:
                        raise _refused(msg)
                    break  # past the status line: the stream ends short, as a dropped connection would
                if not isinstance(msg, p.Audio):
                    continue
                data = encoder.write(msg.data) if encoder else msg.data
                if msg.is_final and encoder:
                    data += encoder.close()
                if response is None:
                    response = web.StreamResponse(headers={"Content-Type": FORMATS[fmt], "Server": "VoxBeam"})
                    response.enable_chunked_encoding()
                    await response.prepare(request)
                if data:
                    await response.write(data)
                if msg.is_final:
                    break
            assert response is not None
            await response.write_eof()
            return response
        finally:
            channel.put_end()
            await asyncio.gather(run, return_exceptions=True)
            self._untrack(session)

    async def _next(self, channel: LocalChannel) -> p.ServerMessage | None:
        frame = await channel.get()
        return None if frame is None else p.parse_server_message(frame, "tts", allow_unknown=True)


def _refused(msg: p.ServerMessage | None) -> ApiError:
    if not isinstance(msg, p.Error):
        return ApiError(HTTPStatus.SERVICE_UNAVAILABLE, "the synthesis ended early", code="server_error")
    if msg.code == ErrorCode.SERVER_BUSY:
        status = HTTPStatus.TOO_MANY_REQUESTS if "API key" in msg.error else HTTPStatus.SERVICE_UNAVAILABLE
        return ApiError(status, msg.error, code="server_busy", headers={"Retry-After": "1"})
    if msg.code == ErrorCode.INTERNAL_ERROR:
        return ApiError(HTTPStatus.SERVICE_UNAVAILABLE, msg.error, code="server_error", headers={"Retry-After": "1"})
    param = "voice" if msg.code in (ErrorCode.VOICE_NOT_FOUND, ErrorCode.UNSUPPORTED_LANGUAGE) else "input"
    return ApiError(HTTPStatus.BAD_REQUEST, msg.error, param, msg.code.lower())
