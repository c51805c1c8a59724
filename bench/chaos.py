"""Chaos: the transcription pipeline while its server is SIGKILLed and started again after a downtime.

For each downtime (30 s and 120 s in full mode; 5 s in quick mode), ``N_FILES`` one-word clips
go through ``Transcribe`` on the FnApiRunner against a dedicated ``voxbeam serve``; a third of the
way in the server is SIGKILLed, kept down for the downtime, then started again on the same port.
Reported per run, with the targets the issue sets: dead letters (0), inputs not accounted for
exactly once (0), transcripts that differ from an undisturbed run of the same clips on the same
server (0); and, for information, the time from the restart until records complete again, the
whole run's wall time, retries, probes and connections. Nothing here is a ratio to a baseline:
these are correctness counts under faults, with timings beside them.

The helpers (``Outage``, ``transcribe``, ``account``) are shared with tests/reliability/test_chaos.py,
which runs the 5-second case, a longer-than-the-budget outage and two endpoints in the CI suite.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._common import Result, log

NAME = "chaos"
RATE = 16000
# One word each (about 0.45 s): 200 files are 1.5 minutes of audio, ~40 CPU-seconds for the server.
CLIP_TEXTS = ("Yes.", "Okay.", "Hello.", "Monday.", "See you soon.", "Thank you.")
N_FILES = 200
SESSIONS = 4
RUN = "chaos"


# ---------------------------------------------------------------------------------------------
# Shared with the tests


def render_clips(server: Any, texts: Sequence[str] = CLIP_TEXTS) -> list[bytes]:
    """WAV (16 kHz) of each text from ``server``'s own TTS."""
    from voxbeam.client import ClientConfig, SyncSpeechClient, TtsParams

    with SyncSpeechClient(ClientConfig(endpoints=(server.url,), api_key=server.api_key, pool_size=2)) as client:
        return [client.synthesize(t, TtsParams(format="wav", sample_rate=RATE)).audio for t in texts]


def write_corpus(root: Path, clips: list[bytes], n: int) -> dict[str, int]:
    """``n`` files cycling through ``clips``; path -> index of its clip."""
    root.mkdir(parents=True, exist_ok=True)
    files = {}
    for i in range(n):
        path = root / f"clip-{i:03d}.wav"
        path.write_bytes(clips[i % len(clips)])
        files[str(path)] = i % len(clips)
    return files


class Outage(threading.Thread):
    """SIGKILLs ``server`` once ``trigger()`` is true, waits ``down`` seconds, starts it again.

    ``down=None`` leaves it down. Times are ``time.monotonic()``.
    """

    def __init__(self, server: Any, trigger: Callable[[], bool], down: float | None) -> None:
        super().__init__(name="chaos-outage", daemon=True)
        self.server = server
        self.trigger = trigger
        self.down = down
        self.killed_at: float | None = None
        self.restarted_at: float | None = None  # when the restarted server was ready
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.wait(0.02):
                if self.trigger():
                    self.server.kill()
                    self.killed_at = time.monotonic()
                    if self.down is None:
                        return
                    time.sleep(self.down)
                    self.server.start()
                    self.restarted_at = time.monotonic()
                    return
        except BaseException as exc:  # reported by the caller
            self.error = exc

    def finish(self) -> None:
        self.stop.set()
        self.join(300)
        if self.error is not None:
            raise self.error


@dataclass
class Run:
    rows: list[dict[str, Any]]
    dead: list[dict[str, Any]]
    wall: float
    metrics: dict[str, int]
    completions: list[float] = field(default_factory=list)  # monotonic time of each record done


def _counter(result: Any, name: str) -> int:
    from apache_beam.metrics.metric import MetricsFilter

    found = result.metrics().query(MetricsFilter().with_namespace("voxbeam").with_name(name))["counters"]
    return int(sum(c.committed or 0 for c in found))


