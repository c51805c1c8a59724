"""The live feed under `voxbeam caption`: 100 ms chunks, each sent once its audio has played at the speed asked."""

from __future__ import annotations

import asyncio
import time

from voxbeam import protocol
from voxbeam.client.live import LiveFeed

RATE = 16000
ONE_SECOND = b"\x01\x00" * RATE


async def _drain(feed: LiveFeed, stop_after: int | None = None) -> tuple[list[bytes], float]:
    start = time.monotonic()
    out = []
    async for chunk in feed.chunks():
        out.append(chunk)
        if stop_after is not None and len(out) == stop_after:
            feed.stop()
    return out, time.monotonic() - start


def test_chunks_of_100_ms_paced_at_the_speed_asked_from_pieces_of_any_size():
    pieces = [ONE_SECOND[:1001], ONE_SECOND[1001:7000], ONE_SECOND[7000:]]  # odd sizes: rechunked on samples
    feed = LiveFeed(pieces, sample_rate=RATE, speed=5.0)
    chunks, took = asyncio.run(_drain(feed))
    assert [len(c) for c in chunks] == [3200] * 10
    assert b"".join(chunks) == ONE_SECOND and feed.sent_ms == 1000
    assert 0.18 <= took < 1.0  # 1 s of audio at 5x: the last chunk after its audio played, at 0.2 s
    # Each chunk's time is recorded: an event ending at 950 ms is timed from the tenth chunk.
    assert feed.sent_at(950) == feed.sent_at(1000) and feed.sent_at(50) is not None
    event = feed.event(protocol.Transcript("req_1", " he  might ", False, offset=0, duration=950), time.monotonic())
    assert event.text == "he might" and event.end_ms == 950 and 0 <= event.latency_ms < 1000
    untimed = feed.event(protocol.Transcript("req_1", "he", True))
    assert untimed.latency_ms is None  # a service that gives no offset and duration


def test_unpaced_is_as_fast_as_it_goes_and_stop_ends_the_feed_early():
    chunks, took = asyncio.run(_drain(LiveFeed([ONE_SECOND * 5], sample_rate=RATE, speed=0)))
    assert len(chunks) == 50 and took < 0.5
    feed = LiveFeed([ONE_SECOND * 5], sample_rate=RATE, speed=1.0)
    chunks, took = asyncio.run(_drain(feed, stop_after=2))
    assert len(chunks) == 2 and feed.stopped and took < 0.5  # the wait for the third chunk is cut short
