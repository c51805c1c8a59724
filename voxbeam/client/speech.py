"""``SpeechClient``: transcribe and synthesize over pooled sessions, with retries and deadlines."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import TypedDict, TypeVar, Unpack

from voxbeam import audio, protocol
from voxbeam.audio import BYTES_PER_SAMPLE
from voxbeam.channels import Levels
from voxbeam.client._sources import AudioSource, as_async_chunks
from voxbeam.client._stats import Stats
from voxbeam.client.channels import merge
from voxbeam.client.config import ClientConfig
from voxbeam.client.connector import Connector
from voxbeam.client.pool import SessionPool
from voxbeam.client.recognition import RecognitionResult
from voxbeam.client.results import SynthesisResult, TranscriptBuilder, TranscriptResult
from voxbeam.client.retry import RetryClock
from voxbeam.client.segmenter import SegmentFeed
from voxbeam.client.session import InitMessage, Session, SessionState
from voxbeam.errors import (
    InputError,
    RequestTimeoutError,
    RetriesExhaustedError,
    ServiceUnavailableError,
    VoxBeamError,
)
from voxbeam.protocol import Service, TtsParams
from voxbeam.protocol_controls import ControlError, SttControls, check_speaker_bounds
from voxbeam.redaction import Policy
from voxbeam.text import pack

logger = logging.getLogger("voxbeam.client")

T = TypeVar("T")


class _Record:
    """Per-request bookkeeping: retries made and the retry budget's clock."""

    def __init__(self, clock: RetryClock) -> None:
        self.clock = clock
        self.retries = 0  # over all segments of the record
        self.has_session = False

    @property
    def attempts(self) -> int:
        """1 + the retries it took."""
        return 1 + self.retries


class TranscribeOptions(TypedDict, total=False):
    """``SpeechClient.transcribe``'s keywords, for the facades that pass them on (``SyncSpeechClient``)."""

    sample_rate: int
    language: str
    timestamps: bool
    controls: SttControls | None
    redaction: Policy | None
    speakers: tuple[int | None, int | None] | None


