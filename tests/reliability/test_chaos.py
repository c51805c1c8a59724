"""Outages of the speech service: ride them out, or fail the rest clearly once the budget is gone.

- 120 files while the server is SIGKILLed and restarted after 5 s of downtime: no dead letter,
  no duplicate, every transcript equal to an undisturbed run of the same clips on the same server.
  (30 s and 120 s downtimes are in ``python -m bench chaos``; they take minutes.)
- The service down for longer than the retry budget: every record not done yet ends as
  RETRIES_EXHAUSTED saying how long it waited, and the job exits 1 with a one-line summary.
- Two endpoints, one killed mid-run: no dead letter, the survivor takes the load within 2 s, and
  the dead one is probed at most once per backoff period.
- A service that does only what the spec says (no pong, no ``model``, unknown message types,
  IDLE_TIMEOUT closes): 100 files, no dead letter, no connection beyond the pool and the
  reconnects after idle closes.
"""

from __future__ import annotations

import json
import re
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from bench import chaos
from tests.client.spec_server import ThreadedSpecServer, transcript_for
from tests.metrics import parse, value
from tests.reliability.conftest import ThreadedProxy, dedicated_server
from voxbeam import audio, jobs
from voxbeam.beam import Secret, ServiceSettings
from voxbeam.beam._workers import close_worker_clients
from voxbeam.client import CircuitPolicy

FILES = 120
PLUMBING_ENGINE = ["--stt_engine", "pocketsphinx", "--decoders_per_worker", "1"]


@pytest.fixture(scope="module")
def chaos_server():
    # pocketsphinx: the plumbing is on trial over hundreds of files, and its transcripts are as repeatable.
    with dedicated_server(workers=2, extra_args=PLUMBING_ENGINE) as srv:
        yield srv


@pytest.fixture(scope="module")
def files(chaos_server, tmp_path_factory) -> dict[str, int]:
    # Fewer than the bench's 200: a third are done before the kill, and the rest still outlast the 5 s outage.
    return chaos.write_corpus(tmp_path_factory.mktemp("chaos-in"), chaos.render_clips(chaos_server), FILES)


@pytest.fixture(scope="module")
def reference(chaos_server, files, tmp_path_factory) -> dict[int, str]:
    settings = chaos.chaos_settings(chaos_server.url, chaos_server.api_key)
    texts = chaos.reference_texts(settings, files, str(tmp_path_factory.mktemp("chaos-reference")))
    assert all(texts.values()), texts  # every clip is heard as something, or equality proves little
    return texts


def _ensure_running(srv) -> None:
    if not srv.running:
        srv.start()


def test_a_restart_after_5_s_of_downtime_loses_nothing(chaos_server, files, reference, tmp_path):
    settings = chaos.chaos_settings(chaos_server.url, chaos_server.api_key)
    try:
        run, outage = chaos.outage_run(chaos_server, settings, files, str(tmp_path), down=5.0)
    finally:
        _ensure_running(chaos_server)
    acc = chaos.account(run, files, reference)
    assert outage.killed_at is not None and outage.restarted_at is not None
    assert any(t > outage.restarted_at for t in run.completions), "no record finished after the restart"
    assert acc.exact, (acc.missing, acc.duplicates)
    assert not run.dead, acc.dead_codes
    assert len(run.rows) == len(files)
    assert run.metrics["retries"] > 0  # records were in flight when the server died
    assert not acc.wrong, list(acc.wrong.items())[:5]
    after = [t for t in run.completions if t > outage.restarted_at]
    print(
        f"\n5 s down: restarted server ready {outage.restarted_at - outage.killed_at:.1f} s after the kill, "
        f"next record done {after[0] - outage.restarted_at:.1f} s later; {run.metrics['retries']} retries, "
        f"wall {run.wall:.0f} s"
    )


