"""Memory of the server's processes: what each holds, the replica's limit, and each worker's ceiling.

The ceiling is the watchdog's line (``WorkerPool``): a worker that holds more is drained and
replaced. It derives from the replica's memory limit (``--memory_limit_mb``, else the cgroup's
limit, as Kubernetes sets it from the Deployment's ``resources.limits.memory``):

    worker ceiling = (limit x REPLICA_SHARE - FRONT_RESERVE) / workers

so the front process and every worker at its ceiling together stay within ``REPLICA_SHARE`` of
the limit: a replica is never OOM-killed because one record made one worker grow.
"""

from __future__ import annotations

import os

MIB = 1 << 20
# The share of the limit the replica's processes may hold together before a worker is replaced.
REPLICA_SHARE = 0.8
# What the front process is allowed: its peak under the soak's mixed load was 150-180 MiB.
FRONT_RESERVE = 256 * MIB
_PAGE = os.sysconf("SC_PAGE_SIZE")
# cgroup v1 reports "no limit" as a number near 2**63.
_NO_LIMIT = 1 << 60


def rss(pid: int) -> int | None:
    """Resident bytes of process ``pid`` (None when it is gone or this is not Linux)."""
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def cgroup_limit() -> int | None:
    """The memory limit of this process's cgroup (v2, then v1), or None when there is none."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path, encoding="ascii") as fh:
                text = fh.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < _NO_LIMIT:
            return int(text)
        return None
    return None


def worker_ceiling(limit: int | None, workers: int) -> int | None:
    """Each worker's ceiling in bytes under a replica limit of ``limit`` bytes (None: no watchdog)."""
    if limit is None:
        return None
    return max(64 * MIB, int((limit * REPLICA_SHARE - FRONT_RESERVE) / max(1, workers)))
