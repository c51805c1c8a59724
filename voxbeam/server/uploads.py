"""Multipart uploads for the HTTP API, read as a stream: the small fields kept, the file spooled to disk.

Nothing is read before the caller has checked the key. A declared ``Content-Length`` over the cap is
refused before a byte of the body is read (413); an undeclared one is counted as it comes and refused as
soon as it passes the cap. The file goes to a spool directory (``--upload_dir``: on Kubernetes an
emptyDir with a ``sizeLimit``, never the container's small /tmp) in 64 KiB pieces, so an upload is never
in memory at all, let alone twice; what all uploads in progress may hold there at once is capped too
(``--spool_mb``: past it, 503 and ``Retry-After``). A client that sends nothing for ``--upload_timeout``
seconds is cut off (408).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import tempfile
from collections.abc import Awaitable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TypeVar

from aiohttp import BodyPartReader, web

from voxbeam.server.openai_api import ApiError

MIB = 1 << 20
PIECE = 64 * 1024
FIELD_LIMIT = 64 * 1024  # a form field that is not the file (a prompt is at most 500 characters)
T = TypeVar("T")


@dataclass
class Upload:
    """An upload's form fields (every value of each, in order) and its file, spooled."""

    fields: dict[str, list[str]] = field(default_factory=dict)
    path: str | None = None
    filename: str | None = None
    size: int = 0

    def get(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[-1] if values else None

    def close(self) -> None:
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            self.path = None


class Spool:
    """Where uploads go while they are transcribed, and what they may take there."""

    def __init__(self, directory: str | None, max_upload: int, budget: int, idle_timeout: float) -> None:
        self.directory = directory or tempfile.gettempdir()
        self.max_upload = max_upload
        self.budget = budget
        self.idle_timeout = idle_timeout
        self.held = 0  # bytes reserved by uploads in progress

    def too_large(self) -> ApiError:
        mb = self.max_upload / MIB
        return ApiError(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            f"the upload is larger than this server accepts ({mb:g} MB, --max_upload_mb)",
            param="file",
            code="file_too_large",
        )

    async def _timed(self, step: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self.idle_timeout):
                return await step
        except TimeoutError:
            message = f"no upload data for {self.idle_timeout:g} s (--upload_timeout)"
            raise ApiError(HTTPStatus.REQUEST_TIMEOUT, message, code="upload_timeout") from None

    async def receive(self, request: web.BaseRequest) -> Upload:
        """The request's form, its file spooled (the caller closes the ``Upload``); ApiError when refused."""
        if request.content_type != "multipart/form-data":
            raise ApiError(HTTPStatus.BAD_REQUEST, "send the audio as multipart/form-data (a 'file' field)")
        declared = request.content_length
        if declared is not None and declared > self.max_upload + PIECE:  # the form's own bytes besides the file
            raise self.too_large()
        reserve = min(declared or self.max_upload, self.max_upload)
        if self.held + reserve > self.budget:
            raise ApiError(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "the server's upload space is in use (--spool_mb); retry later",
                code="server_busy",
                headers={"Retry-After": "5"},
            )
        self.held += reserve
        upload = Upload()
        try:
            reader = await request.multipart()
            while (part := await self._timed(reader.next())) is not None:
                if not isinstance(part, BodyPartReader):
                    raise ApiError(HTTPStatus.BAD_REQUEST, "nested multipart bodies are not accepted")
                name = part.name or ""
                if part.filename is not None or name == "file":
                    if upload.path is not None:
                        raise ApiError(HTTPStatus.BAD_REQUEST, "send one file", param="file")
                    upload.filename = part.filename
                    await self._spool(part, upload)
                else:
                    upload.fields.setdefault(name, []).append(await self._field(part, name))
        except BaseException:
            upload.close()
            raise
        finally:
            self.held -= reserve
        return upload

    async def _field(self, part: BodyPartReader, name: str) -> str:
        data = bytearray()
        while chunk := await self._timed(part.read_chunk(PIECE)):
            data += chunk
            if len(data) > FIELD_LIMIT:
                raise ApiError(HTTPStatus.BAD_REQUEST, f"the form field {name!r} is too long", param=name)
        try:
            return data.decode(part.get_charset("utf-8"))
        except (UnicodeDecodeError, LookupError):
            raise ApiError(HTTPStatus.BAD_REQUEST, f"the form field {name!r} is not text", param=name) from None

    async def _spool(self, part: BodyPartReader, upload: Upload) -> None:
        try:
            fd, upload.path = tempfile.mkstemp(prefix="upload-", dir=self.directory)
        except OSError as exc:
            raise self._disk(exc) from None
        with os.fdopen(fd, "wb", buffering=0) as out:
            while chunk := await self._timed(part.read_chunk(PIECE)):
                upload.size += len(chunk)
                if upload.size > self.max_upload:
                    raise self.too_large()
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise self._disk(exc) from None

    def _disk(self, exc: OSError) -> ApiError:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            message = "the server's upload space is full; retry later"
            return ApiError(HTTPStatus.SERVICE_UNAVAILABLE, message, code="server_busy", headers={"Retry-After": "5"})
        return ApiError(HTTPStatus.SERVICE_UNAVAILABLE, "the server cannot store the upload", code="server_error")