def test_an_outage_longer_than_the_budget_fails_the_rest_clearly(chaos_server, files, capsys, tmp_path):
    inputs = sorted(files)[:40]
    src = tmp_path / "in"
    src.mkdir()
    for uri in inputs:
        (src / Path(uri).name).write_bytes(Path(uri).read_bytes())
    out = tmp_path / "out"
    budget = 8.0

    def flushed() -> float:
        """Recognitions the server has answered (a file's flush, its finals with it): replies, not requests."""
        return value(parse(chaos_server.metrics_text()), "voxbeam_engine_seconds_count", op="stt_flush")

    # Killed once ten files are through, and left down. (Counted by the engine calls sent, 40 of them, the
    # kill could come before any file's answer when the machine was loaded: then every record failed, exit 4.)
    before = flushed()
    outage = chaos.Outage(chaos_server, lambda: flushed() >= before + 10, down=None)
    outage.start()
    argv = ["--input", str(src), "--output", str(out), "--endpoint", chaos_server.url, "--api_key",
            chaos_server.api_key, "--retry_budget", str(budget), "--sessions_per_worker", "4"]  # fmt: skip
    try:
        status = jobs.main("transcribe", argv)
        outage.finish()
    finally:
        _ensure_running(chaos_server)
    assert outage.killed_at is not None
    ended = time.monotonic()
    stdout, stderr = capsys.readouterr()
    written = int(re.search(r"(\d+) rows written", stdout).group(1))
    dead = [row for f in (out / "dead_letters").rglob("*.parquet") for row in pq.read_table(f).to_pylist()]
    done = {row["source_uri"] for f in (out / "transcripts").rglob("*.parquet") for row in pq.read_table(f).to_pylist()}
    assert status == 3  # some records written, more failed than --max_dead_letter_fraction allows
    assert written == len(done) and 0 < written < len(inputs), stdout
    assert sorted(done | {json.loads(d["input"])["uri"] for d in dead}) == sorted(
        str(src / Path(u).name) for u in inputs
    )
    assert len(dead) == len(inputs) - written
    for row in dead:
        assert row["error_code"] == "RETRIES_EXHAUSTED", row
        waited = float(re.search(r"gave up after ([\d.]+) s of retrying", row["error_message"]).group(1))
        assert waited >= budget, row["error_message"]
        assert f"retry budget {budget:g} s" in row["error_message"], row["error_message"]
    # Once the outage is older than the budget, the records still queued fail at once, not a budget each
    # (one budget per four sessions would spread them over minutes): all within one budget of each other.
    failed_at = sorted(row["failed_at"] for row in dead)
    assert (failed_at[-1] - failed_at[0]).total_seconds() < budget, (failed_at[0], failed_at[-1])
    assert ended - outage.killed_at < budget + 120, ended - outage.killed_at  # a guard against a hang
    summary = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(summary) == 1 and f"{len(dead)} of {len(inputs)} records failed" in summary[0], stderr
    assert "top error: RETRIES_EXHAUSTED" in summary[0] and "retry budget" in summary[0], summary[0]
    print(
        f"\nover budget: {written} written, {len(dead)} dead letters; "
        f"job ended {ended - outage.killed_at:.1f} s after the kill"
    )
    print(f"e.g. {dead[0]['error_message']}\n{summary[0]}")


def test_two_endpoints_one_killed_mid_run(chaos_server, files, reference, tmp_path):
    inputs = dict(list(files.items())[:100])
    circuit = CircuitPolicy()
    attempts: list[float] = []  # connections to the endpoint that dies, as its proxy saw them
    # The endpoint that dies takes the same key, behind a proxy that notes each connection made to it.
    with (
        dedicated_server(workers=1, api_keys=[chaos_server.api_key], extra_args=PLUMBING_ENGINE) as doomed,
        ThreadedProxy(doomed.port) as proxy,
    ):
        proxy.proxy.policy = lambda: attempts.append(time.monotonic())  # returns None: no fault
        settings = ServiceSettings(
            endpoints=(proxy.url, chaos_server.url),
            api_key=Secret(chaos_server.api_key),
            sessions_per_worker=4,
            result_timeout=10.0,
        )
        survivor_sessions: list[tuple[float, int]] = []
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(0.05):
                survivor_sessions.append((time.monotonic(), int(chaos_server.health()["sessions"])))

        watcher = threading.Thread(target=watch, daemon=True)
        holder: list[chaos.Outage] = []

        def start(tracker) -> None:
            outage = chaos.Outage(doomed, lambda: tracker.done >= 30, down=None)
            holder.append(outage)
            outage.start()
            watcher.start()

        try:
            run = chaos.transcribe(settings, list(inputs), str(tmp_path), on_start=start)
        finally:
            stop.set()
            for o in holder:
                o.finish()
        ended = time.monotonic()
    outage = holder[0]
    killed = outage.killed_at
    assert killed is not None and killed < run.completions[-1], "the endpoint was not killed mid-run"
    acc = chaos.account(run, inputs, reference)
    assert acc.exact and not run.dead, (acc.missing, acc.duplicates, acc.dead_codes)
    assert not acc.wrong, list(acc.wrong.items())[:5]
    # The survivor takes over the whole pool (4 sessions) at once: not after waiting out the dead endpoint's
    # circuit (at most one probe of it may come first on a loaded machine); 30 s only guards against a hang.
    timeline = [(round(t - killed, 2), n) for t, n in survivor_sessions if t >= killed]
    full = [t for t, n in timeline if n >= 4]
    assert full and full[0] < 30, timeline[:40]
    # After the kill: the connections that found it dead at once, then probes spaced by the circuit's
    # open periods (the n-th at least half of min(max_delay, base_delay * 2**(n-1)): the jitter's floor).
    after = [t for t in attempts if t > killed]
    burst = [t for t in after if t - after[0] < 0.25] if after else []
    probes = after[len(burst) :]
    floors = [0.5 * min(circuit.max_delay, circuit.base_delay * 2 ** (n - 1)) for n in range(1, 64)]
    shown = [round(t - killed, 2) for t in after]
    for n, (a, b) in enumerate(zip([*burst[-1:], *probes], probes, strict=False), start=1):
        assert b - a >= floors[n - 1] - 0.05, (n, b - a, floors[n - 1], shown)
    assert len(burst) <= 4, shown
    most = next(k for k in range(64) if sum(floors[: k + 1]) > ended - killed)
    assert len(probes) <= most, (most, shown)
    assert sum(1 for t in probes if t - killed < full[0]) <= 1, (full[0], shown)
    print(
        f"\ntwo endpoints: survivor held the pool {full[0]:.2f} s after the kill; connections to the dead one "
        f"after it: {shown} ({len(burst)} at once, then {len(probes)} probes; at most {most} allowed)"
    )


