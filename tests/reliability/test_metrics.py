"""``GET /metrics`` after small real runs: the Prometheus counters agree with what the runs report."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.metrics import scrape, value
from tests.reliability.conftest import SHORT_SENTENCES, dedicated_server, read_parquet_rows
from voxbeam import jobs

KEY = "metrics-test-key"


def test_metrics_match_the_runs_own_summary(short_wavs: list[bytes], tmp_path: Path) -> None:
    audio_dir = tmp_path / "audio"
    audio_dir.mkdir()
    for i, wav in enumerate(short_wavs[:4]):
        (audio_dir / f"clip{i}.wav").write_bytes(wav)
    (audio_dir / "notes.wav").write_bytes(b"this is not audio at all" * 10)  # a dead letter the server never sees
    records = tmp_path / "records.jsonl"
    lines = [{"id": f"r{i}", "text": t} for i, t in enumerate(SHORT_SENTENCES[:3])]
    lines.append({"id": "bad-voice", "text": "Nobody speaks this.", "voice_id": "vl-nobody"})
    records.write_text("".join(json.dumps(r) + "\n" for r in lines))

    with dedicated_server(workers=1, api_keys=[KEY]) as srv:
        before = scrape(srv)
        assert value(before, "voxbeam_session_capacity") == 64
        assert value(before, "voxbeam_sessions_opened_total", service="stt") == 0

        common = ["--endpoint", srv.url, "--api_key", KEY, "--sessions_per_worker", "2"]
        stt = jobs.run("transcribe", ["--input", str(audio_dir), "--output", str(tmp_path / "stt"), *common])
        tts = jobs.run("synthesize", ["--input", str(records), "--output", str(tmp_path / "tts"), *common])
        assert stt.written == 4 and dict(stt.dead_letters) == {"NOT_AUDIO": 1}, stt
        assert tts.written == 3 and dict(tts.dead_letters) == {"VOICE_NOT_FOUND": 1}, tts

        # The jobs closed their pooled sessions; wait until the server has seen every close.
        deadline = time.monotonic() + 20
        while srv.health()["sessions"] and time.monotonic() < deadline:
            time.sleep(0.1)
        health = srv.health()
        after = scrape(srv)

    transcripts = read_parquet_rows(str(tmp_path / "stt" / "transcripts" / "*" / "*.parquet"))
    manifest = read_parquet_rows(str(tmp_path / "tts" / "manifest" / "*" / "*.parquet"))
    audio_s = sum(r["audio_duration_ms"] for r in transcripts) / 1000
    characters = sum(len(r["text"]) for r in lines if r["id"] in {m["id"] for m in manifest})

    # What the engines were given is what the rows say was transcribed and rendered.
    assert abs(value(after, "voxbeam_audio_seconds_total") - audio_s) <= 0.001 * len(transcripts), (
        value(after, "voxbeam_audio_seconds_total"),
        audio_s,
    )
    assert value(after, "voxbeam_characters_total") == characters
    # One flush per (short) file, one render per written object.
    assert value(after, "voxbeam_engine_seconds_count", op="stt_flush") == stt.written
    assert value(after, "voxbeam_engine_seconds_count", op="tts_render") == tts.written
    assert value(after, "voxbeam_engine_seconds_sum", op="stt_audio") > 0
    assert value(after, "voxbeam_engine_queue_depth") == 0

    # Errors by code: the one the dead letters name, nothing else.
    errors = {dict(labels)["code"]: v for (name, labels), v in after.items() if name == "voxbeam_errors_total"}
    assert errors == {"VOICE_NOT_FOUND": 1.0}, errors
    assert health["errors"] == {"VOICE_NOT_FOUND": 1}

    # Sessions: every connection was admitted (the pre-flight probes included) and is closed again.
    opened = sum(value(after, "voxbeam_sessions_opened_total", service=s) for s in ("stt", "tts"))
    closed = sum(value(after, "voxbeam_sessions_closed_total", service=s) for s in ("stt", "tts"))
    refused = sum(v for (name, _), v in after.items() if name == "voxbeam_sessions_refused_total")
    assert opened == closed == health["connections_total"] and refused == 0
    assert value(after, "voxbeam_sessions_opened_total", service="stt") >= 2  # a probe per job + the work
    assert value(after, "voxbeam_sessions_open", service="stt") == 0
    assert value(after, "process_resident_memory_bytes") > 0


def test_refusals_are_counted_by_reason() -> None:
    import asyncio

    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    init = '{"type":"init","voice_id":"vl-andrew"}'

    async def knock(url: str, key: str) -> None:
        async with connect(url + "/v1/tts/realtime", additional_headers={"X-Api-Key": key}) as ws:
            await ws.send(init)  # a session slot is taken at init
            await ws.recv()  # ready, or the error message before the close

    with dedicated_server(workers=1, api_keys=[KEY], max_sessions=1) as srv:

        async def scenario() -> None:
            async with connect(srv.url + "/v1/tts/realtime", additional_headers={"X-Api-Key": KEY}) as held:
                await held.send(init)
                await held.recv()  # ready: it holds the only session
                await knock(srv.url, KEY)  # SERVER_BUSY
            with pytest.raises(InvalidStatus) as refused:  # the key is checked before the upgrade
                await knock(srv.url, "wrong")
            assert refused.value.response.status_code == 401

        asyncio.run(scenario())
        samples = scrape(srv)
    assert value(samples, "voxbeam_sessions_refused_total", reason="busy") == 1
    assert value(samples, "voxbeam_sessions_refused_total", reason="unauthorized") == 1
    assert value(samples, "voxbeam_errors_total", code="SERVER_BUSY") == 1
    assert value(samples, "voxbeam_errors_total", code="UNAUTHORIZED") == 1
    assert value(samples, "voxbeam_session_capacity") == 1
