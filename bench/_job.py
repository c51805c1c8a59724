"""Runs one VoxBeam job in a child process so its CPU and memory can be measured on their own.

    python -m bench._job transcribe|synthesize ARGV_JSON

Prints ``READY <rss_bytes>`` once everything is imported (the memory baseline), then one JSON
line with the job's wall and CPU seconds, its summary and the speech client's counters.
"""

from __future__ import annotations

import json
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
    }
    print("RESULT " + json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
