"""PNG plots for the report (matplotlib, Agg backend). Each returns the path relative to results/."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _save(fig: Any, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return f"{path.parent.name}/{path.name}"


def throughput(path: Path, curves: Mapping[str, Sequence[float]], what: str, unit: str) -> str:
    """Server and baseline throughput against concurrent sessions (log-2 x axis)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    x = list(curves["sessions"])
    ax.plot(x, curves["server"], "o-", label=f"{what} server (VoxBeam)")
    ax.plot(x, curves["baseline"], "s--", label="engine directly, same files in flight")
    if "baseline_full_pool" in curves:
        ax.plot(x, curves["baseline_full_pool"], ":", color="grey", label="engine directly, every process busy")
    ax.set_xscale("log", base=2)
    ax.set_xticks(x)
    ax.set_xticklabels([str(v) for v in x])
    ax.set_xlabel("concurrent sessions")
    ax.set_ylabel(unit)
    ax.set_ylim(bottom=0)
    ax.set_title(f"{what} throughput against concurrent sessions")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def memory(path: Path, series: Mapping[str, Mapping[str, Sequence[float]]], title: str) -> str:
    """Memory (MiB) over time for each labelled process tree."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, s in series.items():
        key = "pss_mib" if "pss_mib" in s else "rss_mib"
        ax.plot(s["t"], s[key], label=f"{label} {key.split('_')[0].upper()}")
    ax.set_xlabel("seconds")
    ax.set_ylabel("MiB")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def stages(path: Path, wall: Mapping[str, float], cpu: Mapping[str, float], title: str, per: str = "audio hour") -> str:
    """Time per stage: wall seconds per unit of work by stage, CPU seconds per unit by process."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    names = list(wall)
    a.barh(names, [wall[n] for n in names], color="tab:blue")
    a.invert_yaxis()
    a.set_xlabel(f"wall seconds per {per}")
    a.set_title("wall time per stage")
    a.grid(axis="x", alpha=0.3)
    cnames = list(cpu)
    b.barh(cnames, [cpu[n] for n in cnames], color="tab:orange")
    b.invert_yaxis()
    b.set_xlabel(f"CPU seconds per {per}")
    b.set_title("CPU by process (full pipeline)")
    b.grid(axis="x", alpha=0.3)
    fig.suptitle(title)
    return _save(fig, path)


def bars(path: Path, values: Mapping[str, float], unit: str, title: str) -> str:
    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = list(values)
    ax.barh(names, [values[n] for n in names])
    ax.invert_yaxis()
    ax.set_xlabel(unit)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def scaling(path: Path, replicas: Sequence[int], measured: Sequence[float], linear: Sequence[float], title: str) -> str:
    """Throughput against the number of replicas, beside linear scaling from the smallest fleet."""
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(replicas, linear, "--", color="grey", label="linear from 1 replica")
    ax.plot(replicas, measured, "o-", label="measured")
    ax.set_xticks(list(replicas))
    ax.set_xlabel("replicas")
    ax.set_ylabel("audio seconds per second")
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)
