"""End to end under faults: 120-record transcription and synthesis pipelines on the FnApiRunner.

Twice: once through a proxy that (seeded, at random) cuts connections mid-stream, stalls them
past the client's result timeout, or answers SERVER_BUSY itself; once while the server is
SIGKILLed and restarted on the same port in the middle of each run. Afterwards:

- every input is in exactly one of the outputs or the dead letters (by URI / id), none twice;
- every audio object decodes, lasts what the manifest says and has the manifest's byte count;
- transcripts equal those of an undisturbed run, and each object lasts exactly as long as the
  undisturbed run's object for the same text (eSpeak NG's noise generator carries state, so the
  bytes themselves differ run to run, the length does not);
- the retries show in the pipeline's Beam metrics.

The module has its own server (it gets killed) running the small engines, pocketsphinx without
partial results (``--decoders_per_worker 1``) and eSpeak NG voices: what is checked here is the
plumbing under faults, at a volume (about 360 recognitions, 360 syntheses) that the default neural
engines would need ten times the CPU for. Records are one-word clips (~0.45 s), so 120 files are
about a minute of audio, which pocketsphinx recognises with ~25 CPU-seconds.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from tests import speech
from tests.client.proxy import RandomFaults
from tests.reliability.conftest import (
    RATE,
    TINY_SENTENCES,
    ThreadedProxy,
    counter_value,
    dead_letter_key,
    dedicated_server,
    files_under,
    read_parquet_rows,
)
from voxbeam import audio
from voxbeam.beam import (
    DEAD_LETTERS,
    MANIFEST,
    TRANSCRIPTS,
    Secret,
    ServiceSettings,
    Synthesize,
    Transcribe,
    WriteDeadLetters,
    WriteManifest,
    WriteTranscripts,
    progress,
)
from voxbeam.beam._workers import close_worker_clients
from voxbeam.client import SyncSpeechClient

N = 120
RUN = "e2e"
VOICE = "vl-andrew"  # eSpeak NG: the same text always lasts the same (Piper's durations vary)
# Codes a good record may end with when every attempt met a fault (never expected through the
# proxy at these rates; possible only for records caught in flight by the killed server).
RETRYABLE_END = {"RETRIES_EXHAUSTED", "CONNECTION_LOST", "TIMEOUT", "SERVER_BUSY"}


@dataclass
class Corpus:
    files: dict[str, int]  # good audio file -> index of its sentence
    bad_files: dict[str, str]  # input -> the dead-letter code it must get
    records: list[dict[str, Any]]  # good synthesis records
    bad_records: dict[str, str]  # id -> the dead-letter code it must get
    inputs: list[str] = field(default_factory=list)
    all_records: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.inputs = [*self.files, *self.bad_files]
        self.all_records = [*self.records, {"id": "bad-voice", "text": "Hello there.", "voice_id": "vl-nobody"}]
        self.all_records.append({"id": "no-text", "text": "   "})


@dataclass
class Reference:
    texts: dict[int, str]  # sentence index -> transcript of an undisturbed run
    second_take: dict[int, str]  # the same, one file at a time on fresh sessions
    durations: dict[tuple[str, str], int]  # (text, format) -> audio length (ms) in an undisturbed run


@pytest.fixture(scope="module")
def e2e_server():
    with dedicated_server(workers=2, extra_args=["--stt_engine", "pocketsphinx", "--decoders_per_worker", "1"]) as srv:
        yield srv


@pytest.fixture(scope="module")
def corpus(e2e_server, tmp_path_factory) -> Corpus:
    wavs = [audio.encode(pcm, RATE, "wav") for pcm in speech.render(e2e_server, TINY_SENTENCES, rate=RATE)]
    root = tmp_path_factory.mktemp("corpus")
    files = {}
    for i in range(N):
        path = root / f"clip-{i:03d}.wav"
        path.write_bytes(wavs[i % len(wavs)])
        files[str(path)] = i % len(wavs)
    not_audio = root / "notes.wav"
    not_audio.write_bytes(b"these are notes, not audio\n" * 40)
    bad_files = {str(not_audio): "NOT_AUDIO", str(root / "missing.wav"): "NOT_FOUND"}
    records = [
        {
            "id": f"utt-{i:03d}",
            "text": TINY_SENTENCES[i % len(TINY_SENTENCES)],
            "format": "flac" if i % 10 == 0 else "wav",
            "voice_id": VOICE,
        }
        for i in range(N)
    ]
    return Corpus(files, bad_files, records, {"bad-voice": "VOICE_NOT_FOUND", "no-text": "INVALID_INPUT"})


def settings_for(url: str, key: str, **kw: Any) -> ServiceSettings:
    kw.setdefault("max_attempts", 8)
    kw.setdefault("record_timeout", 120.0)
    # Long enough for a busy server's queue (a spurious timeout costs a resend, and resends cost the
    # server more work), short enough that each stall costs the run little: one-word records are
    # answered within a second here, so 4 s is ample.
    kw.setdefault("result_timeout", 4.0)
    return ServiceSettings(endpoints=(url,), api_key=Secret(key), sessions_per_worker=4, **kw)


def transcribe(settings: ServiceSettings, inputs: list[str], out: str, progress_id: str | None = None) -> Any:
    p = beam.Pipeline(runner=FnApiRunner())
    result = p | "Files" >> beam.Create(inputs) | Transcribe(settings, progress_id=progress_id)
    result[TRANSCRIPTS] | WriteTranscripts(out, RUN)
    result[DEAD_LETTERS] | WriteDeadLetters(out, RUN)
    run = p.run()
    run.wait_until_finish()
    close_worker_clients()  # as a local job does: the next pipeline starts on fresh sessions
    return run


def synthesize(settings: ServiceSettings, records: list[dict[str, Any]], out: str, progress_id: str | None = None):
    p = beam.Pipeline(runner=FnApiRunner())
    result = (
        p
        | "Records" >> beam.Create(records)
        | Synthesize(os.path.join(out, "audio"), settings, progress_id=progress_id)
    )
    result[MANIFEST] | WriteManifest(out, RUN)
    result[DEAD_LETTERS] | WriteDeadLetters(out, RUN)
    run = p.run()
    run.wait_until_finish()
    close_worker_clients()
    return run


@pytest.fixture(scope="module")
def reference(e2e_server, corpus, tmp_path_factory) -> Reference:
    """An undisturbed run, straight to the server: one file per sentence, one record per (text, format)."""
    out = tmp_path_factory.mktemp("reference")
    settings = settings_for(e2e_server.url, e2e_server.api_key)
    first = {}
    for uri, k in corpus.files.items():
        first.setdefault(k, uri)
    transcribe(settings, list(first.values()), str(out / "stt"))
    rows = read_parquet_rows(str(out / "stt" / TRANSCRIPTS / f"run={RUN}" / "*.parquet"))
    by_uri = {r["source_uri"]: r["text"] for r in rows}
    texts = {k: by_uri[uri] for k, uri in first.items()}
    assert all(texts.values()), texts  # every sentence is recognised as something
    # A second take, one file at a time on fresh sessions: if it differs, the server's results
    # depend on what its decoders did before, and "same text as undisturbed" cannot hold.
    second = {}
    for k, uri in sorted(first.items(), reverse=True):
        with SyncSpeechClient(settings.client_config()) as client:
            second[k] = client.transcribe(lambda uri=uri: audio.decode_to_pcm(uri, RATE)).text

    combos = sorted({(r["text"], r["format"]) for r in corpus.records})
    records = [{"id": f"ref-{i}", "text": t, "format": f, "voice_id": VOICE} for i, (t, f) in enumerate(combos)]
    synthesize(settings, records, str(out / "tts"))
    manifest = read_parquet_rows(str(out / "tts" / MANIFEST / f"run={RUN}" / "*.parquet"))
    by_id = {m["id"]: audio.duration_ms(Path(m["uri"]).read_bytes()) for m in manifest}
    return Reference(texts, second, {combo: by_id[f"ref-{i}"] for i, combo in enumerate(combos)})


# ---------------------------------------------------------------------------------------------
# What every run must satisfy


def check_transcription(
    out: str, corpus: Corpus, reference: Reference, *, may_fail: int = 0
) -> tuple[list[str], dict[str, tuple[str, str]]]:
    """Accounting of a transcription run (asserted); returns the good files that became dead letters
    and the transcripts that differ from the undisturbed run's (for the caller to assert last)."""
    rows = read_parquet_rows(os.path.join(out, TRANSCRIPTS, f"run={RUN}", "*.parquet"))
    dead = read_parquet_rows(os.path.join(out, DEAD_LETTERS, f"run={RUN}", "*.parquet"))
    accounted = Counter([r["source_uri"] for r in rows] + [dead_letter_key(d) for d in dead])
    assert accounted == Counter(corpus.inputs), {
        "missing": sorted(set(corpus.inputs) - set(accounted)),
        "twice": sorted(k for k, n in accounted.items() if n > 1),
        "unknown": sorted(set(accounted) - set(corpus.inputs)),
    }
    codes = {dead_letter_key(d): d["error_code"] for d in dead}
    for uri, code in corpus.bad_files.items():
        assert codes.get(uri) == code, (uri, codes.get(uri))
    lost = sorted(uri for uri in codes if uri in corpus.files)
    assert all(codes[uri] in RETRYABLE_END for uri in lost), {uri: codes[uri] for uri in lost}
    assert len(lost) <= may_fail, {uri: codes[uri] for uri in lost}
    wrong = {
        r["source_uri"]: (r["text"], reference.texts[corpus.files[r["source_uri"]]])
        for r in rows
        if r["text"] != reference.texts[corpus.files[r["source_uri"]]]
    }
    return lost, wrong


