"""``python -m bench [--quick] [--results-dir DIR] [NAME ...]``: run benchmarks, write JSON and REPORT.md."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import math
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import psutil

from bench import BENCHMARKS, NOT_IN_QUICK
from bench._common import DEFAULT_RESULTS, Ratio, Result, log, machine_info, write_json
from bench._context import Context


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("names", nargs="*", help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)}")
    p.add_argument("--quick", action="store_true", help="small inputs: the whole suite in under two minutes")
    p.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS, help="where JSON, plots and REPORT.md go")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    return p


def _load(module: str) -> Any | None:
    if importlib.util.find_spec(module) is None:
        return None
    return importlib.import_module(module)


def _ratio_items(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Ratios given as a list of dicts, or as {name: value} with "targets" and "passed" beside."""
    ratios = data.get("ratios") or []
    if isinstance(ratios, list):
        return [r for r in ratios if isinstance(r, dict)]
    targets, passed = data.get("targets") or {}, data.get("passed") or {}
    out = []
    for name, value in ratios.items():
        target = targets.get(name)
        op = ">="
        ok = passed.get(name)
        if isinstance(value, int | float) and isinstance(target, int | float) and isinstance(ok, bool):
            # The direction is whichever agrees with the pass/fail the benchmark reported.
            op = "<=" if ok == (value <= target) and ok != (value >= target) else ">="
        out.append({"key": name, "description": name.replace("_", " "), "value": value, "target": target, "op": op})
    return out


def _flatten(prefix: str, obj: Any, out: dict[str, float]) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(obj, int | float) and not isinstance(obj, bool):
        out[prefix] = float(obj)


def _from_external(name: str, quick: bool, data: dict[str, Any]) -> Result:
    """Adapt the dict an external ``run(quick)`` returns (client_bench.py) to a Result."""
    res = Result(name, quick)
    measurements = data.get("measurements")
    if isinstance(measurements, dict) and all(isinstance(m, dict) for m in measurements.values()):
        for key, m in measurements.items():
            if isinstance(m.get("value"), int | float):
                res.measure(key, float(m["value"]), str(m.get("unit", "")), str(m.get("description", "")))
    else:
        flat: dict[str, float] = {}
        skip = {"ratios", "targets", "passed", "quick", "notes", "errors", "plots", "series", "config"}
        _flatten("", {k: v for k, v in data.items() if k not in skip}, flat)
        for key, number in flat.items():
            res.measure(key, number, "", "reported by the benchmark")
    for r in _ratio_items(data):
        raw = r.get("value", r.get("ratio"))
        if not isinstance(raw, int | float) or not math.isfinite(raw):
            res.errors.append(f"ratio {r.get('key') or r.get('name')}: no finite value ({raw!r})")
            continue
        target = r.get("target")
        res.ratios.append(
            Ratio(
                key=str(r.get("key") or r.get("name") or f"ratio{len(res.ratios)}"),
                description=str(r.get("description", "")),
                value=float(raw),
                target=float(target) if isinstance(target, int | float) else None,
                op="<=" if r.get("op") == "<=" else ">=",
                subject=str(r.get("subject", "")),
                baseline=str(r.get("baseline", "")),
                note=str(r.get("note", "")),
                unit=str(r.get("unit", "x")),
            )
        )
    for key in ("notes", "errors", "plots"):
        items = data.get(key)
        if isinstance(items, list):
            getattr(res, key).extend(str(x) for x in items)
    if isinstance(data.get("series"), dict):
        res.series.update(data["series"])
    if isinstance(data.get("config"), dict):
        res.config.update(data["config"])
    return res


def _background(before: Any, after: Any, wall: float, own_cpu: float) -> float:
    """Share of the machine's CPU capacity used by processes other than this run's."""
    busy = sum(getattr(after, f) - getattr(before, f) for f in ("user", "system", "nice"))
    cores = psutil.cpu_count() or 1
    return max(0.0, (busy - own_cpu) / (wall * cores)) if wall > 0 else math.nan


def _own_cpu() -> float:
    """CPU seconds used so far by this process and every descendant it has waited for or still has."""
    me = psutil.Process()
    t = me.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for c in me.children(recursive=True):
        try:
            ct = c.cpu_times()
            total += ct.user + ct.system
        except psutil.Error:
            pass
    return total


def run_one(ctx: Context, name: str) -> tuple[dict[str, Any], str]:
    """Run one benchmark and write its JSON; status is "ok", "missing" or "crashed"."""
    module, _ = BENCHMARKS[name]
    started = time.monotonic()
    machine = machine_info()
    cpu0, own0 = psutil.cpu_times(), _own_cpu()
    log(f"== {name} ({'quick' if ctx.quick else 'full'})")
    status = "ok"
    try:
        mod = _load(module)
        if mod is None:
            status = "missing"
            res = Result(name, ctx.quick)
            res.errors.append(f"{module} is not present; nothing to run")
        elif hasattr(mod, "NAME"):
            res = mod.run(ctx)
        else:
            res = _from_external(name, ctx.quick, mod.run(ctx.quick))
    except Exception as exc:
        log(f"{name} failed: {exc!r}")
        status = "crashed"
        res = Result(name, ctx.quick)
        res.errors.append(f"{type(exc).__name__}: {exc}")
        res.errors.append(traceback.format_exc()[-4000:])
    wall = time.monotonic() - started
    machine["load_average_end"] = [round(x, 2) for x in psutil.getloadavg()]
    machine["background_cpu_share"] = round(_background(cpu0, psutil.cpu_times(), wall, _own_cpu() - own0), 3)
    data = res.as_dict(started, machine)
    write_json(ctx.results_dir / f"{name}.json", data)
    log(f"== {name} done in {wall:.1f} s: " + ", ".join(f"{r.key}={r.value:.3g}" for r in res.ratios))
    return data, status


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.list:
        for name, (_, desc) in BENCHMARKS.items():
            print(f"{name:10s} {desc}")
        return 0
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    names = args.names or [n for n in BENCHMARKS if not (args.quick and n in NOT_IN_QUICK)]
    if args.quick and not args.names:
        log(f"--quick leaves out {', '.join(sorted(NOT_IN_QUICK))} (name it to run it)")
    results_dir: Path = args.results_dir.resolve()
    results_dir.mkdir(parents=True, exist_ok=True)
    ctx = Context(quick=args.quick, results_dir=results_dir)
    # A terminated run still stops its server (SIGTERM -> SystemExit -> finally).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    crashed = []
    try:
        for name in names:
            _, status = run_one(ctx, name)
            if status == "crashed":
                crashed.append(name)
    finally:
        ctx.close()
    from bench import report

    path = report.write(results_dir, names)
    log(f"report: {path} ({time.monotonic() - started:.1f} s in all)")
    print(report.summary(results_dir, names))
    if crashed:
        log(f"crashed: {', '.join(crashed)}")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
