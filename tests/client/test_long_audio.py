"""Long audio: segments cut in silence, absolute monotonic offsets, resends without doubled words."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

from tests import speech
from tests.client.conftest import RATE, config_for
from tests.client.proxy import FaultProxy
from tests.jobs.helpers import ROOT
from voxbeam.client import SpeechClient, Timeouts
from voxbeam.client.segmenter import SegmentFeed


def _long_file(clips: list[bytes], gap: float = 0.9) -> bytes:
    parts = [speech.silence(0.5)]
    for clip in clips:
        parts += [clip, speech.silence(gap)]
    return b"".join(parts)


def _chunks(pcm: bytes, size: int = 7000):
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


def _blocks(clips: list[bytes], period: float = 3.0, lead: float = 0.4) -> bytes:
    """Each clip in its own ``period``-second block after ``lead`` s of silence: a pause every block."""
    out = b""
    for clip in clips:
        block = speech.silence(lead) + clip
        assert len(block) <= (period - 0.5) * RATE * 2  # half a second of pause at least
        out += block + speech.silence(period - len(block) / 2 / RATE)
    return out


def _cuts(pcm: bytes, segment_seconds: float, chunk_bytes: int) -> list[int]:
    """Where the client cuts ``pcm`` (fed in ``chunk_bytes`` items): the same SegmentFeed, offline."""

    async def go() -> list[int]:
        async def source():
            for piece in _chunks(pcm, chunk_bytes):
                yield piece

        feed = SegmentFeed(source(), sample_rate=RATE, chunk_ms=100, segment_seconds=segment_seconds)
        bounds, pos = [], 0
        while await feed.next_segment():
            pos += sum([len(c) async for c in feed.replay()])
            bounds.append(pos)
            if feed.last:
                break
        return bounds

    return asyncio.run(go())


def test_long_file_in_segments_with_absolute_offsets(server, clips, reference):
    """A split file gives exactly what each segment gives on its own, shifted to its place in the file."""
    pcm = _blocks([clips[i] for i in (2, 3, 4, 7)])
    seconds = len(pcm) / 2 / RATE
    ends = _cuts(pcm, 3.0, 7000)
    starts = [0, *ends[:-1]]
    assert len(ends) >= 4 and ends[-1] == len(pcm)

    async def go():
        async with (
            SpeechClient(config_for(server, segment_seconds=3.0)) as split,
            SpeechClient(config_for(server)) as one,
        ):
            pieces = [one.transcribe(pcm[a:b]) for a, b in zip(starts, ends, strict=True)]
            return await asyncio.gather(split.transcribe(_chunks(pcm)), *pieces)

    seg, *parts = asyncio.run(go())
    assert len(seg.request_ids) == len(ends)  # a recognition session per segment
    assert seg.audio_duration_ms == round(seconds * 1000)
    expected = [
        (w.word, w.offset_ms + round(a / 2 / RATE * 1000), w.duration_ms)
        for a, part in zip(starts, parts, strict=True)
        for w in part.words
    ]
    assert [(w.word, w.offset_ms, w.duration_ms) for w in seg.words] == expected  # nothing lost, doubled or moved
    assert seg.text == " ".join(p.text for p in parts if p.text)
    assert speech.wer([" ".join(speech.SENTENCES[i] for i in (2, 3, 4, 7))], [seg.text]) <= 0.8  # voice varies
    offsets = [w.offset_ms for w in seg.words]
    assert offsets == sorted(offsets) and offsets[-1] > (seconds - 3) * 1000


def test_a_segment_cut_mid_stream_is_resent_whole(server, phrases, reference):
    """A fault in the second segment: its partial results are dropped and it is sent again."""
    pcm = _long_file(phrases[:6], gap=0.8)

    async def go():
        async with SpeechClient(config_for(server, segment_seconds=2.5)) as clean:
            expected = await clean.transcribe(_chunks(pcm))
        proxy = await FaultProxy(server.port).start()
        try:
            # One connection carries every segment; cut it ~3.7 s of audio (base64) into the stream.
            proxy.cut(after_bytes=int(3.7 * RATE * 2 * 4 / 3))
            async with SpeechClient(config_for(server, endpoints=(proxy.url,), segment_seconds=2.5)) as client:
                got = await client.transcribe(_chunks(pcm))
                return expected, got, client.stats(), proxy.faults_injected
        finally:
            await proxy.close()

    expected, got, stats, injected = asyncio.run(go())
    assert injected == 1 and stats["retries"] == 1 and got.attempts == 2
    assert got.text == expected.text
    assert [(w.word, w.offset_ms) for w in got.words] == [(w.word, w.offset_ms) for w in expected.words]
    assert len(got.request_ids) == len(expected.request_ids)


_MEMORY_PROBE = """
import asyncio, json, sys, tracemalloc
from voxbeam.client import SpeechClient
from tests.client.conftest import RATE, config_for

