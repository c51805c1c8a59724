"""A streaming transcription job under a fixed publishing schedule (issue 26's floors).

One ``voxbeam serve`` (2 workers), the Pub/Sub emulator and gcp-storage-emulator. First the
server's batch capacity C (audio seconds per second): ``voxbeam transcribe --input`` over copies of
the bench's dense files (``bench._job``, the job's own wall time); then each file's own batch
transcription time t(f): the same job on that one file alone. Then ``voxbeam transcribe
--input_subscription`` runs as a command (as a user runs it, stopped with SIGINT) while a thread
publishes Cloud Storage notifications on a fixed schedule: ``LOW_S`` at 0.5 C, ``HIGH_S`` at
1.5 C, then nothing until every object is accounted for. Each notification is for a new object
(a distinct name, uploaded before the run), so the stream's dedup drops none of them.

- Latency of an object: the modification time of the Parquet file holding its row minus the time
  just before its notification was published. At 0.5 C its p95 must be at most
  ``window + 2 t(f)`` (judged per object: the p95 of latency / its own floor <= 1).
- At 1.5 C the backlog (objects published and not yet in an output) must grow, then drain once
  publishing stops, with nothing lost; the drain is reported (last publish -> last row's file,
  which includes waiting for the last window to close).
- Memory: the RSS of the stream's process tree and of the server's, sampled every second; the
  peak from the first minute on (quick: from the end of the first third of the schedule) minus
  the size at that mark (the median of the samples within 5 s of it), <= 100 MB each.
- Faults, in a second, shorter stream on the same server, published at 1x capacity (so that
  several records are in flight at the kill): 10 % of the notifications published twice (a
  redelivery, 0.5-5 s later), and the server SIGKILLed a third of the way in and started again on
  the same port. Every object must end in exactly one of transcripts or dead letters, once.

Publishing starts on a window boundary (windows are of publish time, aligned to the clock), and
the phases last whole windows. Quick mode scales the schedule down (10 s windows, 40 s + 30 s,
files of 12-24 s); full mode uses the issue's numbers (60 s windows, 3 min + 2 min, files of
30-60 s).
"""

from __future__ import annotations

import collections
import glob
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import corpus
from bench._common import ROOT, Result, log, percentile, tree
from bench._context import Context, calibrated, run_job

NAME = "streaming"
MB = 1e6
MEMORY_TARGET_MB = 100.0
REDELIVERED_SHARE = 0.10
FAULT_LOAD = 1.0  # the fault run publishes at this share of the batch capacity


@dataclass(frozen=True)
class Plan:
    window_s: int
    low_s: float  # publishing at 0.5x capacity
    high_s: float  # then at 1.5x
    lengths: list[float]  # the distinct dense files (seconds of speech)
    copies: int  # of each file in the capacity run
    memory_mark_s: float  # the memory baseline is taken this long after publishing starts
    fault_s: float  # the fault run's publishing, at FAULT_LOAD
    drain_timeout_s: float


PLANS = {
    True: Plan(10, 40.0, 30.0, [12.0, 18.0, 24.0], 3, (40.0 + 30.0) / 3, 40.0, 300.0),
    False: Plan(60, 180.0, 120.0, [30.0, 45.0, 60.0], 4, 60.0, 120.0, 1200.0),
}


# ---------------------------------------------------------------------------------------------
# Emulators and the stream


