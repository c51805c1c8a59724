"""The client against a service that does only what the spec's text says (tests/client/spec_server.py).

No pong, no ``model`` in ready, message types the client does not know, IDLE_TIMEOUT closes,
one request id per connection, and WebSocket-level pings from the server.
"""

from __future__ import annotations

import asyncio
import io
import logging
import wave

import numpy as np

from tests.client.spec_server import SpecServer, transcript_for
from voxbeam.client import ClientConfig, RetryPolicy, SpeechClient, Timeouts, TtsParams

RATE = 16000


def tone(seconds: float, freq: float) -> bytes:
    t = np.arange(int(seconds * RATE)) / RATE
    return (np.sin(2 * np.pi * freq * t) * 8000).astype("<i2").tobytes()


def config(srv: SpecServer, **kw) -> ClientConfig:
    kw.setdefault("timeouts", Timeouts(connect=5, ready=5, result=5, record=30, pool=30))
    kw.setdefault("retry", RetryPolicy(budget=20, base_delay=0.05, max_delay=0.5))
    return ClientConfig(endpoints=(srv.url,), api_key=srv.api_key, **kw)


def test_transcription_and_synthesis_against_the_spec_alone(caplog):
    clips = [tone(0.3 + 0.1 * i, 200 + 50 * i) for i in range(12)]

    async def go():
        async with SpecServer(unknown_every=3) as srv:
            async with SpeechClient(config(srv, pool_size=3)) as client:
                results = await asyncio.gather(*(client.transcribe(c) for c in clips))
                spoken = await client.synthesize("Hello there.", TtsParams(voice_id="vl-jenny"))
                return results, spoken, client.stats(), srv.counters

    with caplog.at_level(logging.DEBUG, logger="voxbeam.client"):
        results, spoken, stats, counters = asyncio.run(go())
    assert [r.text for r in results] == [transcript_for(c, RATE) for c in clips]
    assert all(r.model is None for r in results)  # the spec's ready names no model
    assert all(r.words and r.attempts == 1 for r in results)
    with wave.open(io.BytesIO(spoken.audio)) as w:
        assert w.getnframes() == RATE * 60 * len("Hello there.") // 1000
    assert spoken.voice_id == "vl-jenny" and spoken.language == "en-US"
    assert stats["failures"] == 0 and stats["retries"] == 0
    assert counters.unknown_sent >= 5 and counters.connections == stats["connections_opened"] <= 3 + 1
    ignored = [r for r in caplog.records if "unknown type 'status'" in r.getMessage()]
    assert 1 <= len(ignored) <= counters.connections  # one debug line per session, not one per message


def test_a_session_whose_pings_go_unanswered_is_kept():
    """The spec defines no pong: a session must not be dropped for want of one."""

    async def go():
        async with SpecServer() as srv:
            async with SpeechClient(config(srv, ping_interval=0.2, ping_timeout=1.0)) as client:
                first = await client.transcribe(tone(0.4, 300))
                await asyncio.sleep(1.5)
                second = await client.transcribe(tone(0.4, 400))
                return first, second, client.stats(), srv.counters

    first, second, stats, counters = asyncio.run(go())
    assert first.text and second.text
    assert counters.pings_received >= 3 and stats["pings"] >= 3  # protocol and WebSocket pings went out
    assert counters.connections == stats["connections_opened"] == 1 and stats["sessions_retired"] == 0


def test_a_session_closed_for_idleness_is_replaced_without_a_retry():
    async def go():
        async with SpecServer(idle_timeout=0.5) as srv:
            async with SpeechClient(config(srv)) as client:
                first = await client.transcribe(tone(0.4, 300))
                await asyncio.sleep(1.2)  # past the service's idle timeout: it says IDLE_TIMEOUT and closes
                second = await client.transcribe(tone(0.4, 300))
                return first, second, client.stats(), srv.counters

    first, second, stats, counters = asyncio.run(go())
    assert first.text == second.text == transcript_for(tone(0.4, 300), RATE)
    assert counters.idle_closes >= 1 and counters.connections == 2
    assert stats["retries"] == 0 and stats["sessions_retired"] == 1


def test_websocket_pings_from_the_service_are_answered_while_streaming():
    """A service with WebSocket keepalive (0.2 s) closes any session whose pong is late (1011)."""

    async def go():
        async with SpecServer(ping_interval=0.2, ping_timeout=0.5) as srv:
            async with SpeechClient(config(srv, realtime_pacing=True)) as client:
                result = await client.transcribe(tone(2.0, 300))  # two seconds of paced streaming
                return result, client.stats(), srv.counters

    result, stats, counters = asyncio.run(go())
    assert result.text == transcript_for(tone(2.0, 300), RATE)
    assert stats["retries"] == 0 and counters.connections == 1


def test_a_busy_service_gets_the_audio_it_owes_before_its_silence_is_a_stall():
    """After flush, silence is allowed for the result timeout plus the audio not yet transcribed (at real
    time): a long upload to a busy service is waited for, not abandoned and sent again."""
    clip = tone(4.0, 300)

    async def go(speed: float) -> tuple[object, dict[str, int]]:
        async with SpecServer(decode_speed=speed) as srv:
            cfg = config(srv, timeouts=Timeouts(connect=5, ready=5, result=1, record=30, pool=30),
                         retry=RetryPolicy(budget=20, max_attempts=1))  # fmt: skip
            async with SpeechClient(cfg) as client:
                try:
                    return await client.transcribe(clip), client.stats()
                except Exception as exc:  # noqa: BLE001 - the outcome is what is compared
                    return exc, client.stats()

    waited, stats = asyncio.run(go(speed=2.0))  # 2 s of silence after flush: more than the 1 s result timeout
    assert not isinstance(waited, Exception) and waited.text == transcript_for(clip, RATE), waited
    assert stats["timeouts"] == 0 and waited.attempts == 1
    stalled, stats = asyncio.run(go(speed=0.6))  # 6.7 s: more than 1 s + the 4 s owed
    assert isinstance(stalled, Exception) and "no transcript from the service within 1" in str(stalled), stalled
    assert stats["timeouts"] == 1
