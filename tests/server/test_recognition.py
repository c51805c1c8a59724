"""Recognition quality through the server's own engines: TTS (default voice) -> STT.

The sentences here were never used to tune the recognizer or the voice (that used other
sets); word error rate is a bound, not exact strings. Word timings are checked against the
known position of speech in the PCM we sent.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
import wave

import jiwer
import numpy as np

from tests import metrics
from tests.server import helpers as h
from tests.speech import corpus_clip
from voxbeam.audio import quietest_cut
from voxbeam.server.engines.whisper import WINDOWS_PER_ROUND
from voxbeam.server.stt import MAX_DEFERRED_MS

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


def _backlog_s(server) -> float:
    samples = metrics.scrape(server)
    assert ("voxbeam_decode_backlog_seconds", ()) in samples, "no voxbeam_decode_backlog_seconds in /metrics"
    return metrics.value(samples, "voxbeam_decode_backlog_seconds")


def test_one_long_upload_is_decoded_on_every_worker_in_order(server, record_property):
    """A bulk file's stretches go to whichever worker is free (not only the session's own), and
    its finals still come back in the order of the audio, at their places in the file."""
    workers = sorted(h.worker_processes(server.pid), key=lambda p: p.pid)
    assert len(workers) >= 2, "the shared server runs two workers"
    clips = asyncio.run(_render_all(server, SENTENCES))
    gap = h.silence(0.5)
    rounds = 8  # about 220 s: more than two rounds' worth (whisper.ROUND_S), so several stretches are cut off
    pcm = b"".join(clip + gap for _ in range(rounds) for clip in clips)
    before = [p.cpu_times() for p in workers]
    backlog: list[float] = []  # /metrics while the file goes up: how much cut-off audio waits for a worker
    uploading = threading.Event()
    uploading.set()

    def watch():
        while uploading.is_set():
            backlog.append(_backlog_s(server))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        msgs = asyncio.run(h.transcribe(server, pcm, enable_timestamps=True))
    finally:
        uploading.clear()
        watcher.join()
    used = [sum(a) - sum(b) for a, b in zip((p.cpu_times() for p in workers), before, strict=True)]
    # A file sent as fast as the socket takes it is held back once two rounds wait: memory stays bounded.
    # But not before: the next round is cut while the last one decodes (more than one round's worth
    # waited at once), so the workers always have the next windows at hand.
    assert WINDOWS_PER_ROUND * 30 < max(backlog) <= MAX_DEFERRED_MS / 1000 + WINDOWS_PER_ROUND * 30, max(backlog)
    assert _backlog_s(server) == 0

    finals = h.finals(msgs)
    offsets = [f["offset"] for f in finals]
    assert offsets == sorted(offsets) and offsets[-1] < len(pcm) / 2 / RATE * 1000, offsets
    said = " ".join(normalize(f["text"]) for f in finals)
    wer = jiwer.wer(" ".join(normalize(s) for _ in range(rounds) for s in SENTENCES), said)
    assert wer <= MAX_WER, (wer, said)  # in order: the same words shuffled would be far off
    split = min(used) / max(used)
    record_property("worker_cpu_split", round(split, 3))
    # One worker alone would leave the other idle (a split near 0); the stretches are ~90 s each.
    assert split >= 0.3, used


def test_a_round_fills_the_pipelines_windows_and_not_one_more(server):
    """The bulk round's cuts, checked against faster-whisper's own VAD and chunking of each window's audio."""
    from faster_whisper.vad import collect_chunks, get_speech_timestamps

    from voxbeam.server.engines.whisper_batch import PIPELINE_VAD
    from voxbeam.server.engines.whisper_timing import WINDOW_S, round_cuts, speech_regions

    clips = asyncio.run(_render_all(server, SENTENCES))
    pauses = [0.25, 0.6, 1.5, 0.35, 3.0]  # short pauses (the pads overlap) and long ones
    pcm = b"".join(clip + h.silence(pauses[i % len(pauses)]) for i, clip in enumerate(clips * 4))
    audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    regions = speech_regions(audio)
    cuts = round_cuts(regions, len(audio) / RATE, 3)
    assert len(cuts) == 3 and cuts == sorted(cuts) and cuts[-1] < len(audio) / RATE
    assert not any(lo < cut < hi for cut in cuts for lo, hi in regions), "a cut in the middle of speech"
    for lo, hi in zip([0.0, *cuts[:-1]], cuts, strict=True):
        # What BatchedInferencePipeline.transcribe does with a window's audio (faster-whisper 1.2).
        window = audio[int(lo * RATE) : int(hi * RATE)]
        chunks, _ = collect_chunks(window, get_speech_timestamps(window, PIPELINE_VAD), max_duration=WINDOW_S)
        assert len(chunks) == 1, [len(c) / RATE for c in chunks]  # one encoder pass per window
        assert len(chunks[0]) / RATE >= WINDOW_S / 2, (lo, hi)  # worth it, not a sliver


def test_three_people_in_one_window_are_all_heard(server):
    """Real people one after another in one 30 s window: Whisper (tiny.en) wrote the first one's sentence and
    ended the window's text there, losing 20 s of the third's speech; what follows the last word heard is
    decoded again."""

    def pcm_of(clip_id: str) -> bytes:
        with wave.open(corpus_clip(clip_id).path, "rb") as w:
            return w.readframes(w.getnframes())

    third = pcm_of("mfa/cold-corpus3")
    cut = 8 * RATE * 2 + quietest_cut(third[8 * RATE * 2 : 20 * RATE * 2], RATE)  # 8-20 s in, at a pause
    gap = h.silence(0.5)
    pcm = gap + pcm_of("mfa/librispeech-61-70968-0000") + gap + pcm_of("mfa/commonvoice-22058264") + gap
    msgs = asyncio.run(h.transcribe(server, pcm + third[:cut], enable_timestamps=True))
    heard = h.words(" ".join(m["text"] for m in h.finals(msgs)))
    assert {"wizard", "curtain"} <= set(heard), heard  # the first
    assert {"sick", "corpus", "recording", "levels"} <= set(heard), heard  # the third, from 10.5 s on


def test_speech_after_a_long_digital_silence_is_heard(server):
    """One side of a split call: a real person's turn after 30 s of digital silence (the other side talking).
    Silero's state after that much silence heard 11 s of the turn's 26 s of speech, and Whisper lost "this is
    the sick corpus, I have a cold"; it now starts afresh after a second of silence."""
    with wave.open(corpus_clip("mfa/cold-corpus").path, "rb") as w:
        turn = w.readframes(w.getnframes())
    msgs = asyncio.run(h.transcribe(server, h.silence(30.0) + turn, enable_timestamps=True))
    heard = h.words(" ".join(m["text"] for m in h.finals(msgs)))
    assert {"sick", "corpus", "cold"} <= set(heard), heard
