"""The spec's TTS and STT flows against the shared server, auth both ways, ping, /healthz."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.exceptions import InvalidStatus

from tests.server import helpers as h
from voxbeam import audio

SENTENCE = "Please call me when you get home."


def _header_sizes_right(wav: bytes) -> bool:
    return int.from_bytes(wav[4:8], "little") == len(wav) - 8 and int.from_bytes(wav[40:44], "little") == len(wav) - 44


def test_tts_spec_example_two_utterances_on_one_session(server):
    async def main():
        async with await h.connect_to(server, "tts", auth="token") as ws:
            # The spec's init message, verbatim.
            ready = await h.init(
                ws,
                voice_id="vl-xiaoxiao",
                language="zh-CN",
                format="wav",
                sample_rate=16000,
                speed=1.0,
                pitch=0,
                volume=1.0,
                voice_config={"style": "cheerful", "role": "Girl", "degree": 0.5},
            )
            assert ready["type"] == "ready" and ready["request_id"].startswith("req_")
            assert {k: ready[k] for k in ("voice_id", "language", "format", "sample_rate")} == {
                "voice_id": "vl-xiaoxiao",
                "language": "zh-CN",
                "format": "wav",
                "sample_rate": 16000,
            }
            first = await h.synthesize(ws, ["你好，", "世界。今天天气很好。"])
            second = await h.synthesize(ws, ["Hello, this is a test message"])
            return first, second

    first, second = asyncio.run(main())
    # One sentence: sent whole, with exact sizes. Two: streamed as rendered, the header declares an
    # unknown length (0xFFFFFFFF) and finalize_wav writes the sizes in.
    assert _header_sizes_right(second)
    assert first[4:8] == b"\xff\xff\xff\xff" and _header_sizes_right(audio.finalize_wav(first))
    for wav in (first, second):
        assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE"
        samples, facts = h.decode(wav)
        assert facts["rate"] == 16000 and facts["codec"] == "pcm_s16le"
        assert 0.5 < len(samples) / 16000 < 10
        assert abs(samples.astype(float)).max() > 1000  # speech, not silence


def test_spec_batch_text_example_comes_out_as_separate_words(server):
    """The spec's "Batch Text Messages": six chunks 100 ms apart, the last final, one utterance."""

    async def main():
        async with await h.connect_to(server, "tts") as ws:
            assert (await h.init(ws, format="pcm", sample_rate=16000))["voice_id"] == "vl-joe"
            texts = ["Hello", "world", "this", "is", "a", "test"]
            for i, text in enumerate(texts):
                await asyncio.sleep(0.1)
                await h.send(ws, {"type": "text", "text": text, "is_final": i == len(texts) - 1})
            return await h.synthesize(ws, [])

    pcm = asyncio.run(main())
    msgs = asyncio.run(h.transcribe(server, h.silence(0.3) + pcm + h.silence(0.3)))
    heard = h.words(" ".join(f["text"] for f in h.finals(msgs)))
    assert heard == ["hello", "world", "this", "is", "a", "test"], heard


@pytest.mark.parametrize("fmt", ["wav", "mp3", "flac", "opus", "ogg", "pcm"])
def test_tts_every_format_at_every_rate_decodes_at_the_reported_rate(server, fmt):
    """Each output decodes; ``ready`` reports the rate the file really has (Opus: always 48 kHz)."""

    async def main():
        out = {}
        for rate in (8000, 16000, 22050, 24000, 44100, 48000):
            async with await h.connect_to(server, "tts") as ws:
                ready = await h.init(ws, format=fmt, sample_rate=rate)
                assert ready["type"] == "ready" and ready["format"] == ("opus" if fmt == "ogg" else fmt)
                out[rate] = ready["sample_rate"], await h.synthesize(ws, [SENTENCE, " Thank you."])
        return out

    for rate, (reported, data) in asyncio.run(main()).items():
        assert reported == (48000 if fmt in ("opus", "ogg") else rate)
        if fmt == "pcm":
            seconds = len(data) / 2 / reported
        else:
            samples, facts = h.decode(audio.finalize_wav(data), rate=reported)
            assert facts["rate"] == reported, (rate, facts)
            seconds = len(samples) / reported
        assert 1.5 < seconds < 6.0, (rate, seconds)


