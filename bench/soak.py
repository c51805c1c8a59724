"""Memory under mixed load on one replica with the Kubernetes settings (issue 25).

One ``voxbeam serve`` as deploy/k8s runs it (2 workers, 32 sessions, its 2 GiB limit given as
``--memory_limit_mb``, so the worker watchdog has the Deployment's ceiling). First, one record at a
time in one session: 800 unpunctuated English words (Piper), then 5,000 CJK characters (eSpeak NG):
each process's peak and after-session memory against its idle. Then the soak: for ``DURATION``
seconds at once
- bulk transcription (4 sessions uploading dense speech as fast as the server takes it),
- 2 live streams (100 ms chunks at real time), or as many as the replica's /healthz says it can keep
  in real time when that is fewer (admission by load refuses the rest with SERVER_BUSY: a client
  sized by /healthz does not ask for them),
- synthesis jobs (``voxbeam synthesize``, one after another) whose records include the
  adversarial shapes: long unpunctuated text, CJK (to a Chinese and to the English voice),
  emoji, number tables, text that is only punctuation, and an empty line;
sampling every process's RSS each second. Figures: the replica's peak (all processes summed)
against 0.8 of the limit, records lost (each synthesis record must end in the manifest or the
dead letters; each transcription must return), worker replacements, and how flat the memory is
over the last 10 minutes (the mean of their last minute over the mean of their first).
"""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any

import psutil

from bench import corpus
from bench._common import Result, log
from bench._context import Context, calibrated, run_job
from voxbeam.errors import ServerBusyError

NAME = "soak"
LIMIT_MIB = 2048  # deploy/k8s/deployment.yaml: resources.limits.memory
K8S_ARGS = ["--max_sessions", "32", "--memory_limit_mb", str(LIMIT_MIB)]
DURATION = {True: 150.0, False: 900.0}  # quick, full
LIVE_STREAMS = 2
FLAT_WINDOW_S = 600.0
MIB = 1 << 20
PROSE = re.sub(r"[^\w\s']", "", " ".join(corpus.SENTENCES)).lower().split()
HANZI = "我们今天下午去公园散步天气很好阳光明媚孩子们在草地上玩耍老人坐在长椅上聊天"


def adversarial_records(n: int) -> list[dict[str, Any]]:
    """Synthesis records: ordinary sentences and every shape that once made a worker grow."""
    words = (PROSE * 40)[:800]
    shapes: list[dict[str, Any]] = [
        {"text": " ".join(words)},  # 800 words, no punctuation
        {"text": (HANZI * 120)[:5000], "voice_id": "vl-xiaoxiao"},
        {"text": (HANZI * 10)[:300]},  # CJK to the English voice: refused, not spelled out for minutes
        {"text": "Great news 🎉🎉 " * 20 + "😀" * 30},
        {"text": " | ".join(f"{i} | {i * i} | {i * 3.5:.1f}" for i in range(60))},
        {"text": "... ??? !!! --- ;;; ,,,"},
        {"text": ""},
    ]
    out = []
    for i in range(n):
        record = shapes[i % len(shapes)] if i % 2 == 0 else {"text": corpus.SENTENCES[i % len(corpus.SENTENCES)]}
        out.append({"id": f"r{i:04d}", **record})
    return out


class Sampler:
    """Every second: each server process's RSS; keeps the replica total over time and each pid's peak."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.timeline: list[tuple[float, float]] = []  # (seconds since start, summed MiB)
        self.peak: dict[str, float] = {}  # process label -> MiB
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = 0.0

    def snapshot(self) -> dict[str, float]:
        front = psutil.Process(self.pid)
        out = {"front": front.memory_info().rss / MIB}
        for child in front.children():
            try:
                if "spawn_main" in " ".join(child.cmdline()):
                    out[f"worker-{child.pid}"] = child.memory_info().rss / MIB
            except psutil.Error:
                continue
        return out

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            snap = self.snapshot()
            self.timeline.append((time.monotonic() - self._t0, sum(snap.values())))
            for k, v in snap.items():
                self.peak[k] = max(self.peak.get(k, 0.0), v)

    def __enter__(self) -> Sampler:
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def one_record(server: Any, text: str, voice: str) -> dict[str, float]:
    """Each process's peak and after-session memory over its idle (MiB) while one session renders ``text``."""
    from voxbeam.client import ClientConfig, SyncSpeechClient, TtsParams

    sampler = Sampler(server.pid)
    idle = sampler.snapshot()
    with sampler, SyncSpeechClient(ClientConfig(endpoints=(server.url,), api_key=server.api_key)) as client:
        client.synthesize(text, TtsParams(voice_id=voice, format="pcm"))
    deadline = time.monotonic() + 30
    after = sampler.snapshot()
    while time.monotonic() < deadline and any(after.get(k, 0) - v > 100 for k, v in idle.items()):
        time.sleep(1)
        after = sampler.snapshot()
    return {
        "peak_over_idle": max(sampler.peak.get(k, v) - v for k, v in idle.items()),
        "after_over_idle": max(after.get(k, v) - v for k, v in idle.items()),
    }