class Emulators:
    """gcp-storage-emulator (in this process) and the Pub/Sub emulator; the env vars set meanwhile."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self._old: dict[str, str | None] = {}

    def __enter__(self) -> Emulators:
        from tests import gcs, pubsub

        self._gcs, gcs_host = gcs.start()
        try:
            self._pubsub = pubsub.Emulator(str(self.log_path))
        except BaseException:
            self._gcs.stop()
            raise
        for k, v in (("STORAGE_EMULATOR_HOST", gcs_host), ("PUBSUB_EMULATOR_HOST", self._pubsub.host)):
            self._old[k] = os.environ.get(k)
            os.environ[k] = v
        from voxbeam.beam import storage

        storage.gcs_client.cache_clear()
        self.storage = storage.gcs_client()
        self.bucket = f"voxbeam-bench-{uuid.uuid4().hex[:8]}"
        self.storage.create_bucket(self.bucket)
        return self

    def env(self) -> dict[str, str]:
        return {k: os.environ[k] for k in self._old}

    def __exit__(self, *exc: object) -> None:
        from voxbeam.beam import storage

        for k, v in self._old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        storage.gcs_client.cache_clear()
        self._pubsub.stop()
        self._gcs.stop()


class Stream:
    """``python -m voxbeam transcribe --input_subscription ...`` as a child; its output to log files."""

    def __init__(self, server: Any, subscription: str, out: Path, window_s: int, env: dict[str, str], logs: Path):
        self.out = out
        self.stdout_path, self.stderr_path = logs.with_suffix(".stdout.log"), logs.with_suffix(".stderr.log")
        argv = [sys.executable, "-m", "voxbeam", "transcribe", "--input_subscription", subscription,
                "--output", str(out), "--endpoint", server.url, "--window_seconds", str(window_s)]  # fmt: skip
        full_env = {**os.environ, **env, "VOXNEXUS_API_KEY": server.api_key}
        self._stdout, self._stderr = open(self.stdout_path, "wb"), open(self.stderr_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(argv, stdout=self._stdout, stderr=self._stderr, cwd=ROOT, env=full_env)
        self.returncode: int | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 180.0) -> int:
        """SIGINT (Ctrl-C), then wait; killed if it does not end in ``timeout``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"streaming: the stream did not end {timeout:.0f} s after SIGINT; killing it")
                self.proc.kill()
                self.proc.wait()
        self._stdout.close()
        self._stderr.close()
        self.returncode = self.proc.returncode
        return self.returncode

    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    def stderr_tail(self, chars: int = 3000) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")[-chars:]


class Landed:
    """Rows the stream has written, read file by file as they appear (files are never rewritten)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.files: set[str] = set()
        self.where: dict[str, list[tuple[str, float]]] = collections.defaultdict(list)  # uri -> [(kind, mtime)]
        self.dead_codes: collections.Counter[str] = collections.Counter()

    def scan(self) -> None:
        import pyarrow.parquet as pq

        from bench.chaos import dead_letter_key

        for kind in ("transcripts", "dead_letters"):
            for path in sorted(glob.glob(str(self.out / "stream" / kind / "**" / "*.parquet"), recursive=True)):
                if path in self.files:
                    continue
                try:
                    mtime = os.path.getmtime(path)
                    rows = pq.read_table(path).to_pylist()
                except Exception:  # not readable yet: the next scan
                    continue
                self.files.add(path)
                for row in rows:
                    uri = row["source_uri"] if kind == "transcripts" else dead_letter_key(row)
                    self.where[uri].append((kind, mtime))
                    if kind == "dead_letters":
                        self.dead_codes[str(row.get("error_code"))] += 1

    def first(self, uri: str) -> float | None:
        found = self.where.get(uri)
        return min(m for _, m in found) if found else None


@dataclass
class Event:
    offset: float  # seconds after the schedule starts
    name: str
    generation: str
    source: int  # index of the distinct file
    phase: str  # "low", "high" (or "fault")
    redelivery: bool = False


class Publisher(threading.Thread):
    """Publishes ``events`` on their schedule; ``published[name]`` is the time just before its first publish."""

    def __init__(self, publisher: Any, topic: str, bucket: str, events: list[Event]) -> None:
        super().__init__(name="bench-publisher", daemon=True)
        self.publisher, self.topic, self.bucket, self.events = publisher, topic, bucket, events
        self.published: dict[str, float] = {}
        self.late: list[float] = []  # how far behind schedule each publish was
        self.error: BaseException | None = None
        self.t0 = 0.0

    def run(self) -> None:
        from tests.pubsub import notification

        try:
            for e in self.events:
                delay = self.t0 + e.offset - time.time()
                if delay > 0:
                    time.sleep(delay)
                self.late.append(max(0.0, time.time() - self.t0 - e.offset))
                data, attributes = notification(self.bucket, e.name, e.generation)
                now = time.time()
                self.publisher.publish(self.topic, data, **attributes).result(timeout=60)
                self.published.setdefault(e.name, now)
        except BaseException as exc:  # reported by the caller
            self.error = exc


def schedule(files: list[corpus.AudioFile], phases: list[tuple[str, float, float]], start: float = 0.0) -> list[Event]:
    """Events publishing ``rate`` audio seconds per second for ``seconds`` per phase, cycling through ``files``."""
    events: list[Event] = []
    t, i = start, 0
    for phase, seconds, rate in phases:
        end = t + seconds
        while t < end:
            f = i % len(files)
            events.append(Event(t, "", "", f, phase))
            t += files[f].seconds / rate
            i += 1
        t = end
    return events


def upload(em: Emulators, events: list[Event], files: list[corpus.AudioFile], prefix: str) -> None:
    """One new object per event (its name and generation filled in)."""
    data = [Path(f.path).read_bytes() for f in files]
    bucket = em.storage.bucket(em.bucket)
    for n, e in enumerate(events):
        e.name = f"{prefix}/{n:05d}-{Path(files[e.source].path).name}"
        blob = bucket.blob(e.name)
        blob.upload_from_string(data[e.source], content_type="audio/wav")
        e.generation = str(blob.generation)


def with_redeliveries(events: list[Event], share: float, rng: random.Random) -> list[Event]:
    """``events`` plus a second publish of ``share`` of them, 0.5-5 s after the first."""
    dups = [
        Event(e.offset + rng.uniform(0.5, 5.0), e.name, e.generation, e.source, e.phase, redelivery=True)
        for e in rng.sample(events, max(1, round(share * len(events))))
    ]
    return sorted(events + dups, key=lambda e: e.offset)


def rss(pid: int | None) -> float:
    if pid is None:
        return float("nan")
    total = 0.0
    for p in tree([pid]):
        try:
            total += p.memory_info().rss
        except Exception:
            continue
    return total


def server_rss(pid: int | None) -> dict[str, float]:
    """RSS of the server's front process and of each worker (and any other child), by label."""
    import psutil

    out: dict[str, float] = {}
    if pid is None:
        return out
    try:
        front = psutil.Process(pid)
        out["front"] = front.memory_info().rss
        for child in front.children(recursive=True):
            try:
                kind = "worker" if "spawn_main" in " ".join(child.cmdline()) else "child"
                out[f"{kind}-{child.pid}"] = child.memory_info().rss
            except psutil.Error:
                continue
    except psutil.Error:
        pass
    return out