class SpeechClient:
    """Async client for the VoxNexus STT and TTS WebSocket API; one per event loop.

    Owns a ``SessionPool``; close it with ``aclose()`` or ``async with``. Methods may be called
    concurrently: each request takes a session from the pool for as long as it needs one.
    """

    def __init__(self, config: ClientConfig | None = None) -> None:
        self.config = config or ClientConfig()
        connector = Connector(self.config, self.config.resolved_api_key())
        self._redact = connector.redact
        self._stats = Stats()
        self._pool = SessionPool(self.config, connector, self._stats)
        self._rng = random.Random()

    def __repr__(self) -> str:
        return f"<SpeechClient {self._pool!r}>"

    @property
    def pool(self) -> SessionPool:
        return self._pool

    def stats(self) -> dict[str, int]:
        """Counters since creation plus the pool's current gauges (open, idle, in_use ...)."""
        out = self._stats.snapshot()
        out.update(self._pool.counts())
        return out

    def retry_in(self) -> float | None:
        """While every endpoint is unavailable, seconds until the next probe; else None.

        Safe to call from any thread (a progress line reads it while the loop runs).
        """
        return self._pool.retry_in()

    async def __aenter__(self) -> SpeechClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._pool.aclose()

    # -- speech to text --------------------------------------------------------------------

    async def transcribe(
        self,
        audio: AudioSource,
        *,
        sample_rate: int = 16000,
        language: str = protocol.AUTO_LANGUAGE,
        timestamps: bool = True,
        controls: SttControls | None = None,
        redaction: Policy | None = None,
        speakers: tuple[int | None, int | None] | None = None,
    ) -> TranscriptResult:
        """Transcribe PCM s16le mono at ``sample_rate`` (bytes, or an iterable / async iterable of chunks).

        ``language`` "auto" asks the service to detect it (the result says which it found); ``controls``
        (prompt, hotwords, task, candidate languages) and ``redaction`` (the service masks personal data
        and lists it in the result's ``entities``) are sent as init extensions, and so is ``speakers``:
        ``(min_speakers, max_speakers)`` (either None) asks the service to diarize, and each segment and word
        then has its ``speaker``. Labels are the service's, per recognition session: a file longer than
        ``segment_seconds`` goes in several, whose labels are not linked (``S1`` of one need not be ``S1`` of
        the next). Long
        audio goes in segments of about ``segment_seconds`` cut at quiet points; word offsets are
        absolute from the start. Blocking iterators are drained in a thread.
        """
        if sample_rate <= 0:
            raise InputError(f"sample_rate must be positive, got {sample_rate}")
        try:
            init = protocol.SttInit.asking(
                language, sample_rate, timestamps, realtime=self.config.realtime_pacing, controls=controls
            )
            if speakers is not None:
                check_speaker_bounds(*speakers)
                init = dataclasses.replace(
                    init, enable_diarization=True, min_speakers=speakers[0], max_speakers=speakers[1]
                )
        except ControlError as exc:
            raise InputError(str(exc)) from None
        if redaction is not None and redaction.enabled:
            init = dataclasses.replace(
                init,
                redact=tuple(sorted(redaction.types)) or None,
                phone_region=redaction.phone_region,
                profanity=redaction.profanity,
            )
        feed = SegmentFeed(
            as_async_chunks(audio, self.config.max_in_flight_chunks),
            sample_rate=sample_rate,
            chunk_ms=self.config.chunk_ms,
            segment_seconds=self.config.segment_seconds,
        )
        builder = TranscriptBuilder(language)
        pacing = sample_rate * BYTES_PER_SAMPLE if self.config.realtime_pacing else None
        have_segment: bool | None = None
        model: str | None = None

        async def exchange(session: Session) -> RecognitionResult | None:
            nonlocal have_segment, model
            if isinstance(session.ready, protocol.SttReady) and session.ready.model:
                model = session.ready.model
            if have_segment is None:  # audio is pulled only once a session is in hand
                have_segment = await feed.next_segment()
            if not have_segment:
                return None
            return await session.recognize(
                feed.replay(), result_timeout=self.config.timeouts.result, pacing_bytes_per_s=pacing
            )

        async def run(record: _Record) -> TranscriptResult:
            nonlocal have_segment
            while True:
                rec = await self._with_retries("stt", init, exchange, record, what="transcription")
                if rec is None:
                    break
                builder.add(rec.finals, rec.request_id, feed.offset_ms)
                self._stats.incr("segments")
                if feed.last:
                    break
                have_segment = None
            return builder.result(audio_duration_ms=feed.consumed_ms, attempts=record.attempts, model=model)

        try:
            result = await self._run_record(run)
        finally:
            await feed.aclose()
        self._stats.incr("transcriptions")
        return result

    async def transcribe_channels(
        self, sources: Sequence[AudioSource], *, levels: Levels | None = None, **options: Unpack[TranscribeOptions]
    ) -> TranscriptResult:
        """Transcribe each of a file's channels (``sources``: each its PCM, as ``transcribe`` takes it) as its own
        stream, at once, and merge them on one timeline (``voxbeam.client.channels.merge``, which drops words
        ``levels`` say another channel heard much louder). The first failure cancels the other channels."""
        tasks = [asyncio.ensure_future(self.transcribe(source, **options)) for source in sources]
        try:
            results = await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return merge(results, levels)

    # -- text to speech --------------------------------------------------------------------

    async def synthesize(self, text: str, params: TtsParams | None = None) -> SynthesisResult:
        """Synthesize one utterance as ``params`` ask (voice, format, prosody; the defaults when None);
        the result's ``audio`` is one complete file of ``params.format``."""
        if not text or not text.strip():
            raise InputError("text is empty")
        params = params or TtsParams()
        format = params.format
        # Text over the service's limit goes as several utterances of PCM, cut at sentence ends,
        # and becomes one file here.
        pieces = pack(text, self.config.max_text_chars)
        whole = len(pieces) == 1
        if whole:
            init = params.init()
        else:
            init = params.init(format="pcm", sample_rate=audio.delivered_rate(_format(format), params.sample_rate))

        async def exchange(session: Session) -> SynthesisResult:
            timeout = self.config.timeouts.result
            data = b"".join([await session.synthesize(piece, result_timeout=timeout) for piece in pieces])
            ready = session.ready
            assert isinstance(ready, protocol.TtsReady)
            fmt = ready.format
            if not whole:
                fmt = _format(format)
                data = audio.encode(data, ready.sample_rate, fmt)
            return SynthesisResult(
                audio=data,
                voice_id=ready.voice_id,
                language=ready.language,
                format=fmt,
                sample_rate=ready.sample_rate,
                request_id=ready.request_id,
                attempts=1,
            )

        async def run(record: _Record) -> SynthesisResult:
            out = await self._with_retries("tts", init, exchange, record, what="synthesis")
            return SynthesisResult(
                audio=out.audio,
                voice_id=out.voice_id,
                language=out.language,
                format=out.format,
                sample_rate=out.sample_rate,
                request_id=out.request_id,
                attempts=record.attempts,
            )

        result = await self._run_record(run)
        self._stats.incr("syntheses")
        return result

    # -- retries and deadlines -------------------------------------------------------------

    async def _run_record(self, body: Callable[[_Record], Awaitable[T]]) -> T:
        """Runs one record; failures leave carrying ``attempts``."""
        self._stats.incr("requests")
        record = _Record(RetryClock(self.config.retry))
        try:
            return await body(record)
        except VoxBeamError as exc:
            self._stats.incr("failures")
            if not isinstance(exc, RetriesExhaustedError):
                exc.attempts = record.attempts
            raise
        except BaseException:
            self._stats.incr("failures")
            raise

    async def _with_retries(
        self,
        kind: Service,
        init: InitMessage,
        exchange: Callable[[Session], Awaitable[T]],
        record: _Record,
        *,
        what: str,
    ) -> T:
        """One exchange on a pooled session, retried on fresh sessions while the error and budget allow.

        Each attempt is bounded by ``Timeouts.record`` once it holds a session; transient failures
        are retried with backoff until ``RetryPolicy.budget`` (or ``max_attempts``) runs out.
        Waiting while every endpoint is unavailable happens in the pool and is not an attempt.
        """
        policy = self.config.retry
        clock = record.clock
        attempt_timeout = self.config.timeouts.record
        tries = 0  # of this exchange: on a session, or connections the record itself tried
        while True:
            session: Session | None = None
            try:
                session = await self._pool.acquire(
                    kind,
                    init,
                    # Queueing for a session is bounded by the pool timeout until the record starts;
                    # after that only the retry budget bounds the wait.
                    timeout=None if record.has_session else self.config.timeouts.pool,
                    retry=tries > 0,
                    clock=clock,
                )
                record.has_session = True
                tries += 1
                try:
                    async with asyncio.timeout(attempt_timeout):
                        out = await exchange(session)
                except TimeoutError:
                    self._stats.incr("timeouts")
                    raise RequestTimeoutError(
                        f"the attempt (at a record, or a segment of a long one) took longer than {attempt_timeout:g} s"
                    ) from None
            except VoxBeamError as exc:
                if session is not None:
                    # A session the exchange never started on (the audio failed first) is still good.
                    self._pool.release(session, healthy=session.state is SessionState.IDLE)
                elif not isinstance(exc, ServiceUnavailableError):
                    tries += 1  # the record's own connection attempt failed
                if not exc.retryable:
                    raise
                clock.start()
                capped = policy.max_attempts is not None and tries >= policy.max_attempts
                if clock.expired() or capped:
                    raise RetriesExhaustedError(exc, tries, clock.elapsed(), policy.budget) from exc
                if isinstance(exc, ServiceUnavailableError):
                    continue  # the pool has done the waiting
                delay = min(policy.delay(tries, self._rng), max(0.0, clock.remaining()))
                self._stats.incr("retries")
                record.retries += 1
                logger.info(
                    "%s attempt %d failed (%s); retrying in %.2f s (%.0f s of the %g s retry budget left)",
                    what,
                    tries,
                    self._redact(str(exc)),
                    delay,
                    clock.remaining(),
                    policy.budget,
                )
                await asyncio.sleep(delay)
                continue
            except BaseException:
                if session is not None:
                    self._pool.release(session, healthy=session.state is SessionState.IDLE)
                raise
            self._pool.release(session, healthy=True)
            clock.reset()  # progress: a later failure (next segment) gets the whole budget again
            return out


def _format(fmt: str) -> str:
    try:
        return protocol.normalize_tts_format(fmt)
    except protocol.ProtocolError as exc:
        raise InputError(exc.message) from None
