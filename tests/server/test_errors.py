"""Every error code the shared server can emit, from the input that should cause it.

Recoverable errors leave the session usable (checked with a ping, or the next good message);
MESSAGE_TOO_LARGE closes with 1009. All of it runs beside a healthy streaming session too.
"""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from tests.server import helpers as h


async def _after_init(server, service, **fields):
    ws = await h.connect_to(server, service)
    ready = await h.init(ws, **fields)
    assert ready["type"] == "ready", ready
    return ws, ready


async def invalid_json(server):
    async with await h.connect_to(server, "stt") as ws:
        await ws.send("{not json")
        await h.expect_error(ws, "INVALID_MESSAGE")
        await h.ping_ok(ws)


async def unknown_type(server):
    async with await h.connect_to(server, "tts") as ws:
        await h.send(ws, {"type": "dance"})
        await h.expect_error(ws, "INVALID_MESSAGE")
        await h.send(ws, {"type": "audio", "data": ""})  # an STT message on the TTS endpoint
        await h.expect_error(ws, "INVALID_MESSAGE")
        await h.ping_ok(ws)


async def binary_frame(server):
    ws, _ = await _after_init(server, "stt")
    async with ws:
        await ws.send(b"\x00\x01binary")
        await h.expect_error(ws, "INVALID_MESSAGE")
        await h.ping_ok(ws)


async def second_init(server):
    ws, ready = await _after_init(server, "tts")
    async with ws:
        await h.send(ws, {"type": "init"})
        msg = await h.expect_error(ws, "INVALID_MESSAGE")
        assert msg["request_id"] == ready["request_id"]
        assert len(await h.synthesize(ws, ["Still here."])) > 44


async def bad_field_values(server):
    async with await h.connect_to(server, "tts") as ws:
        for init in (
            {"speed": 5},
            {"pitch": 3},
            {"volume": -1},
            {"speed": "fast"},
            {"voice_config": {"style": "sarcastic"}},
            {"voice_config": {"role": "Wizard"}},
            {"voice_config": {"style": "sad", "degree": 9}},
            {"voice_config": {"mood": "sad"}},
        ):
            await h.send(ws, {"type": "init", **init})
            msg = await h.expect_error(ws, "INVALID_MESSAGE")
            assert "request_id" not in msg
        # A failed init leaves the session open for a good one.
        assert (await h.init(ws, voice_config={"style": "sad", "degree": 2}))["type"] == "ready"
        await h.send(ws, {"type": "text", "text": 42})
        await h.expect_error(ws, "INVALID_MESSAGE")
        await h.send(ws, {"type": "text", "text": "  ", "is_final": True})
        await h.expect_error(ws, "INVALID_MESSAGE")  # nothing to synthesize
    async with await h.connect_to(server, "stt") as ws:
        await h.init(ws)
        await h.send(ws, {"type": "command", "command": "rewind"})
        await h.expect_error(ws, "INVALID_MESSAGE")
        await h.send(ws, {"type": "audio"})
        await h.expect_error(ws, "INVALID_MESSAGE")
        await h.ping_ok(ws)


async def not_initialized(server):
    async with await h.connect_to(server, "stt") as ws:
        await h.send(ws, h.audio_msg(h.silence(0.1)))
        await h.expect_error(ws, "NOT_INITIALIZED")
        await h.send(ws, {"type": "audio", "data": "***"})  # even a broken one: init comes first
        await h.expect_error(ws, "NOT_INITIALIZED")
        await h.send(ws, {"type": "command", "command": "flush"})
        await h.expect_error(ws, "NOT_INITIALIZED")
        assert (await h.init(ws))["type"] == "ready"
    async with await h.connect_to(server, "tts") as ws:
        await h.send(ws, {"type": "text", "text": "hello", "is_final": True})
        await h.expect_error(ws, "NOT_INITIALIZED")
        assert (await h.init(ws))["type"] == "ready"


async def unsupported_format(server):
    async with await h.connect_to(server, "stt") as ws:
        await h.send(ws, {"type": "init", "format": "wav"})
        await h.expect_error(ws, "UNSUPPORTED_FORMAT")
        assert (await h.init(ws, format="pcm"))["type"] == "ready"
    async with await h.connect_to(server, "tts") as ws:
        await h.send(ws, {"type": "init", "format": "aac"})
        await h.expect_error(ws, "UNSUPPORTED_FORMAT")
        await h.ping_ok(ws)


async def unsupported_language(server):
    async with await h.connect_to(server, "stt") as ws:
        await h.send(ws, {"type": "init", "language": "zh-CN"})
        await h.expect_error(ws, "UNSUPPORTED_LANGUAGE")
        assert (await h.init(ws, language="en"))["language"] == "en"
    async with await h.connect_to(server, "tts") as ws:
        await h.send(ws, {"type": "init", "voice_id": "vl-jenny", "language": "de-DE"})
        await h.expect_error(ws, "UNSUPPORTED_LANGUAGE")
        await h.send(ws, {"type": "init", "language": "ja-JP"})
        await h.expect_error(ws, "UNSUPPORTED_LANGUAGE")
        ready = await h.init(ws, language="en-GB")  # no voice: the language's default voice
        assert ready["voice_id"] == "vl-libby" and ready["language"] == "en-GB"