# ---------------------------------------------------------------------------------------------
# One stream under a schedule


@dataclass
class StreamRun:
    events: list[Event]
    published: dict[str, float]
    landed: Landed
    t0: float  # time.time() the schedule started
    publish_end: float  # time.time() the last publish was made
    accounted_at: float | None  # time.time() every published object was in an output
    samples: list[tuple[float, float, float, int, float]]  # (t - t0, stream, server, backlog, server front)
    server_peaks: dict[str, float]  # server process label -> peak RSS (bytes)
    returncode: int
    stdout: str
    stderr_tail: str
    late_max: float


def stream_run(
    tag: str,
    ctx: Context,
    server: Any,
    em: Emulators,
    plan: Plan,
    files: list[corpus.AudioFile],
    events: list[Event],
    *,
    warm: Event,
    on_tick: Any = None,
) -> StreamRun:
    """Start a stream, wait for ``warm``'s row, publish ``events`` on schedule, wait until all are accounted for."""
    from tests.pubsub import notification, topic_and_subscription

    topic, subscription, publisher = topic_and_subscription(f"bench-{tag}-{uuid.uuid4().hex[:6]}")
    out = ctx.workdir / f"streaming-{tag}"
    stream = Stream(server, subscription, out, plan.window_s, em.env(), ctx.results_dir / f"streaming-{tag}")
    landed = Landed(out)
    warm_uri = f"gs://{em.bucket}/{warm.name}"
    try:
        # Warm-up: one object through the whole stream before the schedule starts (Beam start-up, first window).
        data, attributes = notification(em.bucket, warm.name, warm.generation)
        publisher.publish(topic, data, **attributes).result(timeout=60)
        deadline = time.monotonic() + 120 + 3 * plan.window_s
        while landed.first(warm_uri) is None:
            if not stream.alive():
                raise RuntimeError(f"the stream exited ({stream.proc.returncode}): {stream.stderr_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the warm-up object never landed: {stream.stderr_tail()}")
            time.sleep(0.5)
            landed.scan()
        # Start on a window boundary, so that each phase fills whole windows (phase lengths are multiples of
        # the window): a window that held both 0.5x and 1.5x objects would close with the slower ones.
        t0 = (time.time() // plan.window_s + 1) * plan.window_s + 0.05
        wait = t0 - time.time()
        log(f"streaming {tag}: warm-up object landed; publishing {len(events)} notifications in {wait:.0f} s")
        time.sleep(max(0.0, t0 - time.time()))
        pub = Publisher(publisher, topic, em.bucket, events)
        pub.t0 = t0
        pub.start()
        samples: list[tuple[float, float, float, int, float]] = []
        peaks: dict[str, float] = {}
        names = {e.name for e in events}
        publish_end = 0.0
        accounted_at = None
        deadline = None
        while True:
            time.sleep(1.0)
            landed.scan()
            now = time.time()
            published = [n for n in list(pub.published) if n in names]
            backlog = sum(1 for n in published if f"gs://{em.bucket}/{n}" not in landed.where)
            parts = server_rss(server.pid)
            for k, v in parts.items():
                peaks[k] = max(peaks.get(k, 0.0), v)
            samples.append((now - t0, rss(stream.pid), sum(parts.values()), backlog, parts.get("front", 0.0)))
            if on_tick is not None:
                on_tick(now - t0)
            if pub.error is not None:
                raise RuntimeError(f"publishing failed: {pub.error!r}")
            if not stream.alive():
                raise RuntimeError(f"the stream exited ({stream.proc.returncode}): {stream.stderr_tail()}")
            if not pub.is_alive():
                if deadline is None:
                    publish_end = max(pub.published.values(), default=now)
                    deadline = time.monotonic() + plan.drain_timeout_s
                    log(f"streaming {tag}: publishing done; backlog {backlog}, waiting for it to drain")
                if backlog == 0:
                    accounted_at = now
                    break
                if time.monotonic() > deadline:
                    log(f"streaming {tag}: {backlog} objects still unaccounted after {plan.drain_timeout_s:.0f} s")
                    break
            if len(samples) % 15 == 0:
                log(f"streaming {tag}: t={now - t0:.0f} s, {len(published)} published, backlog {backlog}")
    finally:
        rc = stream.stop()
        publisher.stop()
    landed.scan()
    return StreamRun(
        events=events,
        published=dict(pub.published),
        landed=landed,
        t0=t0,
        publish_end=publish_end,
        accounted_at=accounted_at,
        samples=samples,
        server_peaks=peaks,
        returncode=rc,
        stdout=stream.stdout(),
        stderr_tail=stream.stderr_tail(),
        late_max=max(pub.late, default=0.0),
    )


def accounting(run: StreamRun, bucket: str, warm: Event) -> tuple[list[str], list[str]]:
    """(missing, duplicated): published objects in no output, and in the outputs more than once."""
    uris = {f"gs://{bucket}/{n}" for n in [*run.published, warm.name]}
    missing = sorted(u for u in uris if u not in run.landed.where)
    duplicated = sorted(u for u, found in run.landed.where.items() if len(found) > 1)
    return missing, duplicated


# ---------------------------------------------------------------------------------------------
# The benchmark


def run(ctx: Context) -> Result:
    from voxbeam.server.launcher import LocalServer

    res = Result(NAME, ctx.quick)
    plan = PLANS[ctx.quick]
    res.config = {
        "window_s": plan.window_s,
        "low_s": plan.low_s,
        "high_s": plan.high_s,
        "file_seconds": plan.lengths,
        "capacity_copies": plan.copies,
        "memory_mark_s": plan.memory_mark_s,
        "fault_publish_s": plan.fault_s,
        "redelivered_share": REDELIVERED_SHARE,
        "fault_load": FAULT_LOAD,
        "server_workers": 2,
    }
    work = ctx.workdir / "streaming"
    files = corpus.dense_files(work / "audio", plan.lengths, prefix="stream")
    server = LocalServer(workers=2, log_path=str(ctx.results_dir / "streaming-server.log"))
    server.start()
    try:
        advertised = calibrated(server)["audio_capacity"]
        capacity, per_file = _batch(ctx, res, server, files, plan, work)
        if isinstance(advertised, int | float):
            res.measure("advertised_capacity_audio_s_per_s", float(advertised), "audio s / s", "server's /healthz")
        with Emulators(ctx.results_dir / "streaming-pubsub.log") as em:
            _main_run(ctx, res, server, em, plan, files, capacity, per_file)
            _fault_run(ctx, res, server, em, plan, files, capacity)
    finally:
        server.stop()
    return res


def _batch(
    ctx: Context, res: Result, server: Any, files: list[corpus.AudioFile], plan: Plan, work: Path
) -> tuple[float, list[float]]:
    """The server's batch capacity (audio s / s of the batch job) and each file's own batch time."""
    cap_dir = work / "capacity-in"
    cap_dir.mkdir(parents=True, exist_ok=True)
    audio = 0.0
    for c in range(plan.copies):
        for f in files:
            shutil.copy(f.path, cap_dir / f"c{c}-{Path(f.path).name}")
            audio += f.seconds
    endpoint = ["--endpoint", server.url, "--api_key", server.api_key]
    job = run_job(ctx, "transcribe", ["--input", str(cap_dir), "--output", str(work / "capacity-out"), *endpoint],
                  server=server)  # fmt: skip
    n = plan.copies * len(files)
    if job.out.get("written") != n:
        res.errors.append(f"capacity run: {job.out.get('written')} of {n} written; {job.out.get('dead_letters')}")
    capacity = audio / job.wall
    res.measure("batch_capacity_audio_s_per_s", capacity, "audio s / s", f"batch job over {n} files ({audio:.0f} s)")
    res.measure("batch_capacity_wall_s", job.wall, "s", "batch job (jobs.run, in a child) over the capacity files")
    log(f"streaming: batch capacity {capacity:.2f} audio s/s ({audio:.0f} s of audio in {job.wall:.1f} s)")
    per_file = []
    for i, f in enumerate(files):
        one = work / f"one-{i}"
        one.mkdir(parents=True, exist_ok=True)
        shutil.copy(f.path, one / Path(f.path).name)
        j = run_job(ctx, "transcribe", ["--input", str(one), "--output", str(work / f"one-{i}-out"), *endpoint],
                    server=server)  # fmt: skip
        per_file.append(j.wall)
        res.measure(f"file{i}_batch_s", j.wall, "s", f"batch job on the {f.seconds:.0f} s file alone")
    log(f"streaming: per-file batch times {[round(t, 1) for t in per_file]} s for {[f.seconds for f in files]} s")
    return capacity, per_file


def _memory(res: Result, run: StreamRun, plan: Plan) -> None:
    """Peak from the mark on minus the size at the mark (the median of the samples within 5 s of it).

    The server's RSS is a sawtooth: each Whisper decode takes tens of MB for a second or two and
    gives them back. A single sample at the mark lands anywhere on it; the median of the eleven
    around it is the process's size there. Beside it: the peak before the mark (the early peak)
    and the size after the drain (the last 5 samples), which show growth that stays.
    """
    after = [s for s in run.samples if s[0] >= plan.memory_mark_s]
    around = [s for s in run.samples if abs(s[0] - plan.memory_mark_s) <= 5.0]
    before = [s for s in run.samples if s[0] < plan.memory_mark_s]
    if not after or not around:
        res.errors.append("memory: the run ended before the mark")
        return
    for key, idx, what in (("pipeline", 1, "stream process tree"), ("server", 2, "server process tree")):
        base = percentile([s[idx] for s in around], 50)
        peak = max(s[idx] for s in after)
        res.measure(f"{key}_rss_at_mark_mib", base / 2**20, "MiB", f"{what} at {plan.memory_mark_s:.0f} s (median)")
        res.measure(f"{key}_peak_rss_mib", max(s[idx] for s in run.samples) / 2**20, "MiB", f"{what}, whole run")
        if before:
            early = max(s[idx] for s in before)
            res.measure(f"{key}_peak_over_early_peak_mb", (peak - early) / MB, "MB", f"{what}: peak after - before")
        end = percentile([s[idx] for s in run.samples[-5:]], 50)
        res.measure(f"{key}_end_over_mark_mb", (end - base) / MB, "MB", f"{what}: after the drain minus at the mark")
        res.compare(
            f"{key}_memory_growth", f"{what}: peak from the mark on minus RSS at the mark", (peak - base) / MB,
            MEMORY_TARGET_MB, "<=", unit="MB",
        )  # fmt: skip


def _main_run(
    ctx: Context,
    res: Result,
    server: Any,
    em: Emulators,
    plan: Plan,
    files: list[corpus.AudioFile],
    capacity: float,
    per_file: list[float],
) -> None:
    events = schedule(files, [("low", plan.low_s, 0.5 * capacity), ("high", plan.high_s, 1.5 * capacity)])
    warm = Event(0.0, "", "", 0, "warm")
    upload(em, [warm, *events], files, "main")
    audio = sum(files[e.source].seconds for e in events)
    log(f"streaming: {len(events)} notifications ({audio:.0f} s of audio) over {plan.low_s + plan.high_s:.0f} s")
    run = stream_run("main", ctx, server, em, plan, files, events, warm=warm)
    res.measure("published", float(len(events)), "objects", "notifications published on the schedule")
    res.measure("published_audio_s", audio, "s", "their audio")
    res.measure("publish_late_max_s", run.late_max, "s", "how far behind its schedule a publish was, at worst")
    if run.returncode != 130:
        res.errors.append(f"main stream exited {run.returncode}, not 130: {run.stderr_tail[-1500:]}")

    # Latency at 0.5x
    uri = {e.name: f"gs://{em.bucket}/{e.name}" for e in events}
    low = [e for e in events if e.phase == "low"]
    lat, over = [], []
    for e in low:
        landed = run.landed.first(uri[e.name])
        if landed is None or e.name not in run.published:
            continue
        latency = landed - run.published[e.name]
        lat.append(latency)
        over.append(latency / (plan.window_s + 2 * per_file[e.source]))
    res.measure("low_latency_p50_s", percentile(lat, 50), "s", "publish -> row's file, at 0.5x capacity")
    res.measure("low_latency_p95_s", percentile(lat, 95), "s", "publish -> row's file, at 0.5x capacity")
    res.measure("low_latency_max_s", max(lat, default=float("nan")), "s", "publish -> row's file, at 0.5x capacity")
    res.measure("low_floor_max_s", plan.window_s + 2 * max(per_file), "s", "window + 2 x the longest file's batch time")
    res.compare(
        "low_latency_p95_vs_floor", "p95 of latency / (window + 2 x the file's own batch time), at 0.5x",
        percentile(over, 95), 1.0, "<=", unit="x", note=f"{len(lat)} objects",
    )  # fmt: skip
    res.series["objects"] = [
        [round(e.offset, 1), e.phase, e.source, round(run.landed.first(uri[e.name]) - run.published[e.name], 2)]
        for e in events
        if e.name in run.published and run.landed.first(uri[e.name]) is not None
    ]
    res.notes.append("series.objects: [publish offset s, phase, file index, publish -> row's file s]")
    high = [e for e in events if e.phase == "high"]
    hl = [run.landed.first(uri[e.name]) for e in high]
    hlat = [t - run.published[e.name] for e, t in zip(high, hl, strict=True) if t is not None]
    res.measure("high_latency_p50_s", percentile(hlat, 50), "s", "publish -> row's file, at 1.5x capacity")
    res.measure("high_latency_p95_s", percentile(hlat, 95), "s", "publish -> row's file, at 1.5x capacity")

    # Backlog at 1.5x, and the drain
    def backlog_at(t: float) -> int:
        return next((s[3] for s in run.samples if s[0] >= t), run.samples[-1][3] if run.samples else 0)

    start_high, end_high = backlog_at(plan.low_s), backlog_at(plan.low_s + plan.high_s)
    peak = max((s[3] for s in run.samples), default=0)
    res.measure("backlog_at_high_start", float(start_high), "objects", "published, not yet in an output")
    res.measure("backlog_at_publish_end", float(end_high), "objects", "published, not yet in an output")
    res.measure("backlog_peak", float(peak), "objects", "published, not yet in an output")
    res.compare("backlog_growth", "backlog at the end of 1.5x minus at its start", float(end_high - start_high),
                1.0, ">=", unit="objects")  # fmt: skip
    last = max((run.landed.first(u) or 0.0 for u in uri.values()), default=0.0)
    if run.accounted_at is not None:
        res.measure("drain_s", last - run.publish_end, "s", "last publish -> last row's file (includes a window)")
    missing, duplicated = accounting(run, em.bucket, warm)
    res.compare("lost", "published objects in no output after the drain", float(len(missing)), 0.0, "<=",
                unit="objects", note=", ".join(missing[:5]))  # fmt: skip
    res.compare("duplicated", "objects in the outputs more than once", float(len(duplicated)), 0.0, "<=",
                unit="objects", note=", ".join(duplicated[:5]))  # fmt: skip
    res.measure("dead_letters", float(sum(run.landed.dead_codes.values())), "records", "main run, no faults")
    if run.landed.dead_codes:
        res.notes.append(f"main run dead letters: {dict(run.landed.dead_codes)}")
    _memory(res, run, plan)
    for label, top in sorted(run.server_peaks.items()):
        res.measure(f"server_{label.split('-')[0]}_{label.split('-')[-1]}_peak_mib", top / 2**20, "MiB",
                    f"server {label} peak RSS, main run")  # fmt: skip
    res.series["main"] = [
        [round(t, 1), round(a / 2**20, 1), round(b / 2**20, 1), n, round(f / 2**20, 1)] for t, a, b, n, f in run.samples
    ]
    res.notes.append(
        "series.main: [seconds since publishing began, stream RSS MiB, server RSS MiB, backlog, server front RSS MiB]"
    )
    summary = [ln.strip() for ln in run.stdout.splitlines() if ln.strip()]
    res.notes.append("main stream summary: " + " | ".join(summary[-8:]))
    log(
        f"streaming main: latency p50 {percentile(lat, 50):.1f} s p95 {percentile(lat, 95):.1f} s "
        f"(p95 of latency/floor {percentile(over, 95):.2f}); backlog {start_high} -> {end_high} (peak {peak}); "
        f"drain {last - run.publish_end:.1f} s; missing {len(missing)}, duplicated {len(duplicated)}"
    )


def _fault_run(
    ctx: Context, res: Result, server: Any, em: Emulators, plan: Plan, files: list[corpus.AudioFile], capacity: float
) -> None:
    from bench.chaos import Outage

    rng = random.Random(26)
    # At 1x capacity, so that several records are in flight when the server is killed.
    first = schedule(files, [("fault", plan.fault_s, FAULT_LOAD * capacity)])
    warm = Event(0.0, "", "", 0, "warm")
    upload(em, [warm, *first], files, "fault")
    events = with_redeliveries(first, REDELIVERED_SHARE, rng)
    dups = sum(e.redelivery for e in events)
    kill_at = time.time() + 1e9  # set once publishing starts
    outage = Outage(server, lambda: time.time() >= kill_at, down=1.0)
    outage.start()

    def tick(t: float) -> None:
        nonlocal kill_at
        if kill_at > time.time() + 1e8:
            kill_at = time.time() - t + plan.fault_s / 3

    log(f"streaming faults: {len(first)} objects, {dups} published twice, server killed at {plan.fault_s / 3:.0f} s")
    try:
        run = stream_run("faults", ctx, server, em, plan, files, events, warm=warm, on_tick=tick)
    finally:
        outage.finish()
    if outage.killed_at is None:
        res.errors.append("faults: the server was never killed")
    if run.returncode != 130:
        res.errors.append(f"fault stream exited {run.returncode}, not 130: {run.stderr_tail[-1500:]}")
    missing, duplicated = accounting(run, em.bucket, warm)
    res.measure("faults_objects", float(len(first) + 1), "objects", "distinct objects published (with the warm-up)")
    res.measure("faults_redeliveries_published", float(dups), "messages", "second publishes of a notification")
    m = re.search(r"redeliveries dropped: (\d+)", run.stdout)
    res.measure("faults_redeliveries_dropped", float(m.group(1)) if m else 0.0, "messages", "the stream's summary")
    dead = sum(run.landed.dead_codes.values())
    res.measure("faults_dead_letters", float(dead), "records", ", ".join(f"{k}: {v}" for k, v in
                run.landed.dead_codes.items()) or "none")  # fmt: skip
    res.measure("faults_transcripts", float(sum(1 for f in run.landed.where.values() if f[0][0] == "transcripts")),
                "records", "objects transcribed")  # fmt: skip
    res.compare(
        "faults_not_exactly_once", "objects missing from both outputs or in them more than once (redeliveries, kill)",
        float(len(missing) + len(duplicated)), 0.0, "<=", unit="objects",
        note=f"missing {missing[:3]}, duplicated {duplicated[:3]}",
    )  # fmt: skip
    if run.accounted_at is not None and outage.killed_at is not None:
        res.measure("faults_drain_s", run.accounted_at - run.publish_end, "s", "last publish -> all accounted for")
    summary = [ln.strip() for ln in run.stdout.splitlines() if ln.strip()]
    res.notes.append("fault stream summary: " + " | ".join(summary[-8:]))
    log(
        f"streaming faults: {len(first) + 1} objects, {dups} redelivered ({m.group(1) if m else '?'} dropped), "
        f"dead letters {dict(run.landed.dead_codes)}, missing {len(missing)}, duplicated {len(duplicated)}"
    )
