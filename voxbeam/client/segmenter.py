"""Long audio in bounded segments, cut at the quietest point near the target length.

A ``SegmentFeed`` pulls PCM from the caller's source, re-chunks it into ``chunk_ms`` pieces and
keeps exactly one segment's chunks, so that a segment that failed mid-stream can be sent again
from its start on a fresh session. Audio up to 90 % of the target streams out as it arrives;
the last 10 % is held until the cut point inside it is known. Memory: one segment plus at most
one source item.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from voxbeam.audio import BYTES_PER_SAMPLE, quietest_cut

SEARCH_FRACTION = 0.10


class SegmentFeed:
    """Turns a PCM source into segments of about ``segment_seconds``, each replayable."""

    def __init__(
        self,
        source: AsyncIterator[bytes],
        *,
        sample_rate: int,
        chunk_ms: int,
        segment_seconds: float,
    ) -> None:
        self._source = source
        self.rate = sample_rate
        self.chunk_bytes = max(BYTES_PER_SAMPLE, sample_rate * chunk_ms // 1000 * BYTES_PER_SAMPLE)
        target = int(segment_seconds * sample_rate) * BYTES_PER_SAMPLE
        self._target = max(self.chunk_bytes, target)
        zone = int(self._target * SEARCH_FRACTION) // BYTES_PER_SAMPLE * BYTES_PER_SAMPLE
        self._zone_start = self._target - zone
        self._pending = bytearray()  # pulled but not yet assigned to a segment
        self._chunks: list[bytes] = []  # the current segment, in send order
        self._seg_bytes = 0
        self._seg_start = 0  # byte offset of the current segment in the whole stream
        self._closed = False  # the current segment's end is known
        self._eof = False
        self._pull_task: asyncio.Future[bytes | None] | None = None

    # -- public ----------------------------------------------------------------------------

    @property
    def offset_ms(self) -> int:
        """Start of the current segment in the stream, in ms."""
        return round(self._seg_start / BYTES_PER_SAMPLE * 1000 / self.rate)

    @property
    def consumed_ms(self) -> int:
        """Duration of everything assigned to segments so far (the whole file once done)."""
        return round((self._seg_start + self._seg_bytes) / BYTES_PER_SAMPLE * 1000 / self.rate)

    @property
    def buffered_bytes(self) -> int:
        return self._seg_bytes + len(self._pending)

    async def next_segment(self) -> bool:
        """Drop the current segment and start the next; False when the source is exhausted."""
        self._seg_start += self._seg_bytes
        self._chunks = []
        self._seg_bytes = 0
        self._closed = False
        while not self._pending and not self._eof:
            await self._pull()
        self._settle()
        if self._closed and not self._seg_bytes:
            return False
        return True

    async def replay(self) -> AsyncIterator[bytes]:
        """The current segment from its start; pulls from the source past what is buffered."""
        i = 0
        while True:
            if i < len(self._chunks):
                yield self._chunks[i]
                i += 1
            elif self._closed:
                return
            else:
                await self._pull()

    async def aclose(self) -> None:
        if self._pull_task is not None:
            self._pull_task.cancel()
            self._pull_task = None
        close = getattr(self._source, "aclose", None)
        if close is not None:
            await close()

    # -- internals -------------------------------------------------------------------------

    async def _pull(self) -> None:
        # The pull runs in its own task behind a shield: a sender cancelled mid-pull (its session
        # failed) must not cancel the source, or an async generator would end early and the
        # retried segment would silently lose audio. The next pull picks the same task up.
        if self._pull_task is None:
            self._pull_task = asyncio.ensure_future(_next_or_none(self._source))
        task = self._pull_task
        item = await asyncio.shield(task)
        if self._pull_task is not task:
            return
        self._pull_task = None
        if item is None:
            self._eof = True
        elif item:
            self._pending += item
        self._settle()

    def _emit(self, n: int) -> None:
        """Move ``n`` bytes from pending into the segment as chunk_bytes pieces."""
        view = memoryview(self._pending)
        try:
            for i in range(0, n, self.chunk_bytes):
                piece = bytes(view[i : min(n, i + self.chunk_bytes)])
                self._chunks.append(piece)
                self._seg_bytes += len(piece)
        finally:
            view.release()
        del self._pending[:n]

    def _settle(self) -> None:
        if self._closed:
            return
        # Stream whole chunks that cannot fall in the search zone.
        room = self._zone_start - self._seg_bytes
        if room > 0 and len(self._pending) >= self.chunk_bytes:
            n = min(room, len(self._pending)) // self.chunk_bytes * self.chunk_bytes
            if n:
                self._emit(n)
        if self._seg_bytes + len(self._pending) >= self._target:
            lo = max(0, self._zone_start - self._seg_bytes)
            hi = self._target - self._seg_bytes
            cut = lo + quietest_cut(bytes(self._pending[lo:hi]), self.rate)
            self._emit(cut)
            self._closed = True
        elif self._eof:
            usable = len(self._pending) // BYTES_PER_SAMPLE * BYTES_PER_SAMPLE  # a stray odd byte is no sample
            self._emit(usable)
            self._pending.clear()
            self._closed = True

    @property
    def last(self) -> bool:
        """The current segment is the final one."""
        return self._closed and self._eof and not self._pending


async def _next_or_none(source: AsyncIterator[bytes]) -> bytes | None:
    try:
        return await source.__anext__()
    except StopAsyncIteration:
        return None
