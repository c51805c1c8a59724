"""In-process pieces of the server: voice catalog and prosody, text handling, the pocketsphinx
engine's endpointing and decoder pool, log redaction, and the CLI's refusal to run without a key."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import numpy as np
import pytest

from voxbeam import audio
from voxbeam import protocol as p
from voxbeam.server import voices
from voxbeam.server.engines import espeak
from voxbeam.server.engines.base import Recognized, Voice
from voxbeam.server.engines.pocketsphinx import DecoderPool, NoiseFloor, RecognitionStream, RecognizerSettings
from voxbeam.server.engines.whisper_timing import RATE
from voxbeam.server.engines.whisper_utterance import WINDOW, ScoredAudio, unlooped
from voxbeam.server.engines.whisper_vad import sounding, vad_probabilities
from voxbeam.server.logs import RedactingFormatter
from voxbeam.text import check_text, join_chunk, sentences


@pytest.fixture(scope="module")
def synth():
    return espeak.get_synthesizer()


@pytest.fixture(scope="module")
def catalog():
    found, problems = voices.load_catalog(None)
    assert not problems
    return found


def test_every_espeak_voice_and_role_variant_exists(synth, catalog):
    text = {"zh-CN": "你好", "de-DE": "Guten Tag.", "es-ES": "Buenos días.", "fr-FR": "Bonjour.", "it-IT": "Ciao."}
    for voice in catalog.voices:
        if voice.engine != "espeak":
            continue
        for role in [None, *voices.ROLES]:
            init = p.TtsInit(voice_config={"role": role} if role else None)
            params = espeak.parameters(voice, voices.prosody_for(init, voice))
            said = text.get(voice.language, "Hello there.")
            assert len(synth.synthesize(said, params)) > synth.sample_rate // 4, (voice.id, role)


def test_voice_resolution(catalog):
    assert catalog.resolve(None, None).id == "vl-joe"  # the neural voice is the default for English
    assert catalog.resolve(None, "en").id == "vl-joe"
    assert catalog.resolve(None, "en_gb").id == "vl-libby"  # no Piper voice for en-GB: eSpeak's
    assert catalog.resolve(None, "zh-CN").id == "vl-xiaoxiao"
    assert catalog.resolve("VL-Ryan", "en").id == "vl-ryan"
    for voice_id, language, code in [
        ("vl-nobody", None, p.ErrorCode.VOICE_NOT_FOUND),
        ("vl-jenny", "zh-CN", p.ErrorCode.UNSUPPORTED_LANGUAGE),
        ("vl-jenny", "en-GB", p.ErrorCode.UNSUPPORTED_LANGUAGE),
        (None, "xx", p.ErrorCode.UNSUPPORTED_LANGUAGE),
    ]:
        with pytest.raises(p.ProtocolError) as info:
            catalog.resolve(voice_id, language)
        assert info.value.code is code


def test_espeak_prosody_mapping_directions(catalog):
    jenny = catalog.by_id["vl-jenny"]

    def params(**init):
        return espeak.parameters(jenny, voices.prosody_for(p.TtsInit(**init), jenny))

    base = params()
    assert (base.rate, base.pitch, base.range, base.volume) == (175, 50, 50, 100)
    assert base.voice == "en-us+f2"
    fast = params(speed=2.0, pitch=1.0, volume=0.5)
    assert (fast.rate, fast.pitch, fast.volume) == (350, 100, 50)
    cheerful = params(voice_config={"style": "cheerful"})
    sad = params(voice_config={"style": "sad"})
    assert cheerful.pitch > base.pitch > sad.pitch and cheerful.range > sad.range and cheerful.rate > sad.rate
    half = params(voice_config={"style": "cheerful", "degree": 0.5})
    double = params(voice_config={"style": "cheerful", "degree": 2})
    assert base.pitch < half.pitch < cheerful.pitch < double.pitch
    boy = params(voice_config={"role": "boy"})
    assert boy.voice == "en-us+m3" and boy.pitch > base.pitch


def test_a_voice_refuses_what_it_does_not_honour(catalog):
    joe = catalog.by_id["vl-joe"]
    assert "role" not in joe.honours and {"speed", "pitch", "volume", "style"} <= joe.honours
    with pytest.raises(p.ProtocolError) as info:
        voices.prosody_for(p.TtsInit(voice_config={"role": "Girl"}), joe)
    assert info.value.code is p.ErrorCode.INVALID_MESSAGE and "voice_config.role" in info.value.message
    plain = Voice("vl-x", "X", "en-US", "", "test", "x", 16000, frozenset({"speed"}))
    voices.prosody_for(p.TtsInit(speed=1.5), plain)
    voices.prosody_for(p.TtsInit(), plain)  # defaults ask for nothing
    for init in (p.TtsInit(pitch=0.5), p.TtsInit(volume=0.5), p.TtsInit(voice_config={"style": "sad"})):
        with pytest.raises(p.ProtocolError):
            voices.prosody_for(init, plain)


def test_sentences_and_chunk_joining():
    assert sentences("Hello there. How are you?  Fine") == ["Hello there. ", "How are you?  ", "Fine"]
    assert sentences("你好。世界") == ["你好。", "世界"]
    assert sentences("  ") == []
    long = "word " * 200
    pieces = sentences(long)
    assert len(pieces) > 1 and all(len(x) <= 600 for x in pieces) and "".join(pieces) == long
    # The spec's batch example: chunks are words or phrases.
    text = ""
    for chunk in ["Hello", "world", "this is", "a test"]:
        text = join_chunk(text, chunk)
    assert text == "Hello world this is a test"
    assert join_chunk("Hello ", "world") == join_chunk("Hello", " world") == "Hello world"
    check_text("fine ✓")
    with pytest.raises(p.ProtocolError) as info:
        check_text("a\ud800b")
    assert info.value.code is p.ErrorCode.INVALID_MESSAGE


def test_decoder_pool_keeps_one_decoder_reserved():
    made = []

    def factory():
        made.append(object())
        return made[-1]

    pool = DecoderPool(3, factory=factory)
    a, b = pool.lend(), pool.lend()
    assert a is not None and b is not None and pool.lend() is None  # live decoding is best effort
    reserved = pool.reserved()  # always there, whatever is lent
    assert reserved is pool.reserved() and len(made) == 3 and pool.lent == 2
    pool.give_back(a)
    assert pool.lend() is a and len(made) == 3  # reused, not recreated
    assert DecoderPool(1, factory=object).lend() is None  # whole utterances only


def test_noise_floor_tops_up_quiet_audio_only():
    floor = NoiseFloor(60.0, 2.0)
    silence = b"\0\0" * 48000  # 3 s: longer than the table, which wraps
    assert floor.sigma_for(silence) == 60.0
    noisy = floor.add(silence, 0, 60.0)
    assert noisy == floor.add(silence, 0, 60.0) and floor.add(silence[:20], 5, 60.0) == noisy[10:30]
    assert 50 < np.frombuffer(noisy, "<i2").std() < 70
    # A recording with a background of its own at the floor or above gets nothing more.
    assert floor.sigma_for(floor.add(silence, 0, 80.0)) == 0.0
    assert 0 < floor.sigma_for(floor.add(silence, 0, 30.0)) < 60
    loud = (b"\xff\x7f" * 100) + (b"\x00\x80" * 100)  # full scale both ways: clipped, no wrap-around
    x = np.frombuffer(floor.add(loud, 0, 60.0), "<i2")
    assert x[:100].min() > 32000 and x[100:].max() < -32000


@pytest.fixture(scope="module")
def long_speech(synth):
    """~6 s of continuous speech (no pause long enough to endpoint), PCM 16 kHz."""
    text = "the quick brown fox jumps over the lazy dog and runs into the forest near the old river"
    andrew = voices.load_catalog(None)[0].by_id["vl-andrew"]
    pcm = synth.synthesize(text, espeak.parameters(andrew, voices.prosody_for(p.TtsInit(), andrew)))
    return audio.resample(pcm, synth.sample_rate, 16000)


def _recognize(pcm: bytes, chunk: int, settings: RecognizerSettings, live: bool = False) -> list[Recognized]:
    stream = RecognitionStream(DecoderPool(settings.decoders), 16000, settings)
    out = []
    for i in range(0, len(pcm), chunk):
        out += stream.push(pcm[i : i + chunk], live)
    return out + stream.finish(live)


def test_long_speech_is_cut_into_bounded_utterances(long_speech):
    settings = RecognizerSettings(decoders=2, max_utterance_s=2.0)
    pcm = b"\0" * 8000 + long_speech + b"\0" * 8000
    msgs = _recognize(pcm, 3200, settings, live=True)
    finals = [m for m in msgs if m.is_final]
    assert len(finals) >= 3
    for f in finals:
        assert f.duration_ms <= 2000 + 100
        assert f.words and all(w.offset_ms >= f.offset_ms for w in f.words)
    assert [f.offset_ms for f in finals] == sorted(f.offset_ms for f in finals)
    assert any(not m.is_final for m in msgs)  # a live utterance with its own decoder gave partials
    assert all(m.is_final for m in _recognize(pcm, 3200, settings))  # bulk audio: no partials


def test_chunking_and_live_decoding_do_not_change_the_result(long_speech):
    settings = RecognizerSettings(decoders=2)
    pause = b"\0" * 32000  # 1 s: the endpointer ends each utterance before the flush
    pcm = b"\0" * 8000 + long_speech[: 16000 * 2 * 3] + pause + long_speech[16000 * 2 * 3 :] + pause

    def finals(msgs):
        return [(f.text, f.offset_ms, f.duration_ms, f.words) for f in msgs if f.is_final]

    whole = finals(_recognize(pcm, len(pcm), settings))
    odd_chunks = finals(_recognize(pcm, 778, settings))  # chunks that split the resampler's frames
    live = _recognize(pcm, 3200, settings, live=True)  # partials from a lent decoder, the same finals
    assert len(whole) == 2 and whole == odd_chunks == finals(live)
    assert any(not m.is_final for m in live)


def test_a_flush_finishes_a_live_utterance_the_same_with_or_without_its_own_decoder(long_speech):
    """Speech still open at a live session's flush: the live decoder's final, reproducibly."""
    pcm = b"\0" * 8000 + long_speech[: 16000 * 2 * 4]  # cut mid-speech
    one = _recognize(pcm, 3200, RecognizerSettings(decoders=2), live=True)
    assert any(not m.is_final for m in one)  # it had a decoder of its own
    two = _recognize(pcm, 4800, RecognizerSettings(decoders=2), live=True)
    # No decoder free for it (one decoder, reserved): decoded whole at the flush, same result.
    three = _recognize(pcm, 3200, RecognizerSettings(decoders=1), live=True)
    assert all(m.is_final for m in three)
    finals = [[m for m in msgs if m.is_final] for msgs in (one, two, three)]
    assert len(finals[0]) == 1 and finals[0][0].words and finals[0] == finals[1] == finals[2]


def test_log_lines_never_show_keys():
    fmt = RedactingFormatter("%(message)s", secrets=["s3cr3t-key"])
    for line in [
        "< GET /v1/stt/realtime?token=s3cr3t-key HTTP/1.1",
        "< X-Api-Key: s3cr3t-key",
        "< x-api-key: anything-else",
        "failed for s3cr3t-key",
    ]:
        out = fmt.format(logging.LogRecord("t", logging.INFO, "", 0, line, None, None))
        assert "s3cr3t-key" not in out and "anything-else" not in out and "***" in out


def test_refuses_to_start_without_a_key():
    env = {k: v for k, v in os.environ.items() if k != "VOXNEXUS_API_KEY"}
    done = subprocess.run(
        [sys.executable, "-m", "voxbeam.server", "--port", "0"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--no_auth" in lines[0] and "VOXNEXUS_API_KEY" in lines[0]


def test_round_cuts_wait_for_speech_to_end_and_never_cut_inside_it():
    from voxbeam.server.engines.whisper_timing import PIPELINE_PAD_S, WINDOW_MARGIN_S, WINDOW_S, round_cuts

    # Less speech than a round: after the last stretch once it has ended, else in the pause before it.
    assert round_cuts([(1.0, 3.0), (4.0, 6.0)], 10.0, 3) == [6.0 + PIPELINE_PAD_S]
    assert round_cuts([(1.0, 3.0), (4.0, 9.5)], 10.0, 3) == [3.0 + PIPELINE_PAD_S]
    assert round_cuts([(1.0, 3.0), (4.0, 9.5)], 10.0, 3, final=True) == [9.5 + 0.25]
    # A lone stretch still going: its leading silence goes; a short one waits; an endless one is split.
    assert round_cuts([(5.0, 9.8)], 10.0, 3) == [5.0 - PIPELINE_PAD_S]
    assert round_cuts([(0.5, 9.8)], 10.0, 3) == []
    step = WINDOW_S - WINDOW_MARGIN_S
    assert round_cuts([(0.5, 99.8)], 100.0, 3) == [0.5 + step, 0.5 + 2 * step, 0.5 + 3 * step]
    # Nothing heard: all but the last second.
    assert round_cuts([], 100.0, 3) == [99.0]
    # Dense speech: a window's worth per window, each cut in a pause; all of it when the audio is complete.
    dense = [(i * 3.0, i * 3.0 + 2.6) for i in range(40)]
    cuts = round_cuts(dense, 120.0, 2)
    assert len(cuts) == 2 and 25.0 < cuts[0] < 30.0 and 25.0 < cuts[1] - cuts[0] < 30.0
    assert not any(lo < cut < hi for cut in cuts for lo, hi in dense)
    everything = round_cuts(dense, 120.0, None, final=True)
    assert len(everything) == 5 and everything[-1] == 117.0 + 2.6 + 0.2


def test_a_worker_ceiling_without_room_for_the_model_tiers_stops_the_start():
    """A tier loaded on first use must fit under the watchdog's ceiling, or every session asking for it would get
    its worker replaced: the server refuses to start instead (measured against a real process's memory)."""
    import dataclasses
    import types

    from voxbeam.server.engines.base import SttModel, SttSettings
    from voxbeam.server.errors import ConfigError
    from voxbeam.server.memory import MIB, rss
    from voxbeam.server.worker import WorkerSpec
    from voxbeam.server.worker.parent import WorkerPool

    tiny = SttModel("whisper", "tiny.en", "/m/tiny.en", "0" * 64, ("en",), False, memory=90 * MIB)
    base = dataclasses.replace(tiny, name="base", memory=173 * MIB)
    held = rss(os.getpid())
    assert held
    pool = WorkerPool(1, WorkerSpec(stt=SttSettings(tiny), stt_tiers=(base,)), memory_ceiling=held + 100 * MIB)
    pool.workers = [types.SimpleNamespace(pid=os.getpid())]  # type: ignore[list-item]
    with pytest.raises(ConfigError) as info:
        pool._check_room_for_tiers()
    assert "--stt_model tiny.en,base" in str(info.value) and "about 173 MiB more" in str(info.value), info.value
    pool.memory_ceiling = held + 400 * MIB
    pool._check_room_for_tiers()
    pool.memory_ceiling = None  # no limit anywhere: no watchdog, nothing to check
    pool._check_room_for_tiers()


def test_sounding_cuts_at_long_digital_silence_only():
    rng = np.random.default_rng(0)

    def noise(s: float) -> np.ndarray:
        return rng.uniform(-0.1, 0.1, int(s * RATE)).astype(np.float32)

    def zeros(s: float) -> np.ndarray:
        return np.zeros(int(s * RATE), np.float32)

    assert sounding(zeros(5)) == []
    # No run of a second: the whole audio, its short silences and one-step dither included.
    dither = np.where(rng.random(RATE * 4 // 10) < 0.5, 1, -1).astype(np.float32) / 32768
    whole = np.concatenate([zeros(0.9), noise(2), zeros(0.5), dither, noise(1)])
    assert sounding(whole) == [(0, len(whole))]
    # Runs of a second or more are left out, but for 0.4 s of them on each side.
    cut = np.concatenate([zeros(3), noise(2), zeros(30), noise(1), zeros(0.5)])
    assert sounding(cut) == [(int(2.6 * RATE), int(5.4 * RATE)), (int(34.6 * RATE), len(cut))]


def test_live_speech_after_a_long_digital_silence_is_scored_as_after_a_short_one():
    """A muted microphone for 30 s, then a real person: Silero's state after the silence heard half as much of
    the turn as speech; a live session now starts it afresh after a second of digital silence."""
    import wave

    from faster_whisper.vad import get_vad_model

    from tests.speech import corpus_clip

    vad = get_vad_model()
    with wave.open(corpus_clip("mfa/cold-corpus").path, "rb") as w:
        turn = w.readframes(w.getnframes())

    def speech_windows(lead_s: float) -> int:
        scored = ScoredAudio(lambda a, state: vad_probabilities(vad.session, a, state), start=0)
        pcm = b"\0\0" * int(lead_s * RATE) + turn
        for i in range(0, len(pcm), 3200):  # 100 ms pushes, as a live client sends them
            scored._pcm += pcm[i : i + 3200]
            scored._score_new()
        return sum(p > 0.5 for p in scored._probs[int(lead_s * RATE) // WINDOW :])

    after_short, after_long = speech_windows(0.4), speech_windows(30.0)
    assert after_short > 300, after_short
    assert after_long >= 0.9 * after_short, (after_long, after_short)


# What tiny.en guessed at the first 10 s and 14 s of the MFA author's fast speech (bench's human corpus,
# mfa/acoustic-corpus), said once each: with the partial's second of padding it starts over.
HEARD = (
    "This is the acoustic corpus. I'm talking pretty fast here. There's nothing going else going on. We're just, "
    "you know, there's some speech errors, but cares."
)


def test_a_partial_is_cut_where_whisper_starts_over():
    restart = f"{HEARD} This is me talking really soon."
    assert unlooped(f"{restart} {restart}") == restart
    said = f"{HEARD} This is me talking really slow and slightly lower in intensity."
    assert unlooped(f"{said} This is me talking really slow and slightly lower in intensity.") == said


@pytest.mark.parametrize(
    "said",
    [
        HEARD,
        "here's some more words words words words um and that should be all",
        "my card is 4 2 4 2 4 2 4 2 4 2 4 2 4 2 4 2",
        "it is 1 2 3 4, 1 2 3 4 and 1 2 3 4",
        "I said no, no, no, no and no, no, no, no",
    ],
)
def test_repeats_that_people_say_stay_in_a_partial(said):
    assert unlooped(said) == said
