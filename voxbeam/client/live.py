"""Live recognition as the spec's captioning pattern does it: PCM in 100 ms chunks at real time (or at a
multiple of it), every partial and final handed over as it arrives, and ``flush`` when the audio ends or
the caller stops it.

    feed = LiveFeed(pcm_chunks, sample_rate=16000, speed=1.0)
    await recognize_live(config, SttInit.asking("en"), feed, print)

Unlike ``SpeechClient.transcribe`` there is no pool and no retry: audio played at real time cannot be
played again, so a failure ends the stream with the client's typed error.
"""

from __future__ import annotations

import asyncio
import bisect
import time
import urllib.error
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from voxbeam import protocol
from voxbeam.audio import BYTES_PER_SAMPLE
from voxbeam.client._sources import AudioSource, as_async_chunks
from voxbeam.client._stats import Stats
from voxbeam.client.config import ClientConfig
from voxbeam.client.connector import Connector
from voxbeam.client.probe import HEALTH_TIMEOUT_S
from voxbeam.client.recognition import RecognitionResult
from voxbeam.client.session import Session

# The /healthz field of a service that knows the init extension ``realtime`` (voxbeam serve: the live
# streams it holds in real time). A spec-only service has none, and is sent no ``realtime``.
LIVE_CAPACITY = "live_capacity"
# Audio read ahead of the sending (a file decodes much faster than it plays): items of up to 32 KiB.
_READ_AHEAD = 32


@dataclass(frozen=True)
class LiveEvent:
    """One transcript as it arrived: a partial (the utterance so far) or a final.

    ``start_ms`` and ``end_ms`` are the audio it covers, from the start of the stream. ``latency_ms`` is
    the time from the moment the audio at ``end_ms`` had been sent to the moment this event arrived (None
    when the service gives no timing)."""

    final: bool
    text: str
    start_ms: int
    end_ms: int
    latency_ms: int | None
    request_id: str
    confidence: float | None = None
    language: str | None = None