def test_tts_pcm_at_each_rate_is_raw_samples(server):
    # eSpeak NG (vl-andrew) renders the same text to the same length every time; Piper does not.
    base = asyncio.run(h.tts_pcm(server, [SENTENCE], rate=16000, voice_id="vl-andrew"))
    for rate in (8000, 44100):
        pcm = asyncio.run(h.tts_pcm(server, [SENTENCE], rate=rate, voice_id="vl-andrew"))
        assert len(pcm) % 2 == 0
        assert abs(len(pcm) / 2 / rate - len(base) / 2 / 16000) < 0.05


def test_stt_flow_partials_finals_words_flush_and_a_second_recognition_session(server):
    """A live recognition session (audio paced in real time: partials), then a bulk one (no partials)."""
    speech = asyncio.run(h.tts_pcm(server, ["The weather is nice today. Please call me when you get home."]))

    async def main():
        async with await h.connect_to(server, "stt") as ws:
            ready = await h.init(
                ws,
                language="en-US",
                format="pcm",
                sample_rate=16000,
                enable_timestamps=True,
                enable_language_detection=True,
            )
            assert ready == {
                "type": "ready",
                "request_id": ready["request_id"],
                "language": "en-US",
                "format": "pcm",
                "sample_rate": 16000,
                "model": server.health()["stt"]["model"],
            }
            assert ready["model"].startswith("whisper/tiny.en@sha256:")
            sessions = []
            for pace in (16000, None):
                audio = h.silence(0.5) + speech + h.silence(0.5)
                sender = asyncio.create_task(h.send_audio(ws, audio, realtime_rate=pace))
                msgs = await h._drain_while(ws, sender)
                await h.send(ws, {"type": "command", "command": "flush"})
                sessions.append(msgs + await h.until_flush_done(ws))
            return ready, sessions

    ready, (one, two) = asyncio.run(main())
    assert one[-1] == {"type": "flush_done", "request_id": ready["request_id"]}
    assert two[-1]["type"] == "flush_done" and two[-1]["request_id"] != ready["request_id"]
    for msgs, live in ((one, True), (two, False)):
        rid = msgs[-1]["request_id"]
        assert all(m["request_id"] == rid for m in msgs if m["type"] == "transcript")
        partials = [m for m in msgs if m["type"] == "transcript" and not m["is_final"]]
        finals = h.finals(msgs)
        if live:
            # At least one partial per second of speech (the first after the first second).
            assert len(partials) >= int(len(speech) / 2 / 16000) - 1, partials
            assert msgs.index(partials[0]) < msgs.index(finals[0])
        else:
            assert not partials, "no partials for audio uploaded faster than real time"
        assert finals and all(m["text"] for m in finals)
        for f in finals:
            assert 0.0 <= f["confidence"] <= 1.0
            assert f["language"] == "en"  # the English-only model reports its one language
            assert f["words"] and all(set(w) == {"word", "offset", "duration", "confidence"} for w in f["words"])
            assert all(not w["word"].startswith(("<", "[")) and "(" not in w["word"] for w in f["words"])
            assert f["words"][0]["offset"] == f["offset"]
            ends = [w["offset"] + w["duration"] for w in f["words"]]
            assert ends == sorted(ends) and f["offset"] + f["duration"] == ends[-1]
        # Offsets count from the start of each recognition session: speech starts after 0.5 s of silence.
        assert 300 <= finals[0]["offset"] <= 900, finals[0]
        words = h.words(" ".join(f["text"] for f in finals))
        assert len({"weather", "nice", "today", "please", "call", "home"} & set(words)) >= 5, (live, " ".join(words))
        assert any(c.isupper() for f in finals for c in f["text"])  # text keeps casing and punctuation
        assert all(w["word"].strip(".,!?") == w["word"] for f in finals for w in f["words"])


def test_stt_words_only_with_timestamps_and_language_only_with_detection(server):
    speech = asyncio.run(h.tts_pcm(server, ["Thank you very much for your help."]))
    msgs = asyncio.run(h.transcribe(server, h.silence(0.3) + speech))
    finals = h.finals(msgs)
    assert finals and all("words" not in f and "language" not in f for f in finals)
    assert all("confidence" in f for f in finals)


