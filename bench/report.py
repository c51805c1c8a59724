"""REPORT.md from the JSON results: each figure beside its target, misses marked."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import BENCHMARKS

PASS, MISS, INFO = "pass", "**MISS**", "info"


def load(results_dir: Path) -> list[dict[str, Any]]:
    """Every results/<name>.json, in suite order."""
    out = []
    for name in BENCHMARKS:
        path = results_dir / f"{name}.json"
        if path.exists():
            out.append(json.loads(path.read_text(encoding="utf-8")))
    return out


def fmt(value: Any, digits: int = 3) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "–" if value is None else str(value)
    if not math.isfinite(value):
        return "–"
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def _figure(r: dict[str, Any]) -> tuple[str, str, str]:
    unit = r.get("unit", "x")
    suffix = "×" if unit == "x" else f" {unit}"
    value = fmt(r["value"]) + suffix
    target = "–" if r.get("target") is None else f"{r['op']} {fmt(r['target'])}{suffix}"
    status = INFO if r.get("pass") is None else PASS if r["pass"] else MISS
    return value, target, status


def _first_line(error: str) -> str:
    return (error.splitlines()[0] if error else "")[:300].replace("|", "/")


def _failures(data: dict[str, Any]) -> list[str]:
    """Errors worth a headline row: a step that failed (tracebacks are kept in the JSON only)."""
    return [_first_line(e) for e in data["errors"] if e and not e.startswith("Traceback")]


def _headline(results: Sequence[dict[str, Any]], targets_only: bool) -> list[str]:
    lines = ["| benchmark | figure | value | target | status |", "| --- | --- | --- | --- | --- |"]
    for data in results:
        for r in data["ratios"]:
            if targets_only and r.get("target") is None:
                continue
            value, target, status = _figure(r)
            lines.append(f"| {data['name']} | {r['description']} | {value} | {target} | {status} |")
        for e in _failures(data):
            lines.append(f"| {data['name']} | {e} | – | – | **FAILED** |")
    return lines


def summary(results_dir: Path, names: Sequence[str]) -> str:
    """The targeted figures of the benchmarks just run, as a Markdown table (for stdout)."""
    results = [d for d in load(results_dir) if d["name"] in names]
    return "\n".join(_headline(results, targets_only=True))


def write(results_dir: Path, names: Sequence[str]) -> Path:
    results = load(results_dir)
    now = [d for d in results if d["name"] in names]
    older = [d for d in results if d["name"] not in names]
    misses = sum(1 for d in results for r in d["ratios"] if r.get("pass") is False)
    failed = sum(len(_failures(d)) for d in results)
    met = sum(1 for d in results for r in d["ratios"] if r.get("pass") is True)
    machine = now[0]["machine"] if now else (results[0]["machine"] if results else {})
    lines = [
        "# VoxBeam benchmark report",
        "",
        "Every figure is a ratio against a baseline measured in the same run on the same material "
        "(absolute figures say so in their unit). The machine is shared, so absolute speeds drift; the "
        "ratios are what to compare across runs.",
        "",
        f"- Mode: {', '.join(sorted({'quick' if d['quick'] else 'full' for d in results})) or '–'}",
        f"- Machine: {machine.get('cpu_count')} CPUs ({machine.get('cpu_model', '')}), "
        f"{machine.get('memory_gib')} GiB, Python {machine.get('python')}, {machine.get('platform')}",
        f"- Targets met: {met}; **missed: {misses}**; steps that failed: {failed}",
        "- Baselines: (1) faster-whisper's batched pipeline (tiny.en, int8) called directly in processes x threads "
        "like the server's workers (and one process with every core); (2) Piper (vl-joe) called directly the same "
        "way; (3) the spec's naive client (a connection per file, 100 ms chunks paced in real time); (4) the "
        "transport alone (the same base64 JSON frames to a server that only acks). The pocketsphinx and eSpeak NG "
        "comparisons go through VoxBeam itself (a server with `--stt_engine pocketsphinx`, eSpeak voices).",
    ]
    if older:
        lines.append(
            "- Also included from earlier runs: "
            + ", ".join(f"{d['name']} ({d['timestamp']}, {'quick' if d['quick'] else 'full'})" for d in older)
        )
    lines += ["", "## Figures with targets", ""] + _headline(results, targets_only=True)
    for data in results:
        lines += ["", *_section(data)]
    path = results_dir / "REPORT.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _section(data: dict[str, Any]) -> list[str]:
    m = data["machine"]
    lines = [
        f"## {data['name']}",
        "",
        f"{BENCHMARKS.get(data['name'], ('', ''))[1]}. "
        f"{'Quick' if data['quick'] else 'Full'} run at {data['timestamp']}, {fmt(data['duration_s'])} s; "
        f"load average {m.get('load_average')} → {m.get('load_average_end')}, "
        f"other processes used {fmt(100 * (m.get('background_cpu_share') or 0), 2)}% of the CPUs meanwhile.",
        "",
    ]
    if data["ratios"]:
        lines += ["| figure | value | target | status |", "| --- | --- | --- | --- |"]
        for r in data["ratios"]:
            value, target, status = _figure(r)
            desc = r["description"] + (f" — {r['note']}" if r.get("note") else "")
            lines.append(f"| {desc} | {value} | {target} | {status} |")
        lines.append("")
    if data["measurements"]:
        lines += ["<details><summary>measurements</summary>", "", "| measurement | value | unit | what |"]
        lines.append("| --- | --- | --- | --- |")
        for key, mm in data["measurements"].items():
            lines.append(f"| `{key}` | {fmt(mm['value'], 4)} | {mm['unit']} | {mm['description']} |")
        lines += ["", "</details>", ""]
    for note in data["notes"]:
        # A note that is a Markdown table goes in as it is; prose notes are quoted.
        lines.append(note if note.lstrip().startswith("|") else f"> {note}")
        lines.append("")
    for p in data["plots"]:
        lines += [f"![{Path(p).stem}]({p})", ""]
    if data["errors"]:
        lines.append("Errors:")
        lines += [f"- `{_first_line(e)}`" for e in data["errors"] if e and not e.startswith("Traceback")]
        lines.append("")
    return lines
