"""In-process pieces of the server: voice catalog and prosody, sentence splitting, the recognizer's
endpointing and decoder pool, log redaction, and the CLI's refusal to run without a key."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from voxbeam import audio
from voxbeam import protocol as p
from voxbeam.server import voices
from voxbeam.server.engines.recognizer import DecoderPool, RecognitionStream, RecognizerSettings
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
    assert voices.resolve_voice(None, None).id == "vl-jenny"
    assert voices.resolve_voice(None, "en").id == "vl-jenny"
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
    jenny = voices.DEFAULT_VOICE
    base = voices.prosody_for(p.TtsInit(), jenny)
    assert (base.rate, base.pitch, base.range, base.volume) == (175, 50, 50, 100)
    assert base.espeak_voice == "en-us+f5"
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


def test_decoder_pool_keeps_one_decoder_for_finals():
    made = []

    def factory():
        made.append(object())
        return made[-1]

    pool = DecoderPool(3, final_factory=factory, partial_factory=factory)
    a, b = pool.lend(), pool.lend()
    assert a is not None and b is not None and pool.lend() is None  # partials are best effort
    final = pool.final()  # always there, whatever is lent
    assert final is pool.final() and len(made) == 3 and pool.lent == 2
    pool.give_back(a)
    assert pool.lend() is a and len(made) == 3  # reused, not recreated
    assert DecoderPool(1, final_factory=object, partial_factory=object).lend() is None  # finals only


@pytest.fixture(scope="module")
def long_speech(synth):
    """~6 s of continuous speech (no pause long enough to endpoint), PCM 16 kHz."""
    text = "the quick brown fox jumps over the lazy dog and runs into the forest near the old river"
    pcm = synth.synthesize(text, voices.prosody_for(p.TtsInit(), voices.DEFAULT_VOICE))
    return audio.resample(pcm, synth.sample_rate, 16000)


def _recognize(pcm: bytes, chunk: int, settings: RecognizerSettings) -> list[p.Transcript]:
    stream = RecognitionStream(DecoderPool(settings.decoders), 16000, settings)
    out = []
    for i in range(0, len(pcm), chunk):
        out += stream.push(pcm[i : i + chunk])
    finals, odd = stream.flush()
    assert not odd
    return out + finals


def test_long_speech_is_cut_into_bounded_utterances(long_speech):
    settings = RecognizerSettings(decoders=2, max_utterance_s=2.0, warps=(1.0,))
    pcm = b"\0" * 8000 + long_speech + b"\0" * 8000
    msgs = _recognize(pcm, 3200, settings)
    finals = [m for m in msgs if m.is_final]
    assert len(finals) >= 3
    for f in finals:
        assert f.duration <= 2000 + 100
        assert f.words and all(w.offset >= f.offset for w in f.words)
    assert [f.offset for f in finals] == sorted(f.offset for f in finals)
    assert any(not m.is_final for m in msgs)  # a spare decoder gave partials


def test_chunking_does_not_change_the_result(long_speech):
    settings = RecognizerSettings(decoders=1, warps=(1.0,))  # finals only: the comparison is about them
    pcm = b"\0" * 8000 + long_speech[: 16000 * 2 * 2] + b"\0" * 8000  # 2 s is enough here
    whole = _recognize(pcm, len(pcm), settings)
    odd_chunks = _recognize(pcm, 777, settings)  # odd sizes split samples across pushes
    assert [(f.text, f.offset, f.duration) for f in whole] == [(f.text, f.offset, f.duration) for f in odd_chunks]
    assert whole and all(f.is_final for f in whole)


def test_vtln_picks_a_warp_for_the_voice_and_forgets_it_at_flush(long_speech):
    stream = RecognitionStream(DecoderPool(2), 16000, RecognizerSettings(decoders=2, warps=(1.0, 1.3)))
    assert stream.warp is None
    stream.push(b"\0" * 8000 + long_speech[: 16000 * 2 * 2] + b"\0" * 16000)
    # eSpeak's female voices have formants well above the model's average: the larger warp wins.
    assert stream.warp == 1.3
    stream.flush()
    assert stream.warp is None  # a new recognition session may be a new speaker


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
    assert len(lines) == 1 and "--no-auth" in lines[0] and "VOXNEXUS_API_KEY" in lines[0]
