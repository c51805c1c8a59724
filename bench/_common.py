"""Shared machinery: results with ratios and targets, CPU and memory meters, machine facts.

Every figure the suite reports is a ratio against a baseline measured in the same run, because
the machine is shared and absolute times drift with whatever else is running.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import psutil

Op = Literal[">=", "<="]
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RESULTS = ROOT / "bench" / "results"


def finite(x: float | int | None) -> bool:
    return x is not None and isinstance(x, int | float) and math.isfinite(x)


def ratio(a: float, b: float) -> float:
    """a / b, or NaN when either side is missing or b is zero (never inf)."""
    if not finite(a) or not finite(b) or b == 0:
        return math.nan
    return a / b


@dataclass
class Ratio:
    """One reported figure: ``value`` compared with ``target`` by ``op``."""

    key: str
    description: str
    value: float
    target: float | None
    op: Op = ">="
    subject: str = ""
    baseline: str = ""
    note: str = ""
    unit: str = "x"  # "x" for a ratio; absolute targets name their unit (ms, GiB, ...)

    @property
    def passed(self) -> bool | None:
        if self.target is None or not finite(self.value):
            return None
        return self.value >= self.target if self.op == ">=" else self.value <= self.target

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "description": self.description,
            "value": self.value,
            "target": self.target,
            "op": self.op,
            "pass": self.passed,
            "subject": self.subject,
            "baseline": self.baseline,
            "note": self.note,
            "unit": self.unit,
        }


@dataclass
class Result:
    """What one benchmark writes to ``results/<name>.json``."""

    name: str
    quick: bool
    measurements: dict[str, dict[str, Any]] = field(default_factory=dict)
    ratios: list[Ratio] = field(default_factory=list)
    series: dict[str, Any] = field(default_factory=dict)
    plots: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    def measure(self, key: str, value: float, unit: str, description: str) -> float:
        """Record a measurement; non-finite values are recorded as errors instead."""
        if not finite(value):
            self.errors.append(f"{key}: no finite value ({value!r})")
            return math.nan
        self.measurements[key] = {"value": float(value), "unit": unit, "description": description}
        return float(value)

    def value(self, key: str) -> float:
        m = self.measurements.get(key)
        return float(m["value"]) if m else math.nan

    def compare(
        self,
        key: str,
        description: str,
        value: float,
        target: float | None,
        op: Op = ">=",
        *,
        subject: str = "",
        baseline: str = "",
        note: str = "",
        unit: str = "x",
    ) -> None:
        """Record a ratio; one that could not be computed becomes an error, not a NaN in the JSON."""
        if not finite(value):
            self.errors.append(f"ratio {key} could not be computed ({description})")
            return
        self.ratios.append(Ratio(key, description, float(value), target, op, subject, baseline, note, unit))

    def as_dict(self, started: float, machine: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": self.name,
            "quick": self.quick,
            "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "duration_s": round(time.monotonic() - started, 2),
            "machine": machine,
            "config": self.config,
            "measurements": self.measurements,
            "ratios": [r.as_dict() for r in self.ratios],
            "passed": all(r.passed is not False for r in self.ratios),
            "series": _clean(self.series),
            "plots": self.plots,
            "notes": self.notes,
            "errors": self.errors,
        }


def _clean(obj: Any) -> Any:
    """Replace non-finite floats (JSON has no NaN) with None, recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def machine_info() -> dict[str, Any]:
    """Facts about the machine a reader needs to judge the figures."""
    cpu_model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu_model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "")
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count() or 1,
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 2),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


# ---------------------------------------------------------------------------
# Meters


def tree(pids: Iterable[int]) -> list[psutil.Process]:
    """The processes with these ids and all their descendants (those still alive)."""
    out: dict[int, psutil.Process] = {}
    for pid in pids:
        try:
            p = psutil.Process(pid)
            out[p.pid] = p
            for c in p.children(recursive=True):
                out[c.pid] = c
        except psutil.Error:
            continue
    return list(out.values())


def cpu_seconds(procs: Iterable[psutil.Process]) -> float:
    """user + system CPU seconds of ``procs`` (excluding children not in the list)."""
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            continue
    return total