class LiveFeed:
    """PCM s16le mono chunks of ``chunk_ms``, each sent once its audio has played at ``speed`` times real time
    (0: as fast as the socket takes them), until the source ends or ``stop()``; then the session flushes.

    ``source``: PCM as bytes or an (async) iterable of byte strings of any size; a blocking iterator (a
    decoder, a pipe) is read in a thread, never on the event loop.

    It remembers when each chunk went out, so that an event's latency can be told (``event``).
    """

    def __init__(self, source: AudioSource, *, sample_rate: int, chunk_ms: int = 100, speed: float = 1.0) -> None:
        if speed < 0:
            raise ValueError(f"speed must be 0 (as fast as possible) or above, not {speed}")
        self.sample_rate = sample_rate
        self.speed = speed
        self._source = as_async_chunks(source, _READ_AHEAD)
        self._bytes_per_ms = sample_rate * BYTES_PER_SAMPLE / 1000
        self._chunk_bytes = max(BYTES_PER_SAMPLE, int(sample_rate * chunk_ms / 1000) * BYTES_PER_SAMPLE)
        self._stop = asyncio.Event()
        self._ends_ms: list[int] = []  # each chunk sent: where its audio ends, and when it went out
        self._sent_at: list[float] = []
        self.sent_bytes = 0
        self.started: float | None = None  # when the first chunk went out (time.monotonic)
        self.finished: float | None = None  # when the last went out, or the feed was stopped

    def stop(self) -> None:
        """Send no more audio: the session flushes what it has (Ctrl-C)."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    @property
    def sent_ms(self) -> int:
        return int(self.sent_bytes / self._bytes_per_ms)

    def sent_at(self, audio_ms: int) -> float | None:
        """When the chunk holding the audio at ``audio_ms`` went out (the last chunk's time past the end)."""
        if not self._ends_ms:
            return None
        i = bisect.bisect_left(self._ends_ms, audio_ms)
        return self._sent_at[min(i, len(self._sent_at) - 1)]

    def event(self, t: protocol.Transcript, arrived: float | None = None) -> LiveEvent:
        """``t`` as a ``LiveEvent``, its latency measured against this feed's sending times."""
        arrived = time.monotonic() if arrived is None else arrived
        end = t.offset + t.duration
        sent = self.sent_at(end) if end > 0 else None
        return LiveEvent(
            final=t.is_final,
            text=" ".join(t.text.split()),
            start_ms=t.offset,
            end_ms=end,
            latency_ms=None if sent is None else max(0, round((arrived - sent) * 1000)),
            request_id=t.request_id,
            confidence=t.confidence,
            language=t.language,
        )

    async def chunks(self) -> AsyncIterator[bytes]:
        """The paced chunks (``Session.recognize``'s audio); the source is closed when they end."""
        buf = bytearray()
        ended = False
        stopping = asyncio.ensure_future(self._stop.wait())
        pending: asyncio.Future[bytes] | None = None
        try:
            while True:
                while len(buf) < self._chunk_bytes and not ended:
                    pending = asyncio.ensure_future(anext(self._source))
                    await asyncio.wait((pending, stopping), return_when=asyncio.FIRST_COMPLETED)
                    if not pending.done():
                        return  # stopped while the source had nothing (a pipe that has gone quiet)
                    try:
                        buf += pending.result()
                    except StopAsyncIteration:
                        ended = True
                    pending = None
                chunk = bytes(buf[: self._chunk_bytes])
                del buf[: self._chunk_bytes]
                chunk = chunk[: len(chunk) - len(chunk) % BYTES_PER_SAMPLE]
                if not chunk or self.stopped:
                    return
                if self.started is None:
                    self.started = time.monotonic()
                end_ms = round((self.sent_bytes + len(chunk)) / self._bytes_per_ms)
                if self.speed > 0:  # the chunk goes once its audio has played, as a microphone's would
                    delay = self.started + end_ms / 1000 / self.speed - time.monotonic()
                    if delay > 0:
                        await asyncio.wait((stopping,), timeout=delay)
                        if self.stopped:
                            return
                self.sent_bytes += len(chunk)
                self._ends_ms.append(end_ms)
                self._sent_at.append(time.monotonic())
                yield chunk
        finally:
            self.finished = time.monotonic()
            stopping.cancel()
            if pending is not None:
                pending.cancel()
            aclose = getattr(self._source, "aclose", None)
            if aclose is not None:
                await aclose()


async def advertises_live(config: ClientConfig) -> bool:
    """Whether the (first) endpoint's ``/healthz`` says it knows live streams (``live_capacity``), and so
    the init extension ``realtime``. Unreachable or without ``/healthz``: False (the session says why)."""
    connector = Connector(config, config.resolved_api_key())
    try:
        doc = await connector.get_json(config.endpoints[0], "/healthz", HEALTH_TIMEOUT_S)
    except (OSError, ValueError, urllib.error.HTTPError):
        return False
    return isinstance(doc, dict) and LIVE_CAPACITY in doc


async def recognize_live(
    config: ClientConfig,
    init: protocol.SttInit,
    feed: LiveFeed,
    on_event: Callable[[LiveEvent], None],
) -> RecognitionResult:
    """Stream ``feed`` to the (first) endpoint as one recognition session, calling ``on_event`` for every
    partial and final as it arrives; returns the finals once ``flush_done`` came.

    Raises the client's typed errors (``AuthenticationError``, ``InvalidRequestError``, ``ServerBusyError``
    when the service holds no more live streams, ``ConnectionLostError`` ...), or what the audio source
    raised (``AudioError``).
    """
    connector = Connector(config, config.resolved_api_key())
    session = Session(config.endpoints[0], "stt", init, connector, Stats())
    await session.open()
    try:
        return await session.recognize(
            feed.chunks(),
            result_timeout=config.timeouts.result,
            on_transcript=lambda t: on_event(feed.event(t)),
        )
    finally:
        await session.close()
