"""The jobs' pre-flight check opens the session the records will use, before any record is read.

A wrong --language or --voice_id, or an endpoint without the job's service, is one UsageError
naming the flag (one line and exit 2 from the CLI), and nothing is transcribed or written.
"""

from __future__ import annotations

import functools
import io
import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.client.spec_server import ThreadedSpecServer, transcript_for
from voxbeam import jobs

ROOT = Path(__file__).resolve().parent.parent
RATE = 16000


def _wav(seconds: float, freq: float) -> bytes:
    t = np.arange(int(seconds * RATE)) / RATE
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes((np.sin(2 * np.pi * freq * t) * 8000).astype("<i2").tobytes())
    return out.getvalue()


@pytest.fixture
def audio_dir(tmp_path: Path) -> Path:
    d = tmp_path / "audio"
    d.mkdir()
    for i in range(3):
        (d / f"tone{i}.wav").write_bytes(_wav(0.5 + 0.1 * i, 300 + 100 * i))
    return d


@pytest.fixture
def records(tmp_path: Path) -> Path:
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps({"id": f"r{i}", "text": f"Sentence {i}."}) + "\n" for i in range(3)))
    return path


def _outputs(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir()) if out.exists() else []


def _usage_error(run, argv: list[str]) -> jobs.UsageError:
    with pytest.raises(jobs.UsageError) as info:
        run(argv)
    return info.value


def test_wrong_language_and_voice_are_refused_before_any_record(server, audio_dir, records, tmp_path):
    before = server.health()["engine_calls"]
    common = ["--endpoint", server.url, "--api_key", server.api_key]
    out = tmp_path / "stt"
    err = _usage_error(
        functools.partial(jobs.run, "transcribe"),
        ["--input", str(audio_dir), "--output", str(out), "--language", "xx-XX", *common],
    )
    assert err.flag == "--language" and "UNSUPPORTED_LANGUAGE" in str(err), err
    out2 = tmp_path / "tts"
    err = _usage_error(
        functools.partial(jobs.run, "synthesize"),
        ["--input", str(records), "--output", str(out2), "--voice_id", "vl-nobody", *common],
    )
    assert err.flag == "--voice_id" and "VOICE_NOT_FOUND" in str(err), err
    # Nothing was transcribed, synthesized or written (the writability check leaves nothing behind).
    after = server.health()["engine_calls"]
    for op in ("stt_audio", "stt_flush", "tts_render", "tts_synth"):
        assert after.get(op, 0) == before.get(op, 0), (op, before, after)
    assert _outputs(out) == [] and _outputs(out2) == []


def test_the_cli_says_it_in_one_line_and_exits_2(server, audio_dir, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "voxbeam", "transcribe", str(audio_dir), "--output", str(tmp_path / "o"),
         "--endpoint", server.url, "--language", "xx-YY"],
        capture_output=True, text=True, timeout=240, cwd=ROOT,
        env={**os.environ, "VOXNEXUS_API_KEY": server.api_key},
    )  # fmt: skip
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, (proc.returncode, proc.stderr)
    assert lines[0].startswith("error: --language:") and "xx-YY" in lines[0], lines[0]


def test_a_service_missing_the_jobs_endpoint_is_refused_and_one_that_has_it_is_used(audio_dir, records, tmp_path):
    with ThreadedSpecServer(services=("tts",)) as tts_only, ThreadedSpecServer(services=("stt",)) as stt_only:
        key = ["--api_key", tts_only.api_key]
        err = _usage_error(
            functools.partial(jobs.run, "transcribe"),
            ["--input", str(audio_dir), "--output", str(tmp_path / "a"), "--endpoint", tts_only.url, *key],
        )
        assert err.flag == "--endpoint" and "no speech-to-text service" in str(err), err
        err = _usage_error(
            functools.partial(jobs.run, "synthesize"),
            ["--input", str(records), "--output", str(tmp_path / "b"), "--endpoint", stt_only.url, *key],
        )
        assert err.flag == "--endpoint" and "no text-to-speech service" in str(err), err
        assert tts_only.counters.connections == stt_only.counters.connections == 0  # 404 at the handshake

        spoken = jobs.run(
            "synthesize", ["--input", str(records), "--output", str(tmp_path / "c"), "--endpoint", tts_only.url, *key]
        )
        heard = jobs.run(
            "transcribe", ["--input", str(audio_dir), "--output", str(tmp_path / "d"), "--endpoint", stt_only.url, *key]
        )
    assert spoken.written == 3 and not spoken.dead_letters
    assert heard.written == 3 and not heard.dead_letters
    texts = pq.read_table(next((tmp_path / "d" / "transcripts").rglob("*.parquet"))).to_pylist()
    # What the files hold, read by the standard library's wave module: our decoder is on trial, not the judge.
    expected = {}
    for path in audio_dir.iterdir():
        with wave.open(str(path), "rb") as w:
            expected[str(path)] = transcript_for(w.readframes(w.getnframes()), RATE)
    assert {r["source_uri"]: r["text"] for r in texts} == expected


def test_endpoint_mistakes_name_the_flag_and_hide_credentials(server, audio_dir, tmp_path):
    out = str(tmp_path / "o")
    base = ["--input", str(audio_dir), "--output", out, "--api_key", server.api_key]
    secret = "pa55-W0rd-xyz"
    err = _usage_error(
        functools.partial(jobs.run, "transcribe"), [*base, "--endpoint", f"ws://alice:{secret}@127.0.0.1:9"]
    )
    assert err.flag == "--endpoint" and secret not in str(err) and "alice:***@" in str(err), err
    err = _usage_error(functools.partial(jobs.run, "transcribe"), [*base, "--endpoint", f"{server.url}?token=abc123"])
    assert err.flag == "--endpoint" and "query string" in str(err) and "abc123" not in str(err), err
    tls_on_plain = server.url.replace("ws://", "wss://")
    err = _usage_error(functools.partial(jobs.run, "transcribe"), [*base, "--endpoint", tls_on_plain])
    assert err.flag == "--endpoint" and "use ws://" in str(err), err
