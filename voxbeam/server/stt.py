"""The speech-to-text session: audio in, partial and final transcripts out, flush.

The session's recognizer lives in one worker (it is stateful); every request for it goes to
that worker, in order. Unprocessed audio per session is bounded: past the bound the reader
stops reading the socket until the worker catches up.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from dataclasses import replace
from typing import Any

from voxbeam import protocol as p
from voxbeam.protocol import ErrorCode
from voxbeam.server.session import Session
from voxbeam.server.workers import Worker, WorkerCallError, WorkerDied, WorkerUnavailable

MODEL_LANGUAGE = "en-US"
MODEL = "pocketsphinx-en-us"
ACCEPTED_LANGUAGES = ("en-us", "en")
# A recognition session whose audio runs this far ahead of the clock is a bulk upload, not a
# live source: it gets no partials and no decoder of its own (see engines/recognizer.py). A
# session counts as live once audio has come in at about real time for LIVE_AFTER_S.
LIVE_SLACK_S = 1.0
LIVE_AFTER_S = 0.5


class ByteBudget:
    """Bytes in flight; ``acquire`` waits while over the limit (one waiter: the session's reader)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._freed = asyncio.Event()

    async def acquire(self, n: int) -> None:
        # A single message larger than the limit still passes when nothing else is in flight.
        while self.used and self.used + n > self.limit:
            self._freed.clear()
            await self._freed.wait()
        self.used += n

    def release(self, n: int) -> None:
        self.used -= n
        self._freed.set()


class SttSession(Session):
    service = "stt"
    KNOWN = ("init", "audio", "command", "ping")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sid = uuid.uuid4().hex
        self.worker: Worker | None = None
        self._generation = 0
        self.budget = ByteBudget(self.config.max_audio_in_flight)
        self.sample_rate = 16000
        self.language: str | None = None
        self.audio_bytes = 0
        self._streaming: set[str] = set()  # recognition sessions with audio and no flush_done yet
        self._first_audio: float | None = None  # clock at the recognition session's first audio
        self._received_s = 0.0
        self._bulk = False

    # -- init ---------------------------------------------------------------------------

    async def on_init(self, msg: p.SttInit | p.TtsInit) -> None:
        assert isinstance(msg, p.SttInit)
        if msg.language.strip().lower() not in ACCEPTED_LANGUAGES:
            await self.report(
                ErrorCode.UNSUPPORTED_LANGUAGE,
                f"language {msg.language!r} is not supported; this server recognises {MODEL_LANGUAGE} only",
            )
            return
        try:
            worker = await self.server.pool.acquire(self.config.worker_wait_s)
        except WorkerUnavailable:
            self.fail(ErrorCode.INTERNAL_ERROR, "no speech engine is running; try again later", p.CLOSE_INTERNAL_ERROR)
            return
        self._pin(worker)
        # No round trip: the worker runs requests in order, so the stream exists before any audio,
        # and `ready` does not wait behind other sessions' queued audio on a busy worker.
        worker.cast("stt_open", self.sid, msg.sample_rate, msg.enable_timestamps)
        self.sample_rate = msg.sample_rate
        # Detection reports the single installed model's language (documented; not real detection).
        self.language = MODEL_LANGUAGE if msg.enable_language_detection else None
        self.initialized = True
        self._new_request_id()
        assert self.request_id is not None
        await self.emit(p.SttReady(self.request_id, MODEL_LANGUAGE, msg.format, msg.sample_rate, MODEL))

    def _pin(self, worker: Worker) -> None:
        self.worker = worker
        self._generation = worker.generation
        worker.sessions += 1
        worker.watchers.add(self._on_worker_lost)

    def _on_worker_lost(self) -> None:
        self.fail(
            ErrorCode.INTERNAL_ERROR,
            "the speech engine serving this session stopped; audio since the last flush_done is lost",
            p.CLOSE_INTERNAL_ERROR,
        )

    def _new_request_id(self) -> None:
        self.request_id = p.new_request_id()
        self.request_ids.append(self.request_id)

    # -- messages -----------------------------------------------------------------------

    async def on_message(self, msg: p.ClientMessage) -> None:
        assert self.worker is not None and self.request_id is not None
        if isinstance(msg, p.Audio):
            if not msg.data:
                return
            n = len(msg.data)
            live = self._live(n)
            await self.budget.acquire(n)
            self.audio_bytes += n
            self.server.metrics.audio_seconds(n / 2 / self.sample_rate)  # [metrics]
            self._stream_started(self.request_id)
            fut = self.worker.call("stt_audio", self.sid, msg.data, live)
            self.server.metrics.engine_call("stt_audio", fut, self.worker)  # [metrics]
            await self.emit(functools.partial(self._transcripts, fut, self.request_id, n))
        elif isinstance(msg, p.Command):  # the parser admits "flush" only
            fut = self.worker.call("stt_flush", self.sid, self._live(0))
            self.server.metrics.engine_call("stt_flush", fut, self.worker)  # [metrics]
            await self.emit(functools.partial(self._flushed, fut, self.request_id))
            # Audio after a flush belongs to a new recognition session, with a new id, at offset 0.
            self._new_request_id()
            self._first_audio, self._received_s, self._bulk = None, 0.0, False
        else:
            await self.report(ErrorCode.INVALID_MESSAGE, f"unexpected {msg.type!r} message")

    def _live(self, n: int) -> bool:
        """Whether this recognition session's audio arrives at about real time (bulk latches)."""
        now = time.monotonic()
        if self._first_audio is None:
            self._first_audio = now
        elapsed = now - self._first_audio
        self._received_s += n / 2 / self.sample_rate
        if self._received_s > elapsed + LIVE_SLACK_S:
            self._bulk = True
        return not self._bulk and elapsed >= LIVE_AFTER_S

    def _stamp(self, transcripts: list[p.Transcript], request_id: str) -> list[p.ServerMessage]:
        return [replace(t, request_id=request_id, language=self.language if t.is_final else None) for t in transcripts]

    async def _transcripts(self, fut: asyncio.Future[Any], request_id: str, n: int) -> list[p.ServerMessage]:
        try:
            return self._stamp(await fut, request_id)
        except WorkerDied:
            self._on_worker_lost()
            return []
        except WorkerCallError as exc:
            return [p.error(ErrorCode(exc.code), exc.message, request_id)]
        finally:
            self.budget.release(n)

    async def _flushed(self, fut: asyncio.Future[Any], request_id: str) -> list[p.ServerMessage]:
        try:
            finals, odd = await fut
        except WorkerDied:
            self._on_worker_lost()
            return []
        except WorkerCallError as exc:
            finals, odd = [], False
            out: list[p.ServerMessage] = [p.error(ErrorCode(exc.code), exc.message, request_id)]
        else:
            out = self._stamp(finals, request_id)
        if odd:
            out.append(
                p.error(
                    ErrorCode.INVALID_AUDIO,
                    "the audio had an odd number of bytes; PCM s16le needs 2 bytes per sample (last byte dropped)",
                    request_id,
                )
            )
        out.append(p.FlushDone(request_id))
        self._stream_ended(request_id)
        return out

    # -- accounting ---------------------------------------------------------------------

    def _stream_started(self, request_id: str) -> None:
        if request_id not in self._streaming:
            if not self._streaming:
                self.server.stats.streaming_changed(+1)
            self._streaming.add(request_id)

    def _stream_ended(self, request_id: str) -> None:
        if request_id in self._streaming:
            self._streaming.discard(request_id)
            if not self._streaming:
                self.server.stats.streaming_changed(-1)

    async def cleanup(self) -> None:
        if self._streaming:
            self._streaming.clear()
            self.server.stats.streaming_changed(-1)
        worker = self.worker
        if worker is not None and worker.generation == self._generation:
            worker.watchers.discard(self._on_worker_lost)
            worker.sessions -= 1
            worker.cast("stt_close", self.sid)
        self.worker = None

    def mid_request(self) -> bool:
        # A recognition session with audio and no flush_done yet: the client is mid-file.
        return bool(self._streaming) or super().mid_request()

    def summary(self) -> str:
        return f"audio_s={self.audio_bytes / 2 / self.sample_rate:.2f}"
