"""Long audio: segments cut in silence, absolute monotonic offsets, resends without doubled words."""

from __future__ import annotations

import asyncio
import tracemalloc

from tests import speech
from tests.client.conftest import RATE, config_for
from tests.client.proxy import FaultProxy
from voxbeam.client import SpeechClient


def _long_file(clips: list[bytes]) -> bytes:
    parts = [speech.silence(0.5)]
    for clip in clips:
        parts += [clip, speech.silence(0.9)]
    return b"".join(parts)


def _chunks(pcm: bytes, size: int = 7000):
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


def test_long_file_in_segments_matches_one_pass_with_absolute_offsets(server, clips):
    pcm = _long_file(clips)
    seconds = len(pcm) / 2 / RATE

    async def go():
        async with (
            SpeechClient(config_for(server)) as whole,
            SpeechClient(config_for(server, segment_seconds=5.0)) as split,
        ):
            return await asyncio.gather(whole.transcribe(_chunks(pcm)), split.transcribe(_chunks(pcm)))

    one, seg = asyncio.run(go())
    assert len(one.request_ids) == 1
    assert len(seg.request_ids) >= int(seconds // 5)  # one recognition session per segment
    assert seg.audio_duration_ms == one.audio_duration_ms == round(seconds * 1000)
    # Cuts land in the pauses, so segmenting changes (almost) nothing.
    assert speech.wer([one.text], [seg.text]) <= 0.1, (one.text, seg.text)
    offsets = [w.offset_ms for w in seg.words]
    assert offsets == sorted(offsets) and offsets[-1] > seg.audio_duration_ms - 4000
    # The same word at the same time twice would be a boundary doubled.
    for a, b in zip(seg.words, seg.words[1:], strict=False):
        assert not (a.word == b.word and abs(a.offset_ms - b.offset_ms) < 200), (a, b)
    # Word timings agree with the one-pass run where both found the same word.
    one_times = {}
    for w in one.words:
        one_times.setdefault(w.word, []).append(w.offset_ms)
    close = sum(1 for w in seg.words if any(abs(w.offset_ms - t) <= 150 for t in one_times.get(w.word, [])))
    assert close >= 0.85 * len(seg.words)


def test_a_segment_cut_mid_stream_is_resent_whole(server, clips):
    """A fault in the second segment: its partial results are dropped and it is sent again."""
    pcm = _long_file(clips[:5])

    async def go():
        async with SpeechClient(config_for(server, segment_seconds=4.0)) as clean:
            expected = await clean.transcribe(_chunks(pcm))
        proxy = await FaultProxy(server.port).start()
        try:
            # One connection carries every segment; cut it ~6 s of audio (base64) into the stream.
            proxy.cut(after_bytes=int(6.0 * RATE * 2 * 4 / 3))
            async with SpeechClient(config_for(server, endpoints=(proxy.url,), segment_seconds=4.0)) as client:
                got = await client.transcribe(_chunks(pcm))
                return expected, got, client.stats(), proxy.faults_injected
        finally:
            await proxy.close()

    expected, got, stats, injected = asyncio.run(go())
    assert injected == 1 and stats["retries"] == 1 and got.attempts == 2
    assert got.text == expected.text
    assert [(w.word, w.offset_ms) for w in got.words] == [(w.word, w.offset_ms) for w in expected.words]
    assert len(got.request_ids) == len(expected.request_ids)


def test_memory_stays_bounded_by_one_segment(server, clips):
    """Three minutes streamed in 10 s segments: the client holds about one segment, not the file."""
    block = speech.silence(4.0) + clips[0]
    repeats = int(180 * RATE * 2 / len(block)) + 1

    def source():
        for _ in range(repeats):
            yield from _chunks(block, 6400)

    async def go():
        cfg = config_for(server, segment_seconds=10.0, max_in_flight_chunks=4)
        async with SpeechClient(cfg) as client:
            tracemalloc.start()
            try:
                r = await client.transcribe(source())
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            return r, peak

    r, peak = asyncio.run(go())
    total = repeats * len(block)
    assert r.audio_duration_ms == round(total / 2 / RATE * 1000)
    assert len(r.request_ids) >= 17
    # Two segments' worth (the one being sent, the next one filling), the hand-over queue, socket buffers.
    assert peak < 4 * 10 * RATE * 2, peak  # ~1.3 MB, while the file is ~5.8 MB
    assert peak < total / 4
