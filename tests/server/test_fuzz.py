"""Bad input: 10,000 seeded random frames at both endpoints, and Hypothesis on the init mapping.

The server must answer every frame with a well-formed message (an error code when the
frame is bad) or a close code, never crash, never report INTERNAL_ERROR, never lose a worker.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection

from tests.server import helpers as h
from voxbeam import protocol as p
from voxbeam.server import voices
from voxbeam.server.engines import espeak, piper


@pytest.fixture(scope="module")
def catalog():
    return voices.load_catalog(None)[0]


FRAMES = 10_000
CONNECTIONS = 20
KNOWN_CODES = {c.value for c in p.ErrorCode} - {"INTERNAL_ERROR", "UNAUTHORIZED", "SERVER_BUSY"}
TYPES = ["init", "audio", "text", "command", "ping", "pong", "ready", "transcript", "flush", "", "INIT", None, 7]
FIELDS = [
    "type",
    "data",
    "text",
    "is_final",
    "command",
    "language",
    "format",
    "sample_rate",
    "voice_id",
    "speed",
    "pitch",
    "volume",
    "voice_config",
    "enable_timestamps",
    "enable_language_detection",
    "request_id",
    "x",
]


def _value(rng: random.Random, depth: int = 0):
    roll = rng.random()
    if roll < 0.15:
        return rng.choice([None, True, False, 0, -1, 1, 16000, 8000, 48000, 10**30, -(10**400), 1e308, 0.5, 2.5])
    if roll < 0.25:
        return rng.choice([float("nan"), float("inf"), -float("inf"), 10**400])
    if roll < 0.5:
        return rng.choice(["en-US", "zh-CN", "pcm", "wav", "opus", "flush", "vl-jenny", "vl-x", "cheerful", "Girl", ""])
    if roll < 0.7:
        return "".join(rng.choice(string.printable + "éü漢字🙂") for _ in range(rng.randint(0, 30)))
    if roll < 0.85:
        return base64.b64encode(rng.randbytes(rng.randint(0, 48))).decode()
    if depth < 3 and roll < 0.93:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if depth < 3:
        return {rng.choice(FIELDS): _value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    return rng.random()


def random_frame(rng: random.Random, service: str) -> str | bytes:
    roll = rng.random()
    if roll < 0.08:
        return rng.randbytes(rng.randint(0, 100))  # binary frame
    if roll < 0.16:
        return "".join(rng.choice(string.printable) for _ in range(rng.randint(0, 60)))  # not JSON
    if roll < 0.22:
        return json.dumps(_value(rng))  # JSON, not an object
    if roll < 0.25:
        return "[" * rng.randint(1, 5000)  # deep nesting
    if roll < 0.65:
        obj = {rng.choice(FIELDS): _value(rng) for _ in range(rng.randint(0, 5))}
        obj["type"] = rng.choice(TYPES)
        return json.dumps(obj)
    # Nearly valid messages, so the fuzz also reaches initialized sessions' code paths.
    if service == "stt":
        choice = rng.choice(["audio", "audio", "audio", "flush", "init", "ping"])
        if choice == "audio":
            return json.dumps({"type": "audio", "data": base64.b64encode(rng.randbytes(rng.randint(0, 64))).decode()})
        if choice == "flush":
            return json.dumps({"type": "command", "command": "flush"})
        if choice == "init":
            return json.dumps({"type": "init", "sample_rate": rng.choice([8000, 16000, 22050, 44100, 3, 10**9])})
        return json.dumps({"type": "ping", "extra": _value(rng)})
    choice = rng.choice(["text", "text", "text", "init", "ping"])
    if choice == "text":
        words = " ".join(rng.choice(["hello", "world", "a", ".", "漢字", "\u0000", "<b>", "&amp;"]) for _ in range(4))
        return json.dumps({"type": "text", "text": words, "is_final": rng.random() < 0.3})
    if choice == "init":
        return json.dumps(
            {
                "type": "init",
                # Mostly eSpeak NG (cheap): the fuzz is about the protocol; Piper is in now and then.
                "voice_id": rng.choice(["vl-andrew"] * 4 + ["vl-joe"]),
                "format": rng.choice(["wav", "pcm", "mp3", "flac", "opus", "ogg", "aac"]),
                "sample_rate": rng.choice([8000, 16000, 44100, 7999]),
                "speed": rng.choice([0.5, 1, 2, 3]),
                "voice_config": rng.choice([None, {"style": "sad", "degree": 0.5}, {"role": "Boy"}, {"style": 3}]),
            }
        )
    return json.dumps({"type": "ping"})


def _is_ping(frame: str | bytes) -> bool:
    if p.message_type(frame) != "ping":
        return False
    try:
        return isinstance(p.parse_client_message(frame, "stt"), p.Ping)
    except p.ProtocolError:
        return False


PRE_INIT_FRAMES = 20  # random frames an uninitialized connection gets before its init


async def open_connection(server, service: str, seed: int, frames: list) -> tuple[ClientConnection, list[dict], list]:
    """A connection, initialized, with its replies so far and the frames still to send: half of the connections
    init at once, the other half after their first frames (inits left out) are sent uninitialized.

    The server drops a connection that has sent no valid init 3 s after it opened: every connection
    gets its init here, before any of them starts the fuzz proper, whose 10,000 frames keep this one
    event loop busy for seconds (a connection that opened then got its first turn only after the deadline).
    """
    received: list[dict] = []
    ws = await h.connect_to(server, service)
    fields = {"format": "pcm", "voice_id": "vl-andrew"} if service == "tts" else {}
    if seed % 2:
        assert (await h.init(ws, **fields))["type"] == "ready"
        return ws, received, frames
    for frame in frames[:PRE_INIT_FRAMES]:
        if p.message_type(frame) != "init":
            await ws.send(frame)
    await h.send(ws, {"type": "init", **fields})
    while (msg := await h.recv(ws))["type"] != "ready":
        received.append(msg)  # the replies to the uninitialized frames, in order, then ready
    return ws, received, frames[PRE_INIT_FRAMES:]


async def fuzz_connection(ws: ClientConnection, frames: list, received: list[dict]) -> list[dict]:
    pings = sum(1 for f in frames if _is_ping(f)) + 1
    async with ws:

        async def reader() -> None:
            pongs = 0
            while pongs < pings:
                msg = await h.recv(ws, 120)
                received.append(msg)
                pongs += msg["type"] == "pong"

        task = asyncio.create_task(reader())
        for frame in frames:
            await ws.send(frame)
        await h.send(ws, {"type": "ping"})  # the last pong proves the session is alive after it all
        await task
    return received


def test_ten_thousand_random_frames(server):
    before = server.health()
    pids_before = {w.pid for w in h.worker_processes(server.pid)}

    async def main():
        per = FRAMES // CONNECTIONS
        services = [("stt", "tts")[i % 2] for i in range(CONNECTIONS)]
        rngs = [random.Random(i) for i in range(CONNECTIONS)]
        frames = [[random_frame(rngs[i], services[i]) for _ in range(per)] for i in range(CONNECTIONS)]
        opened = await asyncio.gather(*(open_connection(server, services[i], i, frames[i]) for i in range(CONNECTIONS)))
        return await asyncio.gather(*(fuzz_connection(ws, rest, got) for ws, got, rest in opened))

    results = asyncio.run(main())
    seen: set[str] = set()
    for received in results:
        for msg in received:
            # Every reply is a well-formed server message ...
            parsed = p.parse_server_message(json.dumps(msg))
            if isinstance(parsed, p.Error):
                # ... and every error is one of the documented, non-internal codes.
                assert parsed.code in KNOWN_CODES, msg
                assert set(msg) <= {"type", "error", "code", "request_id"}
                seen.add(parsed.code)
    assert {"INVALID_MESSAGE", "NOT_INITIALIZED"} <= seen
    after = server.health()
    assert after["workers_alive"] == 2 and after["worker_restarts"] == before["worker_restarts"]
    assert {w.pid for w in h.worker_processes(server.pid)} == pids_before
    assert "INTERNAL_ERROR" not in after["errors"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    speed=st.floats(allow_nan=True),
    pitch=st.floats(allow_nan=True),
    volume=st.floats(allow_nan=True),
    voice_config=st.one_of(
        st.none(),
        st.dictionaries(
            st.sampled_from(["style", "role", "degree", "other"]),
            st.one_of(st.sampled_from(list(voices.STYLES) + list(voices.ROLES)), st.floats(), st.text(max_size=5)),
        ),
    ),
)
def test_prosody_mapping_is_in_engine_range_or_a_clean_error(catalog, speed, pitch, volume, voice_config):
    init = p.TtsInit(speed=speed, pitch=pitch, volume=volume, voice_config=voice_config)
    for voice in (catalog.by_id["vl-andrew"], catalog.by_id["vl-joe"]):
        try:
            prosody = voices.prosody_for(init, voice)
        except p.ProtocolError as exc:
            assert exc.code is p.ErrorCode.INVALID_MESSAGE and exc.message
            continue
        if voice.engine == "espeak":
            params = espeak.parameters(voice, prosody)
            assert espeak.MIN_WPM <= params.rate <= espeak.MAX_WPM
            assert 0 <= params.pitch <= 100 and 0 <= params.range <= 100 and 0 <= params.volume <= 200
        else:
            length, loudness, shift = piper.controls(prosody)
            assert 0.25 <= length <= 4 and 0 <= loudness <= 4 and 0.5 <= shift <= 2, (length, loudness, shift)
