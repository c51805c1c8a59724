"""Long-audio segmentation: nothing lost or doubled, bounded segments and memory, cuts in silence."""

from __future__ import annotations

import asyncio

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from voxbeam.audio import quietest_cut
from voxbeam.client.segmenter import SegmentFeed

RATE = 8000


async def _agen(items: list[bytes]):
    for item in items:
        yield item


def _split(data: bytes, sizes: list[int]) -> list[bytes]:
    out, i, k = [], 0, 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        out.append(data[i : i + n])
        i += n
        k += 1
    return out


async def _segments(items: list[bytes], *, seconds: float, chunk_ms: int = 100, replays: int = 1):
    feed = SegmentFeed(_agen(items), sample_rate=RATE, chunk_ms=chunk_ms, segment_seconds=seconds)
    segs, peak = [], 0
    while await feed.next_segment():
        first = None
        for _ in range(replays):  # a retried segment must replay the same bytes
            chunks = [c async for c in feed.replay()]
            assert all(0 < len(c) <= feed.chunk_bytes for c in chunks)
            data = b"".join(chunks)
            assert first is None or data == first
            first = data
        segs.append((feed.offset_ms, first))
        peak = max(peak, feed.buffered_bytes)
        if feed.last:
            break
    return segs, peak, feed


def _noise(seconds: float, seed: int, amp: int = 3000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(-amp, amp, int(seconds * RATE), dtype=np.int16)


@settings(max_examples=40, deadline=None)
@given(
    seconds=st.floats(min_value=0.01, max_value=9.0),
    sizes=st.lists(st.integers(min_value=97, max_value=20000), min_size=1, max_size=5),
    segment_seconds=st.floats(min_value=1.0, max_value=3.0),
    seed=st.integers(0, 2**16),
)
def test_segments_reassemble_exactly_and_stay_bounded(seconds, sizes, segment_seconds, seed):
    pcm = _noise(seconds, seed).tobytes()
    segs, peak, feed = asyncio.run(_segments(_split(pcm, sizes), seconds=segment_seconds, replays=2))
    assert b"".join(d for _, d in segs) == pcm  # nothing lost, nothing doubled
    target = int(segment_seconds * RATE) * 2
    for _, d in segs[:-1]:
        assert 0.9 * target - 2 <= len(d) <= target
    # Offsets are where each segment starts in the stream.
    pos = 0
    for off, d in segs:
        assert off == round(pos / 2 * 1000 / RATE)
        pos += len(d)
    assert feed.consumed_ms == round(len(pcm) / 2 * 1000 / RATE)
    # Memory: one segment plus one source item, whatever the stream length.
    assert peak <= target + max(sizes) + feed.chunk_bytes


def test_cut_lands_in_the_silence_near_the_target():
    speech = _noise(10.0, 1)
    speech[int(9.3 * RATE) : int(9.5 * RATE)] = 0  # the only quiet spot in the last 10 % of a 10 s target
    speech[int(5.0 * RATE) : int(6.0 * RATE)] = 0  # quieter and longer, but too early to be chosen
    pcm = np.concatenate([speech, _noise(4.0, 2)]).tobytes()
    segs, _, _ = asyncio.run(_segments([pcm], seconds=10.0))
    assert len(segs) == 2
    cut_s = len(segs[0][1]) / 2 / RATE
    assert 9.3 <= cut_s <= 9.5
    assert segs[1][0] == round(cut_s * 1000)


def test_odd_bytes_and_empty_items_are_handled():
    pcm = _noise(1.0, 3).tobytes()
    items = [b"", pcm[:1], pcm[1:7], b"", pcm[7:], b"\x01"]  # a trailing stray byte is no sample
    segs, _, _ = asyncio.run(_segments(items, seconds=60))
    assert b"".join(d for _, d in segs) == pcm


def test_empty_source_has_no_segment():
    segs, _, feed = asyncio.run(_segments([], seconds=5))
    assert segs == [] and feed.consumed_ms == 0


def test_quietest_cut_picks_the_lowest_energy_window():
    x = _noise(1.0, 4)
    x[4000:4400] = 5  # 50 ms of near-silence at 0.5 s
    cut = quietest_cut(x.tobytes(), RATE)
    assert cut % 2 == 0
    assert 4000 <= cut // 2 <= 4400
    assert quietest_cut(b"\0\0" * 10, RATE) == 20  # shorter than a window: the end
