"""The OpenAI-compatible HTTP API: routing under /v1/, errors in OpenAI's shape, and the model list.

OpenAI's clients (the `openai` SDKs, LangChain, LiteLLM...) read every failure as
``{"error": {"message", "type", "param", "code"}}`` with the HTTP status saying what kind it is; so
does every answer here, 404 for a path that is not one, 401 before anything past the headers is
read. The audio endpoints themselves live in ``openai_stt`` and ``openai_tts``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web

from voxbeam.server.channel import answer_and_close
from voxbeam.server.context import ServerContext

# OpenAI's names for its speech models; each is served by this server's default of its kind.
STT_ALIASES = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")
TTS_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
OWNER = "voxbeam"
AUDIO_PATHS = ("/v1/audio/transcriptions", "/v1/audio/translations", "/v1/audio/speech")


class ApiError(Exception):
    """A request refused, as OpenAI says it: status, message, type, the parameter at fault, a code."""

    def __init__(
        self,
        status: HTTPStatus,
        message: str,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}

    @property
    def type(self) -> str:
        if self.status == HTTPStatus.UNAUTHORIZED:
            return "invalid_api_key" if self.code == "invalid_api_key" else "authentication_error"
        if self.status == HTTPStatus.TOO_MANY_REQUESTS:
            return "rate_limit_exceeded"
        if self.status >= 500:
            return "server_error"
        return "invalid_request_error"

    def response(self) -> web.Response:
        doc = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return json_response(doc, self.status, self.headers)

    @property
    def ends_connection(self) -> bool:
        """Whether the rest of the request is never read: the answer goes out and the connection is closed."""
        return self.status in (HTTPStatus.UNAUTHORIZED, HTTPStatus.REQUEST_ENTITY_TOO_LARGE)


def json_response(doc: Any, status: HTTPStatus = HTTPStatus.OK, headers: dict[str, str] | None = None) -> web.Response:
    response = web.Response(status=status, text=json.dumps(doc) + "\n", content_type="application/json")
    response.headers.update(headers or {})
    response.headers["Server"] = "VoxBeam"
    return response


def unauthorized() -> ApiError:
    message = "a valid API key is required (Authorization: Bearer KEY, or X-Api-Key)"
    return ApiError(HTTPStatus.UNAUTHORIZED, message, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


def not_found(request: web.BaseRequest) -> ApiError:
    return ApiError(HTTPStatus.NOT_FOUND, f"Invalid URL ({request.method} {request.path})", code="unknown_url")


class ModelCatalog:
    """``GET /v1/models`` and ``/v1/models/{id}``: the speech models (by our names and OpenAI's) and the voices."""

    def __init__(self, ctx: ServerContext, voice_table: Callable[[], list[dict[str, Any]]]) -> None:
        self.ctx = ctx
        self.created = int(time.time())
        self._voice_table = voice_table

    def _model(self, model_id: str, **fields: Any) -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": self.created, "owned_by": OWNER, **fields}

    def models(self) -> list[dict[str, Any]]:
        default = self.ctx.stt_model
        out = []
        for m in self.ctx.stt_models.values():
            out.append(
                self._model(
                    m.name,
                    task="transcription",
                    label=m.label,
                    default=m is default,
                    multilingual=m.detects_language,
                    translation=m.detects_language,
                    languages=list(m.languages),
                )
            )
        for alias in STT_ALIASES:
            out.append(self._model(alias, task="transcription", served_by=default.name))
        voices = self._voice_table()
        for name in TTS_MODELS:
            out.append(self._model(name, task="speech", voices=voices))
        return out

    def find(self, model_id: str) -> dict[str, Any] | None:
        return next((m for m in self.models() if m["id"] == model_id), None)

    async def list(self, request: web.BaseRequest, path: str) -> web.StreamResponse:
        return json_response({"object": "list", "data": self.models()})

    async def one(self, request: web.BaseRequest, path: str) -> web.StreamResponse:
        model_id = path[len("/v1/models/") :]
        found = self.find(model_id)
        if found is None:
            message = f"The model '{model_id}' does not exist"
            raise ApiError(HTTPStatus.NOT_FOUND, message, param="model", code="model_not_found")
        return json_response(found)


class OpenAiApi:
    """Routes /v1/ requests that are not the WebSocket services; checks the key before reading any body."""

    def __init__(
        self,
        authenticate: Callable[[web.BaseRequest], str | None],
        address: Callable[[web.BaseRequest], str | None],
        catalog: ModelCatalog,
        transcribe: Callable[[web.BaseRequest, str, str | None, str], Awaitable[web.StreamResponse]],
        speak: Callable[[web.BaseRequest, str, str | None], Awaitable[web.StreamResponse]],
    ) -> None:
        self._authenticate, self._address = authenticate, address
        self.catalog = catalog
        self._transcribe, self._speak = transcribe, speak

    async def handle(self, request: web.BaseRequest, path: str) -> web.StreamResponse:
        try:
            return await self._route(request, path)
        except ApiError as exc:
            if exc.ends_connection:
                return await answer_and_close(request, exc.response())
            return exc.response()

    async def _route(self, request: web.BaseRequest, path: str) -> web.StreamResponse:
        method = request.method
        known = path in ("/v1/models", *AUDIO_PATHS) or path.startswith("/v1/models/")
        if not known:
            raise not_found(request)
        label = self._authenticate(request)  # headers only: nothing of the body is read before this
        if label is None:
            raise unauthorized()
        if method == "GET" and path == "/v1/models":
            return await self.catalog.list(request, path)
        if method == "GET" and path.startswith("/v1/models/"):
            return await self.catalog.one(request, path)
        if method == "POST" and path in AUDIO_PATHS:
            if self.catalog.ctx.shutting_down:  # before an upload is read that no session would take
                headers = {"Retry-After": "1"}
                raise ApiError(
                    HTTPStatus.SERVICE_UNAVAILABLE, "the server is shutting down", code="server_busy", headers=headers
                )
            address = self._address(request)
            if path == "/v1/audio/speech":
                return await self._speak(request, label, address)
            task = "translate" if path == "/v1/audio/translations" else "transcribe"
            return await self._transcribe(request, label, address, task)
        raise not_found(request)
