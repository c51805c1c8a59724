"""The benchmark suite runs and writes well-formed results (it does not judge the figures)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench._common import Ratio

ROOT = Path(__file__).resolve().parent.parent
TOP_KEYS = {"name", "quick", "timestamp", "machine", "measurements", "ratios", "passed", "plots", "errors"}
RATIO_KEYS = {"key", "description", "value", "target", "op", "pass", "unit"}


def _numbers(obj: object) -> list[float]:
    if isinstance(obj, bool):
        return []
    if isinstance(obj, int | float):
        return [float(obj)]
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in _numbers(v)]
    if isinstance(obj, list):
        return [x for v in obj for x in _numbers(v)]
    return []


def _check_result(path: Path, results: Path, quick: bool = True) -> dict:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert TOP_KEYS <= set(data), f"{path.name} lacks {TOP_KEYS - set(data)}"
    assert data["name"] == path.stem
    assert data["quick"] is quick
    assert {"cpu_count", "python", "platform"} <= set(data["machine"])
    assert all(math.isfinite(x) for x in _numbers(data["measurements"]))
    for m in data["measurements"].values():
        assert {"value", "unit", "description"} <= set(m)
    for r in data["ratios"]:
        assert RATIO_KEYS <= set(r)
        assert math.isfinite(r["value"])
        assert r["op"] in (">=", "<=")
        assert r["pass"] is None if r["target"] is None else isinstance(r["pass"], bool), r
    for p in data["plots"]:
        png = results / p
        assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", p
    return data


@pytest.mark.timeout(300)
def test_quick_bench_writes_well_formed_results(tmp_path: Path) -> None:
    """Two of the quick benchmarks (the fastest; the harness is the same for all): JSON, plots, report."""
    results = tmp_path / "results"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--results-dir", str(results), "transport", "longfile"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stderr[-8000:]
    transport = _check_result(results / "transport.json", results)
    longfile = _check_result(results / "longfile.json", results)
    assert transport["measurements"]["raw_audio_s_per_s"]["value"] > 0
    assert {r["key"] for r in transport["ratios"]} == {"client_vs_transport"}
    ratios = {r["key"]: r for r in longfile["ratios"]}
    assert ratios["transcribed"]["value"] == 1 and ratios["memory_growth"]["target"] == 300
    assert longfile["measurements"]["pipeline_growth_mb"]["value"] > 0
    assert longfile["plots"], "the long-file benchmark draws its memory plot"
    report = (results / "REPORT.md").read_text(encoding="utf-8")
    assert "## longfile" in report and "## transport" in report
    assert "![longfile_memory](plots/longfile_memory.png)" in report


def test_unknown_benchmark_is_a_usage_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--results-dir", str(tmp_path), "nosuch"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "unknown benchmark" in proc.stderr


def test_result_json_never_holds_nan(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from bench._common import Result, write_json

    res = Result("demo", quick=True)
    res.measure("ok", 1.5, "x", "a number")
    res.measure("bad", float("nan"), "x", "not a number")
    res.compare("r", "a ratio", 0.9, 0.85)
    res.compare("missing", "cannot compute", float("inf"), 1.0)
    res.series["s"] = [1.0, float("nan")]
    path = tmp_path / "demo.json"
    write_json(path, res.as_dict(0.0, {"cpu_count": 1, "python": "3", "platform": "x"}))
    data = json.loads(path.read_text())
    assert set(data["measurements"]) == {"ok"}
    assert [r["key"] for r in data["ratios"]] == ["r"] and data["ratios"][0]["pass"] is True
    assert len(data["errors"]) == 2
    assert data["series"]["s"] == [1.0, None]


def test_fleet_stub_replica_speaks_the_protocol_and_refuses_past_capacity() -> None:
    """The fleet benchmark's stub: the real client transcribes through it; a third session is SERVER_BUSY."""
    import asyncio

    sys.path.insert(0, str(ROOT))
    from bench.fleet import Replicas
    from voxbeam.client import ClientConfig, RetryPolicy, SpeechClient
    from voxbeam.client.sizing import advertised_capacity
    from voxbeam.errors import VoxBeamError

    async def scenario(urls: list[str]) -> tuple[list[object], dict[str, int]]:
        config = ClientConfig(endpoints=tuple(urls), api_key="k", pool_size=3, retry=RetryPolicy(max_attempts=1))
        async with SpeechClient(config) as client:
            outcomes = await asyncio.gather(
                *(client.transcribe(b"\x01\x00" * 4000) for _ in range(3)), return_exceptions=True
            )
            return list(outcomes), client.stats()

    with Replicas(1, capacity=2) as fleet:
        [cap] = advertised_capacity(fleet.urls)
        assert (cap.capacity, cap.replicas) == (2, 1)
        outcomes, stats = asyncio.run(scenario(fleet.urls))
        [health] = fleet.health()
    ok = [o for o in outcomes if not isinstance(o, BaseException)]
    busy = [o for o in outcomes if isinstance(o, VoxBeamError) and "SERVER_BUSY" in str(o)]
    assert len(ok) == 2 and len(busy) == 1, outcomes
    assert all(o.text == "stub" and o.audio_duration_ms == 250 for o in ok)  # type: ignore[attr-defined]
    assert stats["server_busy"] == 1
    assert (health["accepted"], health["refused"], health["peak"]) == (2, 1, 2)
    assert health["audio_s"] == 0.5


@pytest.mark.parametrize(
    ("value", "target", "op", "expected"),
    [
        (1.2, 1.0, ">=", True),
        (1.0, 1.0, ">=", True),
        (0.99, 1.0, ">=", False),
        (0.8, 1.0, "<=", True),
        (1.0, 1.0, "<=", True),  # a floor met exactly is met
        (1.01, 1.0, "<=", False),
        (0.5, None, ">=", None),
        (math.nan, 1.0, ">=", None),
    ],
)
def test_a_ratio_passes_by_its_own_direction(value, target, op, expected) -> None:
    assert Ratio("k", "d", value, target, op).passed is expected
    assert Ratio("k", "d", value, target, op).as_dict()["pass"] is expected