def test_stt_resamples_other_rates(server):
    for rate in (8000, 44100):
        speech = asyncio.run(h.tts_pcm(server, ["The weather is nice today."], rate=rate))
        msgs = asyncio.run(h.transcribe(server, h.silence(0.3, rate) + speech + h.silence(0.3, rate), rate=rate))
        text = " ".join(f["text"] for f in h.finals(msgs))
        assert {"weather", "nice", "today"} <= set(h.words(text)), (rate, text)
        # Offsets are in ms whatever the input rate.
        assert 100 <= h.finals(msgs)[0]["offset"] <= 700


@pytest.mark.parametrize("service", ["stt", "tts"])
@pytest.mark.parametrize("auth", ["header", "token"])
def test_both_auth_methods_work(server, service, auth):
    async def main():
        async with await h.connect_to(server, service, auth=auth) as ws:
            await h.ping_ok(ws)
            ready = await h.init(ws)
            assert ready["type"] == "ready"

    asyncio.run(main())


@pytest.mark.parametrize("service", ["stt", "tts"])
@pytest.mark.parametrize(("auth", "key"), [(None, None), ("header", "wrong"), ("token", "wrong"), ("token", "")])
def test_bad_or_missing_key_is_refused_before_the_upgrade(server, service, auth, key):
    """HTTP 401 in the handshake, with the protocol's error as the body: not one frame is read."""
    before = h.settled(server)  # an earlier test's session may still be closing

    async def main():
        with pytest.raises(InvalidStatus) as info:
            await h.connect_to(server, service, auth=auth, key=key)
        return info.value.response

    response = asyncio.run(main())
    assert response.status_code == 401 and "ApiKey" in response.headers["WWW-Authenticate"]
    body = json.loads(response.body)
    assert body["type"] == "error" and body["code"] == "UNAUTHORIZED" and "request_id" not in body
    after = server.health()
    assert after["rejected_unauthorized"] == before["rejected_unauthorized"] + 1
    assert after["sessions"] == before["sessions"]  # never admitted


def test_ping_pong_before_and_after_init(server):
    async def main():
        for service in ("stt", "tts"):
            async with await h.connect_to(server, service) as ws:
                await h.ping_ok(ws)
                assert (await h.init(ws))["type"] == "ready"
                await h.ping_ok(ws)

    asyncio.run(main())


def test_healthz_counts_sessions(server):
    before = h.settled(server)
    assert before["status"] == "ok"
    assert before["workers"] == 2 and before["workers_alive"] == 2
    assert before["capacity"] == 64

    async def main():
        conns = [await h.connect_to(server, s) for s in ("stt", "stt", "tts")]
        for ws in conns:
            assert (await h.init(ws))["type"] == "ready"
        during = server.health()
        for ws in conns:
            await ws.close()
        return during

    during = asyncio.run(main())
    assert during["sessions"] == before["sessions"] + 3
    assert during["stt_sessions"] == before["stt_sessions"] + 2
    assert during["tts_sessions"] == before["tts_sessions"] + 1
    assert during["connections_total"] == before["connections_total"] + 3
    assert during["peak_sessions"] >= 3
    for _ in range(50):
        after = server.health()
        if after["sessions"] == before["sessions"]:
            break
        asyncio.run(asyncio.sleep(0.05))
    assert after["sessions"] == before["sessions"]


def test_streaming_stt_counts_sessions_with_audio_in_flight(server):
    async def main():
        async with await h.connect_to(server, "stt") as a, await h.connect_to(server, "stt") as b:
            for ws in (a, b):
                await h.init(ws)
                await h.send(ws, h.audio_msg(h.silence(0.2)))
            await asyncio.sleep(0.3)
            during = server.health()
            for ws in (a, b):
                await h.send(ws, {"type": "command", "command": "flush"})
                await h.until_flush_done(ws)
            return during, server.health()

    during, after = asyncio.run(main())
    assert during["streaming_stt"] >= 2 and during["peak_streaming_stt"] >= 2
    assert after["streaming_stt"] == during["streaming_stt"] - 2


def test_unknown_path_is_404_and_wav_is_not_silence(server):
    import urllib.error
    import urllib.request

    http = server.url.replace("ws://", "http://")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(http + "/v1/nope", timeout=5)
    assert info.value.code == 404
    pcm = asyncio.run(h.tts_pcm(server, ["Hello."], rate=16000))
    assert audio.duration_ms(audio.encode(pcm, 16000, "wav")) > 200
