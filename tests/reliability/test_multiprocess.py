"""Beyond one process: both jobs on the DirectRunner in multi_processing mode against two replicas.

Two SDK worker processes, each with its own session pool, and two `voxbeam serve` processes named
in the endpoint list: the client side of a fleet behind a Kubernetes Service, on one machine.
Progress and the summary are counted in the job process from records done in the workers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.metrics import scrape, value
from tests.reliability.conftest import (
    SHORT_SENTENCES,
    dead_letter_key,
    dedicated_server,
    read_parquet_rows,
)
from voxbeam import jobs

KEY = "fleet-test-key-0000"
WORKERS = 2  # SDK worker processes
POOL = 2  # sessions per worker process
FILES = 100
BAD = 3  # files that are not audio: dead letters, no session


def _multi_processing() -> list[str]:
    return [
        "--runner", "DirectRunner",
        "--direct_running_mode", "multi_processing",
        "--direct_num_workers", str(WORKERS),
        "--sessions_per_worker", str(POOL),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def replicas() -> Any:
    # pocketsphinx: the plumbing across processes is on trial, not the recognizer (a tenth of Whisper's CPU).
    small = ["--stt_engine", "pocketsphinx", "--decoders_per_worker", "1"]
    with (
        dedicated_server(workers=1, api_keys=[KEY], extra_args=small) as a,
        dedicated_server(workers=1, api_keys=[KEY], extra_args=small) as b,
    ):
        yield a, b


def _served(replica: Any, service: str) -> tuple[int, int]:
    """(sessions this replica opened for ``service``, connections it accepted), from /metrics and /healthz."""
    samples = scrape(replica)
    return int(value(samples, "voxbeam_sessions_opened_total", service=service)), replica.health()["connections_total"]


def _final_progress_line(err: str) -> str:
    lines = [ln for ln in err.replace("\r", "\n").splitlines() if " done" in ln and "elapsed" in ln]
    assert lines, err[-2000:]
    return lines[-1]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_transcription_on_two_worker_processes_and_two_replicas(replicas, tiny_wavs, tmp_path: Path, capsys) -> None:
    a, b = replicas
    audio_dir = tmp_path / "audio"
    audio_dir.mkdir()
    for i in range(FILES - BAD):
        (audio_dir / f"clip{i:03d}.wav").write_bytes(tiny_wavs[i % len(tiny_wavs)])
    for i in range(BAD):
        (audio_dir / f"broken{i}.wav").write_bytes(b"not a wave file " * 20)
    before = {r.url: _served(r, "stt") for r in replicas}

    out = tmp_path / "out"
    summary = jobs.run(
        "transcribe",
        [
            "--input",
            str(audio_dir),
            "--output",
            str(out),
            "--endpoint",
            f"{a.url},{b.url}",
            "--api_key",
            KEY,
            *_multi_processing(),
        ],  # fmt: skip
        show_progress=True,
    )

    rows = read_parquet_rows(str(out / "transcripts" / "*" / "*.parquet"))
    dead = read_parquet_rows(str(out / "dead_letters" / "*" / "*.parquet"))
    assert len(rows) + len(dead) == FILES
    assert len(rows) == FILES - BAD and {d["error_code"] for d in dead} == {"NOT_AUDIO"}
    assert {r["source_uri"] for r in rows} | {dead_letter_key(d) for d in dead} == {str(p) for p in audio_dir.iterdir()}
    assert sum(1 for r in rows if r["text"].strip()) >= 0.9 * len(rows)
    # The summary and the progress line count records finished in the worker processes.
    assert summary.written == FILES - BAD and dict(summary.dead_letters) == {"NOT_AUDIO": BAD}
    line = _final_progress_line(capsys.readouterr().err)
    assert line.startswith(f"{FILES}/{FILES} done, {BAD} failed"), line

    sessions = {}
    connections = 0
    for r in replicas:
        opened, accepted = _served(r, "stt")
        sessions[r.url] = opened - before[r.url][0] - 1  # less the job's pre-flight probe
        connections += accepted - before[r.url][1] - 1
    assert all(n > 0 for n in sessions.values()), f"both replicas serve sessions: {sessions}"
    # Each worker process keeps at most POOL sessions; no faults, so no reconnects.
    assert connections <= WORKERS * POOL, (connections, sessions)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_synthesis_on_two_worker_processes_and_two_replicas(replicas, tmp_path: Path, capsys) -> None:
    a, b = replicas
    records = [{"id": f"r{i:03d}", "text": SHORT_SENTENCES[i % len(SHORT_SENTENCES)]} for i in range(FILES - 1)]
    records.append({"id": "r-bad-voice", "text": "Who speaks this?", "voice_id": "vl-nobody"})
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    before = {r.url: _served(r, "tts") for r in replicas}

    out = tmp_path / "out"
    summary = jobs.run("synthesize",
        ["--input", str(path), "--output", str(out), "--endpoint", f"{a.url},{b.url}", "--api_key", KEY,
         *_multi_processing()],
        show_progress=True,
    )  # fmt: skip

    manifest = read_parquet_rows(str(out / "manifest" / "*" / "*.parquet"))
    dead = read_parquet_rows(str(out / "dead_letters" / "*" / "*.parquet"))
    assert len(manifest) + len(dead) == FILES
    assert [d["error_code"] for d in dead] == ["VOICE_NOT_FOUND"]
    assert len({m["id"] for m in manifest}) == FILES - 1
    assert all(Path(m["uri"]).stat().st_size == m["bytes"] > 44 for m in manifest)
    assert summary.written == FILES - 1 and dict(summary.dead_letters) == {"VOICE_NOT_FOUND": 1}
    line = _final_progress_line(capsys.readouterr().err)
    assert line.startswith(f"{FILES}/{FILES} done, 1 failed"), line

    used = {r.url: _served(r, "tts")[0] - before[r.url][0] - 1 for r in replicas}  # less the pre-flight probe
    assert all(n > 0 for n in used.values()), f"both replicas serve sessions: {used}"
    # The odd voice needs a session of its own configuration: it may evict an idle one that is
    # then opened again, so two more than the pools hold.
    assert sum(used.values()) <= WORKERS * POOL + 2, used
