"""Runs one VoxBeam job in a child process so its CPU and memory can be measured on their own.

    python -m bench._job transcribe|synthesize ARGV_JSON

Prints ``READY <rss_bytes>`` once everything is imported (the memory baseline), then one JSON
line with the job's wall and CPU seconds, its summary, the speech client's counters and, for
transcription, how long each recognition session waited from its ``flush`` to its end
(``flush_done``, or the client giving up): for a bulk upload that is the service's silence
while a result is owed, which the client's result timeout bounds.

``VOXBEAM_BENCH_RESULT_TIMEOUT`` (seconds), when set, replaces the job's client result timeout
(30 s by default, no flag for it): benchmarks that need a measurement where the default would
make the client give up say so in their report.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Any


def main() -> int:
    job, argv = sys.argv[1], json.loads(sys.argv[2])
    import psutil

    from voxbeam import jobs
    from voxbeam.beam import _workers

    # Keep every per-process speech client alive so its counters can be read after the run.
    handles: list[Any] = []
    original_init = _workers.WorkerHandle.__init__

    def recording_init(self: Any, settings: Any) -> None:
        original_init(self, settings)
        handles.append(self)

    _workers.WorkerHandle.__init__ = recording_init  # type: ignore[method-assign]
    flush_waits, flush_waits_failed = _time_flushes()
    timeout = os.environ.get("VOXBEAM_BENCH_RESULT_TIMEOUT")
    if timeout:
        _patch_result_timeout(float(timeout))

    print(f"READY {psutil.Process().memory_info().rss}", flush=True)
    c0, t0 = time.process_time(), time.monotonic()
    summary = jobs.run(job, argv)
    wall, cpu = time.monotonic() - t0, time.process_time() - c0
    stats: dict[str, int] = {}
    for h in handles:
        for k, v in h.client.stats().items():
            stats[k] = stats.get(k, 0) + int(v)
    out = {
        "wall": wall,
        "cpu": cpu,
        "inputs": summary.inputs,
        "written": summary.written,
        "dead_letters": dict(summary.dead_letters),
        "outputs": summary.outputs,
        "client_stats": stats,
        "client_handles": len(handles),
        "flush_waits": flush_waits,
        "flush_waits_failed": flush_waits_failed,
        "result_timeout": float(timeout) if timeout else None,
    }
    print("RESULT " + json.dumps(out), flush=True)
    return 0


def _time_flushes() -> tuple[list[float], list[float]]:
    """Seconds from each ``flush`` sent to the end of its recognition session (done, or failed)."""
    from voxbeam import protocol
    from voxbeam.client import session

    done: list[float] = []
    failed: list[float] = []
    original_send, original_recognize = session.Session._send, session.Session.recognize

    async def send(self: Any, msg: Any, timeout: float | None) -> None:
        await original_send(self, msg, timeout)
        if isinstance(msg, protocol.Command) and msg.command == "flush":
            self._bench_flushed_at = time.monotonic()

    async def recognize(self: Any, *args: Any, **kwargs: Any) -> Any:
        self._bench_flushed_at = None
        try:
            result = await original_recognize(self, *args, **kwargs)
        except BaseException:
            if self._bench_flushed_at is not None:
                failed.append(round(time.monotonic() - self._bench_flushed_at, 3))
            raise
        if self._bench_flushed_at is not None:
            done.append(round(time.monotonic() - self._bench_flushed_at, 3))
        return result

    session.Session._send = send  # type: ignore[method-assign]
    session.Session.recognize = recognize  # type: ignore[method-assign]
    return done, failed


def _patch_result_timeout(seconds: float) -> None:
    from voxbeam.beam.options import ServiceSettings

    original = ServiceSettings.client_config

    def client_config(self: Any) -> Any:
        cfg = original(self)
        return dataclasses.replace(cfg, timeouts=dataclasses.replace(cfg.timeouts, result=seconds))

    ServiceSettings.client_config = client_config  # type: ignore[method-assign]


if __name__ == "__main__":
    sys.exit(main())
