"""The two sides of one recognition on an STT session (``Session.recognize``).

``AudioUpload`` streams the audio (paced when asked) and then ``flush``, and keeps the progress
the receiving side reads as its watchdog; ``Finals`` files what comes back up to ``flush_done``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from voxbeam import protocol
from voxbeam.client._stats import Stats
from voxbeam.errors import ProtocolViolationError, service_error

Send = Callable[[protocol.ClientMessage, float | None], Awaitable[None]]


@dataclass(frozen=True)
class RecognitionResult:
    """What one recognition session (audio ... flush ... flush_done) produced."""

    request_id: str
    finals: list[protocol.Transcript]


class AudioUpload:
    """Sends ``chunks`` as ``audio`` messages, then ``flush``; ``run`` is the sender task."""

    def __init__(
        self,
        send: Send,
        stats: Stats,
        chunks: AsyncIterator[bytes],
        result_timeout: float,
        pacing_bytes_per_s: int | None,
        bytes_per_s: int,
    ) -> None:
        self._send = send
        self._stats = stats
        self._chunks = chunks
        self._result_timeout = result_timeout
        self._pacing = pacing_bytes_per_s
        self._bytes_per_s = bytes_per_s
        self.sent = 0  # audio bytes sent
        self.flushed = False
        self.waiting_on_source = False
        self.progress = time.monotonic()  # the last time anything moved, either way

    async def run(self) -> None:
        start = time.monotonic()
        sent = 0
        iterator = self._chunks.__aiter__()
        while True:
            self.waiting_on_source = True
            try:
                chunk = await iterator.__anext__()
            except StopAsyncIteration:
                break
            finally:
                self.waiting_on_source = False
                self.progress = time.monotonic()
            if self._pacing:
                ahead = sent / self._pacing - (time.monotonic() - start)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            # No per-frame timeout (it would cost more CPU than the send): the receive loop
            # is the watchdog and gives up when no frame went out for result_timeout.
            await self._send(protocol.Audio(chunk), None)
            sent += len(chunk)
            self.sent = sent
            self._stats.incr("audio_bytes_sent", len(chunk))
            self.progress = time.monotonic()
        await self._send(protocol.Command("flush"), self._result_timeout)
        self.flushed = True
        self.progress = time.monotonic()

    def may_stay_silent(self, timeout: float, heard_ms: int) -> bool:
        """Silence is fine while audio is still flowing out or the source is slow; it is a stall only
        when nothing has moved in either direction.

        After ``flush`` the service may still owe the audio past ``heard_ms`` (the end of the last
        final): a busy service decodes a long upload in turns with other sessions' work, so it gets
        ``timeout`` plus that audio's duration (decoding at real time, the slowest a service that
        keeps up with live speech may be) before its silence is a stall.
        """
        silent = time.monotonic() - self.progress
        if not self.flushed:
            return self.waiting_on_source or silent < timeout
        owed_s = max(0.0, self.sent / self._bytes_per_s - heard_ms / 1000)
        return silent < timeout + owed_s


class Finals:
    """The finals of one recognition as they arrive, and the request id they go by."""

    def __init__(
        self, request_id: str | None, on_transcript: Callable[[protocol.Transcript], None] | None = None
    ) -> None:
        self.request_id = request_id
        self.finals: list[protocol.Transcript] = []
        self._on_transcript = on_transcript

    def add(self, item: protocol.ServerMessage) -> bool:
        """File one message from the service; True for the ``flush_done`` that ends the recognition."""
        # The state machine has checked the order: everything up to our flush's
        # flush_done belongs to this file, whatever ids the service uses.
        if isinstance(item, protocol.Transcript):
            self.request_id = self.request_id or item.request_id or None
            if item.is_final:
                self.finals.append(item)
            if self._on_transcript is not None:
                self._on_transcript(item)
            return False
        if isinstance(item, protocol.FlushDone):
            self.request_id = item.request_id or self.request_id
            return True
        if isinstance(item, protocol.Error):
            raise service_error(item.code, item.error, item.request_id)
        raise ProtocolViolationError(f"unexpected {item.type!r} message on an STT session")

    @property
    def heard_ms(self) -> int:
        """Where the finals so far end, in the audio."""
        return max((t.offset + t.duration for t in self.finals), default=0)

    def result(self) -> RecognitionResult:
        return RecognitionResult(self.request_id or "", self.finals)