def assert_same_text(wrong: dict[str, tuple[str, str]], reference: Reference) -> None:
    if not wrong:
        return
    sample = dict(list(wrong.items())[:5])
    if reference.second_take != reference.texts:
        pytest.fail(
            f"{len(wrong)} transcripts differ from the undisturbed run, e.g. {sample}; but the undisturbed "
            "run does not reproduce itself either (pipeline vs one file at a time: "
            f"{[(reference.texts[k], reference.second_take[k]) for k in sorted(reference.texts)]}): the server's "
            "transcripts depend on what its decoders heard before (reset them per utterance)"
        )
    pytest.fail(f"{len(wrong)} transcripts differ from the undisturbed run's: {sample}")


def check_synthesis(out: str, corpus: Corpus, reference: Reference, *, may_fail: int = 0) -> list[str]:
    """Accounting, object integrity and content of a synthesis run; returns good ids that failed."""
    manifest = read_parquet_rows(os.path.join(out, MANIFEST, f"run={RUN}", "*.parquet"))
    dead = read_parquet_rows(os.path.join(out, DEAD_LETTERS, f"run={RUN}", "*.parquet"))
    ids = [r["id"] for r in corpus.all_records]
    accounted = Counter([m["id"] for m in manifest] + [dead_letter_key(d) for d in dead])
    assert accounted == Counter(ids), {
        "missing": sorted(set(ids) - set(accounted)),
        "twice": sorted(k for k, n in accounted.items() if n > 1),
    }
    codes = {dead_letter_key(d): d["error_code"] for d in dead}
    for rid, code in corpus.bad_records.items():
        assert codes.get(rid) == code, (rid, codes.get(rid))
    good = {r["id"]: r for r in corpus.records}
    lost = sorted(rid for rid in codes if rid in good)
    assert all(codes[rid] in RETRYABLE_END for rid in lost), {rid: codes[rid] for rid in lost}
    assert len(lost) <= may_fail, {rid: codes[rid] for rid in lost}

    # Exactly the manifest's objects exist: one per record, no temporary or torn leftovers.
    assert files_under(os.path.join(out, "audio")) == sorted(m["uri"] for m in manifest)
    for m in manifest:
        record = good[m["id"]]
        data = Path(m["uri"]).read_bytes()
        assert len(data) == m["bytes"], m
        assert m["format"] == record["format"]
        assert m["text_sha256"] == hashlib.sha256(record["text"].encode()).hexdigest()
        decoded = audio.duration_ms(data)
        assert decoded == m["duration_ms"] == reference.durations[(record["text"], record["format"])], (m, decoded)
    return lost