async def unsupported_sample_rate(server):
    for service, rate in (("stt", 4000), ("tts", 96000), ("stt", 48001)):
        async with await h.connect_to(server, service) as ws:
            await h.send(ws, {"type": "init", "sample_rate": rate})
            await h.expect_error(ws, "UNSUPPORTED_SAMPLE_RATE")
            await h.ping_ok(ws)


async def voice_not_found(server):
    async with await h.connect_to(server, "tts") as ws:
        await h.send(ws, {"type": "init", "voice_id": "vl-nobody"})
        msg = await h.expect_error(ws, "VOICE_NOT_FOUND")
        assert "vl-jenny" in msg["error"]  # names the voices that exist
        await h.ping_ok(ws)


async def invalid_audio(server):
    ws, ready = await _after_init(server, "stt")
    async with ws:
        await h.send(ws, {"type": "audio", "data": "not base64!"})
        msg = await h.expect_error(ws, "INVALID_AUDIO")
        assert msg["request_id"] == ready["request_id"]
        # Odd byte counts are fine while they pair up across messages ...
        await h.send(ws, h.audio_msg(b"\0" * 3))
        await h.send(ws, h.audio_msg(b"\0" * 5))
        await h.send(ws, {"type": "command", "command": "flush"})
        assert [m["type"] for m in await h.until_flush_done(ws)] == ["flush_done"]
        # ... but a recognition session that ends on half a sample is not s16le.
        await h.send(ws, h.audio_msg(b"\0" * 1601))
        await h.send(ws, {"type": "command", "command": "flush"})
        msgs = await h.until_flush_done(ws)
        assert [(m["type"], m.get("code")) for m in msgs] == [("error", "INVALID_AUDIO"), ("flush_done", None)]
        assert msgs[0]["request_id"] == msgs[1]["request_id"]
        await h.ping_ok(ws)


async def text_too_long(server):
    ws, _ = await _after_init(server, "tts", format="pcm")
    async with ws:
        await h.send(ws, {"type": "text", "text": "word " * 900, "is_final": False})
        await h.send(ws, {"type": "text", "text": "more " * 200, "is_final": True})  # 5500 > 5000
        await h.expect_error(ws, "TEXT_TOO_LONG")
        await h.send(ws, {"type": "text", "text": "x" * 5001, "is_final": True})
        await h.expect_error(ws, "TEXT_TOO_LONG")
        # The session goes on with the next utterance.
        assert len(await h.synthesize(ws, ["Short again."])) > 1000


async def message_too_large(server):
    ws, _ = await _after_init(server, "stt")
    async with ws:
        big = base64.b64encode(b"\0" * 900_000).decode()  # 1.2 MB of JSON > 1 MiB
        await ws.send(json.dumps({"type": "audio", "data": big}))
        await h.expect_error(ws, "MESSAGE_TOO_LARGE")
        assert await h.closed_with(ws) == 1009


SCENARIOS = {
    "INVALID_MESSAGE/json": invalid_json,
    "INVALID_MESSAGE/type": unknown_type,
    "INVALID_MESSAGE/binary": binary_frame,
    "INVALID_MESSAGE/second-init": second_init,
    "INVALID_MESSAGE/values": bad_field_values,
    "NOT_INITIALIZED": not_initialized,
    "UNSUPPORTED_FORMAT": unsupported_format,
    "UNSUPPORTED_LANGUAGE": unsupported_language,
    "UNSUPPORTED_SAMPLE_RATE": unsupported_sample_rate,
    "VOICE_NOT_FOUND": voice_not_found,
    "INVALID_AUDIO": invalid_audio,
    "TEXT_TOO_LONG": text_too_long,
    "MESSAGE_TOO_LARGE": message_too_large,
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_error_code(server, name):
    asyncio.run(SCENARIOS[name](server))


def test_errors_beside_a_healthy_session(server):
    """A session streaming speech keeps working while every error scenario runs next to it."""
    speech = asyncio.run(h.tts_pcm(server, ["The children are playing in the park."]))

    async def main():
        ws, _ = await _after_init(server, "stt")
        async with ws:
            sender = asyncio.create_task(h.send_audio(ws, h.silence(0.3) + speech + h.silence(0.3)))
            await asyncio.gather(*(scenario(server) for scenario in SCENARIOS.values()))
            await h._drain_while(ws, sender)
            await h.send(ws, {"type": "command", "command": "flush"})
            msgs = await h.until_flush_done(ws)
        return " ".join(f["text"] for f in h.finals(msgs))

    text = asyncio.run(main())
    assert "children" in text or "park" in text, text
    assert server.health()["workers_alive"] == 2
