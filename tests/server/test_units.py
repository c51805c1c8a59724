"""In-process pieces of the server: voice catalog and prosody, sentence splitting, the recognizer's
endpointing and decoder pool, log redaction, and the CLI's refusal to run without a key."""

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
from voxbeam.server.engines.recognizer import DecoderPool, NoiseFloor, RecognitionStream, RecognizerSettings
from voxbeam.server.engines.synthesizer import get_synthesizer
from voxbeam.server.logs import RedactingFormatter
from voxbeam.server.tts import split_ready


@pytest.fixture(scope="module")
def synth():
    return get_synthesizer()


def test_every_voice_and_role_variant_exists_in_espeak(synth):
    text = {"en-US": "Hello there.", "en-GB": "Hello there.", "zh-CN": "你好"}
    for voice in voices.VOICES:
        for role in [None, *voices.ROLES]:
            init = p.TtsInit(voice_config={"role": role} if role else None)
            pcm = synth.synthesize(text[voice.language], voices.prosody_for(init, voice))
            assert len(pcm) > synth.sample_rate // 4, (voice.id, role)


def test_voice_resolution():
    assert voices.resolve_voice(None, None).id == "vl-andrew"
    assert voices.resolve_voice(None, "en").id == "vl-andrew"
    assert voices.resolve_voice(None, "en_gb").id == "vl-libby"
    assert voices.resolve_voice(None, "zh-CN").id == "vl-xiaoxiao"
    assert voices.resolve_voice("VL-Ryan", "en").id == "vl-ryan"
    for voice_id, language, code in [
        ("vl-nobody", None, p.ErrorCode.VOICE_NOT_FOUND),
        ("vl-jenny", "zh-CN", p.ErrorCode.UNSUPPORTED_LANGUAGE),
        ("vl-jenny", "en-GB", p.ErrorCode.UNSUPPORTED_LANGUAGE),
        (None, "xx", p.ErrorCode.UNSUPPORTED_LANGUAGE),
    ]:
        with pytest.raises(p.ProtocolError) as info:
            voices.resolve_voice(voice_id, language)
        assert info.value.code is code


def test_prosody_mapping_directions():
    jenny = voices.VOICES_BY_ID["vl-jenny"]
    base = voices.prosody_for(p.TtsInit(), jenny)
    assert (base.rate, base.pitch, base.range, base.volume) == (175, 50, 50, 100)
    assert base.espeak_voice == "en-us+f2"
    fast = voices.prosody_for(p.TtsInit(speed=2.0, pitch=1.0, volume=0.5), jenny)
    assert (fast.rate, fast.pitch, fast.volume) == (350, 100, 50)
    cheerful = voices.prosody_for(p.TtsInit(voice_config={"style": "cheerful"}), jenny)
    sad = voices.prosody_for(p.TtsInit(voice_config={"style": "sad"}), jenny)
    assert cheerful.pitch > base.pitch > sad.pitch and cheerful.range > sad.range and cheerful.rate > sad.rate
    half = voices.prosody_for(p.TtsInit(voice_config={"style": "cheerful", "degree": 0.5}), jenny)
    double = voices.prosody_for(p.TtsInit(voice_config={"style": "cheerful", "degree": 2}), jenny)
    assert base.pitch < half.pitch < cheerful.pitch < double.pitch
    boy = voices.prosody_for(p.TtsInit(voice_config={"role": "boy"}), jenny)
    assert boy.espeak_voice == "en-us+m3" and boy.pitch > base.pitch


def test_split_ready_keeps_unfinished_sentences():
    assert split_ready("Hello there. How are") == ("Hello there. ", "How are")
    assert split_ready("No end yet") == ("", "No end yet")
    assert split_ready("Ends with a dot.") == ("", "Ends with a dot.")  # "Mr." + " Smith" may follow
    assert split_ready("你好。世界") == ("你好。", "世界")
    long = "word " * 200
    ready, rest = split_ready(long)
    assert ready and len(ready) <= 600 and ready + rest == long


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
    pcm = synth.synthesize(text, voices.prosody_for(p.TtsInit(), voices.DEFAULT_VOICE))
    return audio.resample(pcm, synth.sample_rate, 16000)


def _recognize(pcm: bytes, chunk: int, settings: RecognizerSettings, live: bool = False) -> list[p.Transcript]:
    stream = RecognitionStream(DecoderPool(settings.decoders), 16000, settings)
    out = []
    for i in range(0, len(pcm), chunk):
        out += stream.push(pcm[i : i + chunk], live)
    finals, odd = stream.flush(live)
    assert not odd
    return out + finals


def test_long_speech_is_cut_into_bounded_utterances(long_speech):
    settings = RecognizerSettings(decoders=2, max_utterance_s=2.0)
    pcm = b"\0" * 8000 + long_speech + b"\0" * 8000
    msgs = _recognize(pcm, 3200, settings, live=True)
    finals = [m for m in msgs if m.is_final]
    assert len(finals) >= 3
    for f in finals:
        assert f.duration <= 2000 + 100
        assert f.words and all(w.offset >= f.offset for w in f.words)
    assert [f.offset for f in finals] == sorted(f.offset for f in finals)
    assert any(not m.is_final for m in msgs)  # a live utterance with its own decoder gave partials
    assert all(m.is_final for m in _recognize(pcm, 3200, settings))  # bulk audio: no partials


def test_chunking_and_live_decoding_do_not_change_the_result(long_speech):
    settings = RecognizerSettings(decoders=2)
    pause = b"\0" * 32000  # 1 s: the endpointer ends each utterance before the flush
    pcm = b"\0" * 8000 + long_speech[: 16000 * 2 * 3] + pause + long_speech[16000 * 2 * 3 :] + pause

    def finals(msgs):
        return [(f.text, f.offset, f.duration, f.words) for f in msgs if f.is_final]

    whole = finals(_recognize(pcm, len(pcm), settings))
    odd_chunks = finals(_recognize(pcm, 777, settings))  # odd sizes split samples across pushes
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