# ---------------------------------------------------------------------------------------------
# Faults on the network


def _faults(proxy: Any, seed: int, downstream: bool) -> None:
    """One fault of each kind first (so each surely happens), then seeded random ones.

    Pooled connections live long, so most connections get a fault somewhere in their first
    ~180 kB (9 one-word records): a fault every dozen or two records for the whole run (as many
    faults per run as 200 records with a fault in their first 300 kB had, in 60 % of the time).
    """
    proxy.cut(3_000, downstream=downstream)
    proxy.busy()
    proxy.stall(3_000, downstream=downstream, hold=10)
    proxy.policy = RandomFaults(
        seed,
        cut=0.8,
        stall=0.04,
        busy=0.06,
        at_bytes=(600, 180_000),
        downstream=1.0 if downstream else 0.0,
        stall_hold=10,
    )


def test_pipelines_through_a_proxy_that_cuts_stalls_and_answers_busy(e2e_server, corpus, reference, tmp_path):
    out = str(tmp_path)
    with ThreadedProxy(e2e_server.port) as tp:
        settings = settings_for(tp.url, e2e_server.api_key)
        _faults(tp.proxy, 11, downstream=False)  # STT: audio flows up
        started = time.monotonic()
        stt = transcribe(settings, corpus.inputs, os.path.join(out, "stt"))
        stt_seconds = time.monotonic() - started
        stt_faults = Counter(tp.proxy.injected)

        tp.proxy.injected.clear()
        _faults(tp.proxy, 12, downstream=True)  # TTS: audio flows down
        started = time.monotonic()
        tts = synthesize(settings, corpus.all_records, os.path.join(out, "tts"))
        tts_seconds = time.monotonic() - started
        tts_faults = Counter(tp.proxy.injected)

    stt_retries, tts_retries = counter_value(stt, "retries"), counter_value(tts, "retries")
    print(
        f"\nproxy faults: stt {dict(stt_faults)} -> {stt_retries} retries in {stt_seconds:.1f}s; "
        f"tts {dict(tts_faults)} -> {tts_retries} retries in {tts_seconds:.1f}s"
    )
    _, wrong = check_transcription(os.path.join(out, "stt"), corpus, reference)
    check_synthesis(os.path.join(out, "tts"), corpus, reference)
    for faults, retries in ((stt_faults, stt_retries), (tts_faults, tts_retries)):
        assert faults["cut"] >= 10 and faults["stall"] >= 1 and faults["busy"] >= 1, faults
        # Each fault met a record in flight (a few may meet a session between records, a slow
        # server may add timeouts of its own): the retries follow the faults.
        assert retries >= sum(faults.values()) // 2, (faults, retries)
    assert_same_text(wrong, reference)