def transcribe(settings: Any, inputs: Sequence[str], out: str, *, on_start: Callable[[Any], None] | None = None) -> Run:
    """One ``Transcribe`` pipeline on the FnApiRunner; ``on_start(tracker)`` runs as it begins."""
    import apache_beam as beam
    import pyarrow.parquet as pq
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from voxbeam.beam import DEAD_LETTERS, TRANSCRIPTS, Transcribe, WriteDeadLetters, WriteTranscripts, progress
    from voxbeam.beam._workers import close_worker_clients

    progress_id = f"chaos-{time.monotonic_ns()}"
    tracker = progress.register(progress_id, len(inputs))
    completions: list[float] = []
    done = threading.Event()

    def watch() -> None:
        seen = 0
        while not done.wait(0.02):
            while tracker.done > seen:
                seen += 1
                completions.append(time.monotonic())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started = time.monotonic()
    try:
        if on_start is not None:
            on_start(tracker)
        p = beam.Pipeline(runner=FnApiRunner())
        result = p | "Files" >> beam.Create(list(inputs)) | Transcribe(settings, progress_id=progress_id)
        result[TRANSCRIPTS] | WriteTranscripts(out, RUN)
        result[DEAD_LETTERS] | WriteDeadLetters(out, RUN)
        outcome = p.run()
        outcome.wait_until_finish()
    finally:
        done.set()
        watcher.join()
        progress.unregister(progress_id)
        close_worker_clients()
    wall = time.monotonic() - started

    def rows(name: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for path in sorted(Path(out, name, f"run={RUN}").glob("*.parquet")):
            found += pq.read_table(str(path)).to_pylist()
        return found

    metrics = {name: _counter(outcome, name) for name in ("retries", "sessions_opened", "transcribe_records")}
    return Run(rows(TRANSCRIPTS), rows(DEAD_LETTERS), wall, metrics, completions)


def dead_letter_key(row: dict[str, Any]) -> str:
    import json

    record = json.loads(row["input"])
    return str(record.get("uri") if isinstance(record, dict) else record)


@dataclass
class Accounting:
    missing: list[str]  # inputs in neither output
    duplicates: list[str]  # inputs in the outputs more than once
    dead_codes: collections.Counter[str]
    wrong: dict[str, tuple[str, str]]  # uri -> (transcript, the undisturbed run's)

    @property
    def exact(self) -> bool:
        return not self.missing and not self.duplicates


def account(run: Run, files: dict[str, int], reference: dict[int, str]) -> Accounting:
    """Every input in exactly one of transcripts or dead letters; transcripts against the reference."""
    seen = collections.Counter([r["source_uri"] for r in run.rows] + [dead_letter_key(d) for d in run.dead])
    wrong = {
        r["source_uri"]: (r["text"], reference[files[r["source_uri"]]])
        for r in run.rows
        if r["source_uri"] in files and r["text"] != reference[files[r["source_uri"]]]
    }
    return Accounting(
        missing=sorted(set(files) - set(seen)),
        duplicates=sorted(k for k, n in seen.items() if n > 1),
        dead_codes=collections.Counter(d["error_code"] for d in run.dead),
        wrong=wrong,
    )


def reference_texts(settings: Any, files: dict[str, int], out: str) -> dict[int, str]:
    """Transcripts of an undisturbed run: one file per clip, same server engine."""
    first: dict[int, str] = {}
    for uri, k in files.items():
        first.setdefault(k, uri)
    run = transcribe(settings, list(first.values()), out)
    by_uri = {r["source_uri"]: r["text"] for r in run.rows}
    if run.dead or set(by_uri) != set(first.values()):
        raise RuntimeError(f"the undisturbed run failed: {run.dead}")
    return {k: by_uri[uri] for k, uri in first.items()}


def chaos_settings(url: str, key: str, **kw: Any) -> Any:
    from voxbeam.beam import Secret, ServiceSettings

    kw.setdefault("result_timeout", 10.0)
    return ServiceSettings(endpoints=(url,), api_key=Secret(key), sessions_per_worker=SESSIONS, **kw)


# ---------------------------------------------------------------------------------------------
# The benchmark


def outage_run(server: Any, settings: Any, files: dict[str, int], out: str, down: float) -> tuple[Run, Outage]:
    """A pipeline over ``files`` while ``server`` is killed a third of the way in and down ``down`` s."""
    holder: list[Outage] = []

    def start(tracker: Any) -> None:
        outage = Outage(server, lambda: tracker.done >= len(files) // 3, down)
        holder.append(outage)
        outage.start()

    try:
        run = transcribe(settings, list(files), out, on_start=start)
    finally:
        for o in holder:
            o.finish()
    return run, holder[0]


def run(ctx: Any) -> Result:
    from voxbeam.client import CircuitPolicy
    from voxbeam.server.launcher import LocalServer

    policy = CircuitPolicy()
    res = Result(NAME, ctx.quick)
    downtimes = (5.0,) if ctx.quick else (30.0, 120.0)
    n = 60 if ctx.quick else N_FILES
    res.config = {"files": n, "sessions_per_worker": SESSIONS, "downtimes_s": list(downtimes), "clips": CLIP_TEXTS}
    work = ctx.workdir / "chaos"
    server = LocalServer(
        workers=2,
        extra_args=["--decoders_per_worker", "1", "--shutdown_grace", "1"],
        log_path=str(ctx.results_dir / "chaos-server.log"),
    )
    server.start()
    try:
        files = write_corpus(work / "in", render_clips(server), n)
        settings = chaos_settings(server.url, server.api_key)
        reference = reference_texts(settings, files, str(work / "reference"))
        for down in downtimes:
            tag = f"down_{down:g}s"
            log(f"chaos: {n} files, server killed a third of the way in and down for {down:g} s")
            result, outage = outage_run(server, settings, files, str(work / tag), down)
            acc = account(result, files, reference)
            assert outage.killed_at is not None
            after = [t for t in result.completions if outage.restarted_at and t > outage.restarted_at]
            recovery = after[0] - outage.restarted_at if after and outage.restarted_at else float("nan")
            res.compare(
                f"{tag}_dead_letters", f"dead letters, {down:g} s down", float(sum(acc.dead_codes.values())), 0, "<=",
                unit="records", note=", ".join(f"{c}: {k}" for c, k in acc.dead_codes.items()) or "none",
            )  # fmt: skip
            res.compare(
                f"{tag}_not_exactly_once", f"inputs missing or duplicated, {down:g} s down",
                float(len(acc.missing) + len(acc.duplicates)), 0, "<=", unit="records",
            )  # fmt: skip
            res.compare(
                f"{tag}_transcripts_differing", f"transcripts unlike the undisturbed run's, {down:g} s down",
                float(len(acc.wrong)), 0, "<=", unit="records",
            )  # fmt: skip
            res.measure(f"{tag}_recovery_s", recovery, "s", "restarted server ready -> next record done")
            res.measure(f"{tag}_wall_s", result.wall, "s", "the whole pipeline run")
            res.measure(f"{tag}_retries", float(result.metrics["retries"]), "", "retries (Beam metric)")
            res.measure(
                f"{tag}_sessions_opened", float(result.metrics["sessions_opened"]), "", "sessions opened (Beam metric)"
            )
            log(
                f"chaos {tag}: dead letters {dict(acc.dead_codes)}, missing {len(acc.missing)}, "
                f"duplicates {len(acc.duplicates)}, differing {len(acc.wrong)}, recovery {recovery:.1f} s, "
                f"wall {result.wall:.0f} s"
            )
            if acc.wrong:
                res.notes.append(f"{tag}: e.g. {list(acc.wrong.items())[:3]}")
    finally:
        server.stop()
    res.notes.append(
        f"Recovery is bounded by the circuit's open period ({policy.base_delay:g}-{policy.max_delay:g} s, doubling, "
        "jittered): the first probe after the server is back reopens the pool."
    )
    return res