class CpuMeter:
    """CPU seconds spent by process trees between ``start`` and ``stop``; also the whole machine's.

    Processes that appear during the interval are picked up when sampled (``poll``), so worker
    processes started mid-run still count; processes that exit before a sample are lost, which is
    why callers keep long-lived processes (server workers, pools) in view.
    """

    def __init__(self, roots: Iterable[int]) -> None:
        self.roots = list(roots)
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._procs: dict[int, psutil.Process] = {}
        self._machine0 = 0.0
        self.machine_cpu = 0.0
        self.wall = 0.0
        self._t0 = 0.0

    def _sample(self) -> None:
        for p in tree(self.roots):
            try:
                t = p.cpu_times()
            except psutil.Error:
                continue
            key = p.pid
            if key not in self._procs:
                self._procs[key] = p
                # A process first seen now started during the interval only if it is young.
                started_inside = p.create_time() >= self._wall_start
                self._first[key] = 0.0 if started_inside else t.user + t.system
            self._last[key] = t.user + t.system

    def start(self) -> CpuMeter:
        self._wall_start = time.time()
        self._t0 = time.monotonic()
        m = psutil.cpu_times()
        self._machine0 = m.user + m.system + getattr(m, "nice", 0.0)
        self._sample()
        return self

    def poll(self) -> None:
        self._sample()

    def stop(self) -> float:
        self._sample()
        self.wall = time.monotonic() - self._t0
        m = psutil.cpu_times()
        self.machine_cpu = m.user + m.system + getattr(m, "nice", 0.0) - self._machine0
        return self.cpu

    @property
    def cpu(self) -> float:
        return sum(self._last[k] - self._first[k] for k in self._last)

    def cpu_of(self, pid: int) -> float:
        """CPU seconds of one process (0 if never seen)."""
        return self._last.get(pid, 0.0) - self._first.get(pid, 0.0)


@dataclass
class MemSample:
    t: float
    rss: float  # bytes, summed over the tree
    pss: float | None


class MemSampler:
    """Samples the summed RSS (and optionally PSS) of process trees in a background thread."""

    def __init__(self, roots: Iterable[int], interval: float = 0.25, pss: bool = False) -> None:
        self.roots = list(roots)
        self.interval = interval
        self.pss = pss
        self.samples: list[MemSample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-mem", daemon=True)
        self._t0 = 0.0

    def sample_once(self) -> MemSample:
        rss = 0.0
        pss: float | None = 0.0 if self.pss else None
        for p in tree(self.roots):
            try:
                if self.pss:
                    info = p.memory_full_info()
                    rss += info.rss
                    pss = (pss or 0.0) + info.pss
                else:
                    rss += p.memory_info().rss
            except psutil.Error:
                continue
        s = MemSample(time.monotonic() - self._t0, rss, pss)
        self.samples.append(s)
        return s

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample_once()

    def __enter__(self) -> MemSampler:
        self._t0 = time.monotonic()
        self.sample_once()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample_once()

    @property
    def peak_rss(self) -> float:
        return max((s.rss for s in self.samples), default=math.nan)

    @property
    def peak_pss(self) -> float:
        vals = [s.pss for s in self.samples if s.pss is not None]
        return max(vals, default=math.nan)

    def series(self) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {
            "t": [round(s.t, 3) for s in self.samples],
            "rss_mib": [round(s.rss / 2**20, 2) for s in self.samples],
        }
        if self.pss:
            out["pss_mib"] = [round((s.pss or 0.0) / 2**20, 2) for s in self.samples]
        return out


@contextmanager
def timed() -> Iterator[list[float]]:
    """``with timed() as t:`` leaves the elapsed wall seconds in ``t[0]``."""
    box = [0.0]
    t0 = time.monotonic()
    try:
        yield box
    finally:
        box[0] = time.monotonic() - t0


def percentile(values: Iterable[float], q: float) -> float:
    vals = sorted(v for v in values if finite(v))
    if not vals:
        return math.nan
    k = (len(vals) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return vals[lo] + (vals[hi] - vals[lo]) * (k - lo)


def median(values: Iterable[float]) -> float:
    return percentile(values, 50)


def log(msg: str) -> None:
    """Progress on stderr, so stdout stays free for the summary."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
