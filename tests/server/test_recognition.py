"""Recognition quality through the server's own engines: TTS (default voice) -> STT.

The sentences here were never used to tune the recognizer or the voice (that used other
sets); word error rate is a bound, not exact strings. Word timings are checked against the
known position of speech in the PCM we sent.
"""

from __future__ import annotations

import asyncio
import re

import jiwer
import numpy as np

from tests.server import helpers as h

# A round trip through our own voice: a plumbing check (accuracy is judged on human speech, tests/test_accuracy.py).
SENTENCES = [
    "The sky is clear this evening.",
    "My mother made soup for lunch.",
    "We watched the game on television.",
    "He left his umbrella on the bus.",
    "The school is closed for the holiday.",
    "Please wash your hands before dinner.",
    "The room was quiet and dark.",
    "She bought three apples at the market.",
    "I will call you tomorrow morning.",
    "The water in the lake is cold.",
    "They built a new house near the river.",
    "My friend lives in a big city.",
]
MAX_WER = 0.20
RATE = 16000
PAD_S = 0.3
CONCURRENCY = 4


def normalize(text: str) -> str:
    return re.sub(r"[^a-z' ]+", " ", text.lower()).strip()


async def _render_all(server, texts):
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(text):
        async with sem:
            return await h.tts_pcm(server, [text], rate=RATE)

    return await asyncio.gather(*(one(t) for t in texts))


async def _transcribe_all(server, clips):
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(pcm):
        async with sem:
            msgs = await h.transcribe(server, h.silence(PAD_S) + pcm + h.silence(PAD_S), enable_timestamps=True)
            return " ".join(f["text"] for f in h.finals(msgs))

    return await asyncio.gather(*(one(c) for c in clips))


def _worker_cpu(server) -> float:
    return sum(p.cpu_times().user + p.cpu_times().system for p in h.worker_processes(server.pid))


def test_word_error_rate_of_our_own_speech(server, record_property):
    clips = asyncio.run(_render_all(server, SENTENCES))
    cpu_before = _worker_cpu(server)
    hyps = asyncio.run(_transcribe_all(server, clips))
    cpu = _worker_cpu(server) - cpu_before
    audio_s = sum(len(c) / 2 / RATE + 2 * PAD_S for c in clips)
    refs = [normalize(s) for s in SENTENCES]
    wer = jiwer.wer(refs, [normalize(x) for x in hyps])
    record_property("wer", round(wer, 4))
    record_property("audio_seconds_per_cpu_second", round(audio_s / cpu, 2))
    report = "\n".join(f"  {r!r} -> {x!r}" for r, x in zip(refs, hyps, strict=True))
    print(f"\nWER {wer:.3f} over {len(refs)} sentences; {audio_s:.1f} s of audio in {cpu:.1f} worker CPU s\n{report}")
    assert wer <= MAX_WER, f"WER {wer:.3f} > {MAX_WER}\n{report}"


def _onset(pcm: bytes, threshold: int = 300) -> float:
    """Seconds to the first 5 ms window whose peak passes ``threshold``: where speech starts."""
    x = np.abs(np.frombuffer(pcm, dtype="<i2").astype(np.int32))
    win = RATE // 200
    peaks = x[: len(x) // win * win].reshape(-1, win).max(axis=1)
    return float(np.argmax(peaks > threshold) * win / RATE)


def test_word_offsets_match_where_speech_is(server, record_property):
    first, second = asyncio.run(
        _render_all(server, ["The weather is nice today.", "Thank you very much for your help."])
    )
    lead, gap = h.silence(0.5), h.silence(2.0)
    stream = lead + first + gap + second + h.silence(0.5)
    true_first = 0.5 + _onset(first)
    true_second = (len(lead) + len(first) + len(gap)) / 2 / RATE + _onset(second)
    msgs = asyncio.run(h.transcribe(server, stream, enable_timestamps=True))
    finals = h.finals(msgs)
    assert len(finals) == 2, finals  # two utterances: the 2 s pause is an endpoint
    errors = []
    for final, truth in zip(finals, (true_first, true_second), strict=True):
        start = final["words"][0]["offset"] / 1000
        errors.append(start - truth)
        # Whisper times words in 20 ms steps and snaps them to the VAD's speech regions; Piper's audio varies
        # from run to run (its noise is random), so the bound leaves room: a word misplaced would be off by far more.
        assert abs(start - truth) <= 0.200, (final["words"][0], truth)
    record_property("timing_errors_ms", [round(e * 1000) for e in errors])
    print(f"\nfirst-word timing errors: {[round(e * 1000) for e in errors]} ms")
    # The second utterance ends after it starts, and inside the audio we sent.
    assert finals[1]["offset"] + finals[1]["duration"] <= len(stream) / 2 / RATE * 1000