def run(ctx: Context) -> Result:
    from voxbeam.client import ClientConfig, SyncSpeechClient
    from voxbeam.server.launcher import LocalServer

    res = Result(NAME, ctx.quick)
    duration = DURATION[ctx.quick]
    res.config = {"duration_s": duration, "server_args": K8S_ARGS, "workers": 2, "limit_mib": LIMIT_MIB}
    files = corpus.dense_files(ctx.workdir / "soak", [30.0, 45.0, 60.0])
    live_pcm = corpus.read_wav(files[0].path)
    records = adversarial_records(28 if ctx.quick else 56)
    src = ctx.workdir / "soak-records.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    server = LocalServer(workers=2, extra_args=K8S_ARGS, log_path=str(ctx.results_dir / "soak-server.log"))
    server.start()
    lost: list[str] = []
    counts = {"transcriptions": 0, "live": 0, "live_refused": 0, "live_streams": 0, "synthesis_runs": 0, "records": 0}
    try:
        config = ClientConfig(endpoints=(server.url,), api_key=server.api_key, pool_size=4)
        calibrated(server)  # idle is after the workers' speed measurement at start
        with SyncSpeechClient(config) as warm:  # idle, as the issue defines it
            warm.synthesize("Good morning, and thank you for calling.")
            warm.transcribe(live_pcm[: 5 * 32000])
        for key, text, voice in (
            ("unpunctuated_800_words", " ".join((PROSE * 40)[:800]), "vl-joe"),
            ("cjk_5000_chars", (HANZI * 120)[:5000], "vl-xiaoxiao"),
        ):
            one = one_record(server, text, voice)
            res.measure(f"{key}_peak_over_idle_mib", one["peak_over_idle"], "MiB", "worst process, peak over its idle")
            res.measure(f"{key}_after_over_idle_mib", one["after_over_idle"], "MiB", "worst process, after the session")
            log(f"soak: one record {key}: {one}")
        stop = threading.Event()

        def bulk() -> None:
            with SyncSpeechClient(config) as client:
                while not stop.is_set():
                    for f in files:
                        try:
                            client.transcribe(corpus.read_wav(f.path))
                            counts["transcriptions"] += 1
                        except Exception as exc:
                            lost.append(f"bulk {f.path}: {exc}")

        def live() -> None:
            cfg = ClientConfig(endpoints=(server.url,), api_key=server.api_key, pool_size=1, realtime_pacing=True)
            with SyncSpeechClient(cfg) as client:
                while not stop.is_set():
                    try:
                        client.transcribe(live_pcm[: 20 * 32000])
                        counts["live"] += 1
                    except ServerBusyError as exc:  # refused by admission, with a clear error: not lost
                        counts["live_refused"] += 1
                        log(f"soak: live session refused: {exc}")
                    except Exception as exc:
                        lost.append(f"live: {exc}")

        lives = max(1, min(LIVE_STREAMS, server.health()["live_capacity"] or LIVE_STREAMS))
        counts["live_streams"] = lives
        threads = [threading.Thread(target=bulk, daemon=True)] + [
            threading.Thread(target=live, daemon=True) for _ in range(lives)
        ]
        started = time.monotonic()
        with Sampler(server.pid) as sampler:
            for t in threads:
                t.start()
            run_index = 0
            while time.monotonic() - started < duration:
                out = ctx.workdir / f"soak-out-{run_index}"
                argv = [str(src), "--output", str(out), "--endpoint", server.url, "--api_key", server.api_key,
                        "--max_dead_letter_fraction", "1"]  # fmt: skip
                job = run_job(ctx, "synthesize", argv, server=server)
                ended = int(job.out.get("written", 0)) + sum(job.out.get("dead_letters", {}).values())
                if ended != len(records):
                    lost.append(f"synthesis run {run_index}: {ended} of {len(records)} records accounted for")
                counts["synthesis_runs"] += 1
                counts["records"] += len(records)
                run_index += 1
            stop.set()
            for t in threads:
                t.join(300)
        health = server.health()
    finally:
        server.stop()
    _figures(res, sampler, health, lost, counts)
    return res


def _figures(res: Result, sampler: Sampler, health: dict[str, Any], lost: list[str], counts: dict[str, int]) -> None:
    peak = max(v for _, v in sampler.timeline)
    res.measure("replica_peak_mib", peak, "MiB", "every server process summed, peak")
    for label, v in sorted(sampler.peak.items()):
        res.measure(f"peak_{label.split('-')[0]}_mib", v, "MiB", f"peak RSS of the {label.split('-')[0]} process(es)")
    res.compare("peak_vs_limit", "replica peak RSS / the Deployment's memory limit", peak / LIMIT_MIB, 0.8, "<=")
    res.compare("records_lost", "records or files that ended nowhere", float(len(lost)), 0.0, "<=", unit="records",
                note="; ".join(lost[:5]))  # fmt: skip
    res.measure("worker_replacements", float(health.get("worker_replacements", 0)), "workers", "memory watchdog")
    end = sampler.timeline[-1][0]
    window = [(t, v) for t, v in sampler.timeline if t >= end - FLAT_WINDOW_S]
    first = [v for t, v in window if t < window[0][0] + 60]
    last = [v for t, v in window if t > end - 60]
    res.compare(
        "memory_growth_last_10_min",
        "replica RSS: mean of the window's last minute / mean of its first (the last 10 min, or the whole run)",
        (sum(last) / len(last)) / (sum(first) / len(first)),
        1.05,
        "<=",
    )
    res.series["replica_mib"] = [[round(t, 1), round(v, 1)] for t, v in sampler.timeline]
    res.notes.append(
        f"{counts['transcriptions']} bulk files, {counts['live']} live streams ({counts['live_streams']} at a time, "
        f"{counts['live_refused']} refused by admission), {counts['synthesis_runs']} synthesis runs "
        f"({counts['records']} records) during the soak."
    )