class Server:
    url, api_key = sys.argv[1], sys.argv[2]

block = open(sys.argv[3], "rb").read()

def source(seconds):
    for _ in range(int(seconds * RATE * 2 / len(block)) + 1):
        for i in range(0, len(block), 6400):
            yield block[i : i + 6400]

async def peak_for(client, seconds):
    tracemalloc.start()
    try:
        r = await client.transcribe(source(seconds))
        return tracemalloc.get_traced_memory()[1], r.audio_duration_ms
    finally:
        tracemalloc.stop()

async def go():
    async with SpeechClient(config_for(Server, segment_seconds=3.0, max_in_flight_chunks=4)) as client:
        await client.transcribe(source(4))  # warm: session, imports, buffers
        # A run's peak is its worst moment, which a short run meets only now and then (measured: 484-656 kB
        # over four runs of 12 s, while 48 s held at 687-694 kB): the short length's peak is the highest of three.
        shorts = [await peak_for(client, 12) for _ in range(3)]
        return max(shorts), await peak_for(client, 48)

print(json.dumps(asyncio.run(go())))
"""


def test_memory_stays_bounded_by_one_segment(server, phrases, tmp_path):
    """Memory does not grow with the file: 12 s and 48 s streamed in 3 s segments peak alike.

    Measured in a process of its own: tracemalloc counts every thread's allocations, and threads
    that earlier tests left in this one (pools, emulators, servers) would be counted too.
    """
    block = tmp_path / "block.pcm"
    block.write_bytes(speech.silence(3.0) + phrases[2])
    probe = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, server.url, server.api_key, str(block)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    (short_peak, short_ms), (long_peak, long_ms) = json.loads(probe.stdout.strip().splitlines()[-1])
    long_bytes = long_ms * RATE * 2 // 1000
    assert long_ms > 3 * short_ms
    # One segment (96 kB) plus buffers, whatever the length: 4x the audio may not cost 30 % more.
    assert long_peak < 1.3 * short_peak, (short_peak, long_peak)
    short_bytes = short_ms * RATE * 2 // 1000
    # What the longer file adds is audio the client never holds: a tenth of it would be a leak.
    assert long_peak - short_peak < (long_bytes - short_bytes) / 10, (short_peak, long_peak, long_bytes)


def test_record_deadline_applies_per_segment(server):
    """A file longer than the record deadline still goes through when each segment beats it."""
    pcm = speech.silence(10.0)

    async def go():
        # Real-time pacing: the whole file takes 10 s, twice the deadline; each 1 s segment takes about 1 s,
        # which leaves 4 s for a loaded machine's turnaround before the deadline would fire.
        timeouts = Timeouts(connect=5, ready=20, result=20, record=5.0, pool=300)
        config = config_for(server, segment_seconds=1.0, realtime_pacing=True, timeouts=timeouts)
        async with SpeechClient(config) as client:
            return await client.transcribe(_chunks(pcm, 3200))

    result = asyncio.run(go())
    assert result.audio_duration_ms == 10000
    assert len(result.request_ids) >= 9 and result.attempts == 1
