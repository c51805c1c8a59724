"""What a bench run shares between benchmarks: mode, directories, the one LocalServer, helpers."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._common import ROOT, CpuMeter, MemSampler, log

# Enough sessions for the 64-session measurement with room for the pools of other steps.
MAX_SESSIONS = 160


@dataclass
class Context:
    """One bench run: ``quick`` mode, where results go, a scratch directory, the server."""

    quick: bool
    results_dir: Path
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    server_workers: int | None = None  # what the server reports; set when it has started
    _server: Any = None
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def plots_dir(self) -> Path:
        d = self.results_dir / "plots"
        d.mkdir(parents=True, exist_ok=True)
        return d

    @property
    def workdir(self) -> Path:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="voxbeam-bench-")
        return Path(self._tmp.name)

    def server(self) -> Any:
        """The run's LocalServer (started on first use, with one worker per core)."""
        if self._server is None:
            from voxbeam.server.launcher import LocalServer

            log(f"starting LocalServer with {self.workers} workers")
            server = LocalServer(
                workers=self.workers, max_sessions=MAX_SESSIONS, log_path=str(self.results_dir / "server.log")
            )
            server.start()
            self._server = server
            health = server.health()
            reported = health.get("workers")
            self.server_workers = int(reported) if isinstance(reported, int | float) else self.workers
        return self._server

    def health(self) -> dict[str, Any]:
        return dict(self.server().health())

    def wait_idle(self, timeout: float = 180.0, busy_cores: float = 0.15) -> float:
        """Wait until the server's processes use under ``busy_cores`` of CPU for a second.

        Work a client abandoned (a timed-out request) can still be queued on the workers; the
        next measurement must not pay for it. Returns the seconds waited.
        """
        server = self.server()
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            meter = CpuMeter([server.pid]).start()
            time.sleep(1.0)
            if meter.stop() < busy_cores * meter.wall:
                break
        waited = time.monotonic() - t0
        if waited > 2.5:
            log(f"waited {waited:.0f} s for the server to go idle")
        return waited

    def close(self) -> None:
        if self._server is not None:
            try:
                self._server.stop()
            except Exception as exc:  # never leave the run hanging on shutdown
                log(f"server stop failed ({exc}); killing it")
                self._server.kill()
            self._server = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def client_config(self, pool_size: int, **kw: Any) -> Any:
        from voxbeam.client import ClientConfig

        server = self.server()
        return ClientConfig(endpoints=(server.url,), api_key=server.api_key, pool_size=pool_size, **kw)

    def endpoint_args(self, server: Any = None) -> list[str]:
        server = server or self.server()
        return ["--endpoint", server.url, "--api_key", server.api_key]

    def other_server(self, extra_args: Sequence[str], name: str) -> Any:
        """A second LocalServer with the run's worker count and ``extra_args`` (a context manager,
        started on entry): e.g. ``["--stt_engine", "pocketsphinx"]`` for the engine comparison."""
        from voxbeam.server.launcher import LocalServer

        log(f"starting LocalServer {' '.join(extra_args)} with {self.workers} workers")
        return LocalServer(
            workers=self.workers,
            max_sessions=MAX_SESSIONS,
            extra_args=list(extra_args),
            log_path=str(self.results_dir / f"server-{name}.log"),
        )


@dataclass
class JobRun:
    """A job run in a child process (``bench._job``)."""

    wall: float  # the job call itself, inside the child
    cpu: float  # the child's CPU seconds for the job (all threads)
    total_wall: float  # including interpreter start and imports
    rss_ready: float  # child RSS once imported, before the job
    memory: MemSampler
    server_memory: MemSampler
    server_cpu: CpuMeter
    out: dict[str, Any]


def wait_idle(server: Any, timeout: float = 180.0, busy_cores: float = 0.15) -> float:
    """``Context.wait_idle`` for any server."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        meter = CpuMeter([server.pid]).start()
        time.sleep(1.0)
        if meter.stop() < busy_cores * meter.wall:
            break
    return time.monotonic() - t0


def calibrated(server: Any, timeout: float = 120.0) -> dict[str, Any]:
    """/healthz once the workers have measured their speed (at start, holding a worker and its memory for
    seconds; None: not within ``timeout``): idle memory and capacities are read after it."""
    deadline = time.monotonic() + timeout
    health: dict[str, Any] = server.health()
    while health["audio_capacity"] is None and time.monotonic() < deadline:
        time.sleep(0.2)
        health = server.health()
    return health


def run_job(
    ctx: Context,
    job: str,
    argv: Sequence[str],
    *,
    interval: float = 0.25,
    server: Any = None,
    result_timeout: float | None = None,
) -> JobRun:
    """Run ``voxbeam.jobs.run(job)`` in a child; sample its RSS and the server's meanwhile.

    ``server``: the server the job talks to (default: the run's); ``result_timeout``: replaces the
    job client's result timeout (see ``bench._job``).
    """
    if server is None:
        server = ctx.server()
        ctx.wait_idle()
    else:
        wait_idle(server)
    env = dict(os.environ)
    if result_timeout is not None:
        env["VOXBEAM_BENCH_RESULT_TIMEOUT"] = str(result_timeout)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    # A job once died of SIGABRT ("terminate called without an active exception") in CI: on the next, the
    # stderr below holds every thread's Python stack, naming the library whose native thread was left running.
    env.setdefault("PYTHONFAULTHANDLER", "1")
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench._job", job, json.dumps(list(argv))],
        cwd=str(ROOT),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    stderr_lines: list[str] = []
    drain = threading.Thread(target=lambda: stderr_lines.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
    drain.start()
    mem = MemSampler([proc.pid], interval=interval)
    smem = MemSampler([server.pid], interval=max(interval, 0.5))
    scpu = CpuMeter([server.pid])
    rss_ready = float("nan")
    out: dict[str, Any] = {}
    try:
        line = proc.stdout.readline()
        if not line.startswith("READY"):
            proc.wait(30)
            raise RuntimeError(f"bench._job did not start: {line!r} {''.join(stderr_lines)[-2000:]}")
        rss_ready = float(line.split()[1])
        scpu.start()
        with mem, smem:
            for line in proc.stdout:
                if line.startswith("RESULT "):
                    out = json.loads(line[len("RESULT ") :])
            proc.wait()
        scpu.stop()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    drain.join(5)
    if proc.returncode != 0 or not out:
        raise RuntimeError(f"bench._job {job} failed (exit {proc.returncode}): {''.join(stderr_lines)[-6000:]}")
    return JobRun(
        wall=float(out["wall"]),
        cpu=float(out["cpu"]),
        total_wall=time.monotonic() - t0,
        rss_ready=rss_ready,
        memory=mem,
        server_memory=smem,
        server_cpu=scpu,
        out=out,
    )


def run_async(coro: Any) -> Any:
    return asyncio.run(coro)