# ---------------------------------------------------------------------------------------------
# The server process dies


class Killer(threading.Thread):
    """SIGKILLs ``srv`` once ``tracker`` shows ``at`` records done, then restarts it on the same port."""

    def __init__(self, srv: Any, tracker: progress.Progress, at: int) -> None:
        super().__init__(name="server-killer", daemon=True)
        self.srv = srv
        self.tracker = tracker
        self.at = at
        self.killed_at: int | None = None
        self.restart_seconds = 0.0
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.wait(0.02):
                if self.tracker.done >= self.at:
                    self.srv.kill()
                    self.killed_at = self.tracker.done
                    time.sleep(0.5)
                    started = time.monotonic()
                    self.srv.restart()
                    self.restart_seconds = time.monotonic() - started
                    return
        except BaseException as exc:  # reported by the test
            self.error = exc


def _run_with_kill(srv: Any, kind: str, total: int, body: Any) -> tuple[Any, Killer]:
    pid = f"kill-{kind}-{time.monotonic_ns()}"
    tracker = progress.register(pid, total)
    killer = Killer(srv, tracker, at=total // 3)
    killer.start()
    try:
        result = body(pid)
    finally:
        killer.stop.set()
        killer.join(60)
        progress.unregister(pid)
    assert killer.error is None, killer.error
    assert killer.killed_at is not None and killer.killed_at < total, "the server was not killed mid-run"
    return result, killer


def test_pipelines_survive_the_server_killed_and_restarted_mid_run(e2e_server, corpus, reference, tmp_path):
    out = str(tmp_path)
    srv = e2e_server
    settings = settings_for(srv.url, srv.api_key, max_attempts=10)
    first_pid = srv.pid
    stt, stt_kill = _run_with_kill(
        srv, "stt", len(corpus.inputs), lambda pid: transcribe(settings, corpus.inputs, f"{out}/stt", pid)
    )
    assert srv.pid != first_pid
    tts, tts_kill = _run_with_kill(
        srv, "tts", len(corpus.all_records), lambda pid: synthesize(settings, corpus.all_records, f"{out}/tts", pid)
    )
    health = srv.health()
    stt_retries, tts_retries = counter_value(stt, "retries"), counter_value(tts, "retries")
    print(
        f"\nkill: stt killed at {stt_kill.killed_at}, restart {stt_kill.restart_seconds:.1f}s, {stt_retries} retries; "
        f"tts killed at {tts_kill.killed_at}, restart {tts_kill.restart_seconds:.1f}s, {tts_retries} retries"
    )
    # Records in flight when the server died may run out of attempts if the restart were slow;
    # at most the in-flight window (2 x sessions) can, and they must say so as dead letters.
    lost_stt, wrong = check_transcription(f"{out}/stt", corpus, reference, may_fail=8)
    lost_tts = check_synthesis(f"{out}/tts", corpus, reference, may_fail=8)
    print(f"kill: good records that ended as dead letters: stt {len(lost_stt)}, tts {len(lost_tts)}")
    assert stt_retries > 0 and tts_retries > 0
    assert health["workers_alive"] == 2, health
    assert_same_text(wrong, reference)
