"""Sessions against the real server: transcripts, synthesis, reuse, errors, auth and secrecy."""

from __future__ import annotations

import asyncio
import io
import logging
import re
import time
import wave

import pytest

from tests import speech
from tests.client.conftest import RATE, config_for
from voxbeam import audio
from voxbeam.client import RetryPolicy, SpeechClient, SyncSpeechClient, TtsParams
from voxbeam.errors import AuthenticationError, ClientClosedError, InvalidRequestError


def run(coro):
    return asyncio.run(coro)


def test_transcript_has_words_and_segments_with_absolute_offsets(server, clips):
    pcm = speech.silence(1.0) + clips[2] + speech.silence(0.6) + clips[3]

    async def go():
        async with SpeechClient(config_for(server)) as client:
            return await client.transcribe(pcm, sample_rate=RATE)

    r = run(go())
    # The server's voice varies from one rendering to the next, and recognition with it: a loose
    # bound on words, and the timings checked against where each sentence really is.
    assert speech.wer([speech.SENTENCES[2] + " " + speech.SENTENCES[3]], [r.text]) <= 0.8, r.text
    first = (1000, 1000 + len(clips[2]) * 1000 // (2 * RATE))
    second = (first[1] + 600, len(pcm) * 1000 // (2 * RATE))
    for lo, hi in (first, second):
        assert sum(lo - 250 <= w.offset_ms <= hi for w in r.words) >= 2, (lo, hi, r.words)
    assert r.audio_duration_ms == audio.ms(len(pcm) // 2, RATE)
    assert r.attempts == 1 and len(r.request_ids) == 1 and r.language
    assert 0.0 < r.confidence <= 1.0
    assert r.words and r.words == tuple(w for s in r.segments for w in s.words)
    offsets = [w.offset_ms for w in r.words]
    assert offsets == sorted(offsets)
    assert offsets[0] >= 800  # the leading second of silence is counted
    assert r.words[-1].offset_ms + r.words[-1].duration_ms <= r.audio_duration_ms + 50
    for seg in r.segments:
        assert all(seg.offset_ms - 50 <= w.offset_ms <= seg.offset_ms + seg.duration_ms + 50 for w in seg.words)


def test_one_session_serves_file_after_file_with_flush(server, phrases, reference):
    async def go():
        async with SpeechClient(config_for(server, pool_size=1)) as client:
            results = [await client.transcribe(phrases[i]) for i in (2, 3, 2)]
            return results, client.stats()

    results, stats = run(go())
    assert [r.text for r in results] == [reference[2], reference[3], reference[2]]
    assert stats["connections_opened"] == 1 and stats["sessions_opened"] == 1
    ids = [r.request_ids[0] for r in results]
    assert len(set(ids)) == 3  # a new recognition session (request id) per file


def test_timestamps_off_gives_text_without_words(server, phrases):
    async def go():
        async with SpeechClient(config_for(server)) as client:
            return await client.transcribe(phrases[2], timestamps=False)

    r = run(go())
    assert r.text and r.words == ()


def test_synthesis_is_one_valid_file_and_sessions_take_turns(server):
    texts = ["Good morning.", "The weather is nice today.", "See you soon."]

    async def go():
        async with SpeechClient(config_for(server, pool_size=1)) as client:
            results = [await client.synthesize(t, TtsParams(format="wav", sample_rate=22050)) for t in texts]
            return results, client.stats()

    results, stats = run(go())
    assert stats["connections_opened"] == 1
    for r in results:
        assert r.format == "wav" and r.sample_rate == 22050 and r.voice_id and r.attempts == 1
        with wave.open(io.BytesIO(r.audio)) as w:
            assert w.getframerate() == 22050 and w.getnframes() > 22050 // 4
        assert audio.duration_ms(r.audio) > 250
    assert "bytes>" in repr(results[0]) and len(repr(results[0])) < 300  # audio is not dumped into logs


def test_permanent_errors_fail_at_once_without_retries(server, phrases):
    async def go():
        async with SpeechClient(config_for(server)) as client:
            errors = []
            for call in (
                client.transcribe(phrases[0], language="fr-FR"),
                client.synthesize("Hello there.", TtsParams(voice_id="vl-does-not-exist")),
            ):
                started = time.monotonic()
                with pytest.raises(InvalidRequestError) as info:
                    await call
                errors.append((info.value, time.monotonic() - started))
            return errors, client.stats()

    errors, stats = run(go())
    (lang, t1), (voice, t2) = errors
    assert lang.code == "UNSUPPORTED_LANGUAGE" and voice.code == "VOICE_NOT_FOUND"
    assert lang.attempts == 1 and voice.attempts == 1 and not lang.retryable
    assert stats["retries"] == 0 and stats["failures"] == 2
    assert t1 < 5 and t2 < 5


def test_wrong_key_is_an_authentication_error_not_retried(server, phrases):
    async def go():
        async with SpeechClient(config_for(server, api_key="wrong-key-123")) as client:
            with pytest.raises(AuthenticationError) as info:
                await client.transcribe(phrases[0])
            return info.value, client.stats()

    err, stats = run(go())
    assert err.code == "UNAUTHORIZED" and err.attempts == 1 and stats["retries"] == 0
    assert "wrong-key-123" not in str(err) + repr(err)


def test_no_api_key_in_logs_exceptions_or_reprs(server, phrases, caplog):
    """DEBUG logging everywhere (websockets logs each handshake header) must never show a key."""
    secrets = [server.api_key, "bad-Key-xyz-987"]
    texts = []
    # at_level on the websockets logger itself: its level may have been raised elsewhere.
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="websockets"):

        async def go():
            for auth in ("header", "query"):
                async with SpeechClient(config_for(server, auth=auth)) as client:
                    texts.append(repr(client))
                    texts.append(repr(client.config))
                    r = await client.transcribe(phrases[0])
                    assert r.text
                    await client.synthesize("Secret keys stay secret.")
                async with SpeechClient(config_for(server, auth=auth, api_key=secrets[1])) as client:
                    with pytest.raises(AuthenticationError) as info:
                        await client.transcribe(phrases[0])
                    texts.extend([str(info.value), repr(info.value)])
            # A connection failure with the key in the URL (query auth) must not quote it either.
            dead = config_for(server, auth="query", endpoints=("ws://127.0.0.1:9",), retry=RetryPolicy(budget=1.0))
            async with SpeechClient(dead) as client:
                with pytest.raises(Exception) as info:
                    await client.transcribe(phrases[0])
                texts.extend([str(info.value), repr(info.value), str(info.value.__cause__)])

        run(go())
    assert any(r.name.startswith("websockets") for r in caplog.records), "websockets debug logs were not captured"
    assert any("X-Api-Key: ***" in r.getMessage() for r in caplog.records)
    logged = [caplog.text, *texts, *(r.getMessage() for r in caplog.records)]
    for text in logged:
        for secret in secrets:
            assert secret not in text


def test_pool_repr_and_stats_show_state(server, phrases):
    async def go():
        async with SpeechClient(config_for(server, pool_size=3)) as client:
            await asyncio.gather(*(client.transcribe(phrases[i]) for i in range(3)))
            return repr(client.pool), client.stats(), client

    text, stats, client = run(go())
    assert re.fullmatch(r"<SessionPool endpoints=1 open=[1-3] idle=[1-3] in_use=0 max=3>", text), text
    assert stats["transcriptions"] == 3 and stats["in_use"] == 0 and stats["sessions_opened"] <= 3
    assert "open=0" in repr(client.pool)  # aclose closed them all


def test_idle_sessions_are_pinged_and_stay_usable(server, phrases):
    async def go():
        async with SpeechClient(config_for(server, ping_interval=0.2)) as client:
            await client.transcribe(phrases[0])
            await asyncio.sleep(1.1)
            await client.transcribe(phrases[1])
            return client.stats()

    stats = run(go())
    assert stats["pings"] >= 3
    assert stats["connections_opened"] == 1 and stats["sessions_retired"] == 0


def test_closed_client_refuses_new_work(server, phrases):
    async def go():
        client = SpeechClient(config_for(server))
        await client.transcribe(phrases[0])
        await client.aclose()
        assert client.stats()["open"] == 0
        with pytest.raises(ClientClosedError):
            await client.transcribe(phrases[0])

    run(go())


def test_sync_client_runs_many_records_from_threads(server, phrases, reference, tmp_path):
    """Factories are iterated off the loop (PyAV decode of a WAV) while many records are in flight."""
    paths = []
    for i in range(6):
        p = tmp_path / f"c{i}.wav"
        p.write_bytes(audio.encode(phrases[i % 3], RATE, "wav"))
        paths.append(p)
    client = SyncSpeechClient(config_for(server, pool_size=4))
    try:
        futures = [
            client.transcribe_async(lambda p=p: audio.decode_to_pcm(str(p), rate=RATE, chunk_ms=200)) for p in paths
        ]
        texts = [f.result(timeout=60).text for f in futures]
        blocking = client.transcribe(lambda: audio.decode_to_pcm(str(paths[0]), rate=RATE))
        synth = client.synthesize("Threads are fine.")
        stats = client.stats()
    finally:
        client.close()
    assert texts == [reference[i % 3] for i in range(6)]
    assert blocking.text == reference[0] and synth.audio
    assert stats["sessions_opened"] <= 4 + 1  # four STT sessions at most, plus the TTS one


def test_a_bad_file_fails_with_its_audio_error_and_releases_the_session(server, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really a wav file at all" * 10)
    client = SyncSpeechClient(config_for(server, pool_size=1))
    try:
        with pytest.raises(audio.AudioError):
            client.transcribe(lambda: audio.decode_to_pcm(str(bad), rate=RATE))
        ok = client.transcribe(lambda: iter([speech.silence(0.5)]))
        stats = client.stats()
    finally:
        client.close()
    assert stats["connections_opened"] == 1  # the session the bad file held was not spoiled
    assert ok.text == "" and ok.confidence == 0.0 and ok.audio_duration_ms == 500