def _tone_wav(seconds: float, freq: float) -> bytes:
    t = np.arange(int(seconds * chaos.RATE)) / chaos.RATE
    return audio.encode((np.sin(2 * np.pi * freq * t) * 8000).astype("<i2").tobytes(), chaos.RATE, "wav")


def test_a_service_that_does_only_what_the_spec_says(tmp_path):
    paths = []
    for i in range(100):
        path = tmp_path / f"tone-{i:03d}.wav"
        path.write_bytes(_tone_wav(0.2 + 0.01 * (i % 17), 200 + 10 * i))
        paths.append(str(path))
    expected = {}
    for p in paths:  # read back by the standard library's wave module: our decoder is on trial, not the judge
        with wave.open(p, "rb") as w:
            expected[p] = transcript_for(w.readframes(w.getnframes()), chaos.RATE)
    with ThreadedSpecServer(idle_timeout=1.0, unknown_every=5) as spec:
        settings = ServiceSettings(endpoints=(spec.url,), api_key=Secret(spec.api_key), sessions_per_worker=4)
        # Two halves on the same pooled client, with a pause past the service's idle timeout between:
        # the pooled sessions are closed with IDLE_TIMEOUT and the second half must reconnect.
        import apache_beam as beam
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        from voxbeam.beam import DEAD_LETTERS, TRANSCRIPTS, Transcribe, WriteDeadLetters, WriteTranscripts

        outs = []
        for half in range(2):
            p = beam.Pipeline(runner=FnApiRunner())
            result = p | beam.Create(paths[half * 50 : (half + 1) * 50]) | Transcribe(settings)
            result[TRANSCRIPTS] | WriteTranscripts(str(tmp_path / "out"), f"half{half}")
            result[DEAD_LETTERS] | WriteDeadLetters(str(tmp_path / "out"), f"half{half}")
            outs.append(p.run())
            outs[-1].wait_until_finish()
            if half == 0:
                time.sleep(2.5)
        close_worker_clients()
        counters = spec.counters
    rows = [r for f in (tmp_path / "out" / "transcripts").rglob("*.parquet") for r in pq.read_table(f).to_pylist()]
    dead = [r for f in (tmp_path / "out" / "dead_letters").rglob("*.parquet") for r in pq.read_table(f).to_pylist()]
    assert not dead, dead[:3]
    assert {r["source_uri"]: r["text"] for r in rows} == expected and len(rows) == 100
    assert all(r["model"] is None for r in rows)
    assert counters.unknown_sent >= 20 and counters.idle_closes >= 1
    assert counters.connections <= 4 + counters.idle_closes, (counters.connections, counters.idle_closes)
    assert sum(chaos._counter(o, "retries") for o in outs) == 0
