"""Fleet sizing: how many sessions each worker process may hold, and how long a job will take.

    sessions_per_worker = max(1, floor(C * u / E))

``C`` is the sessions that keep the fleet busy: the sum of each replica's ``bulk_sessions`` as ``GET /healthz``
advertises it, else of its ``capacity`` (or, for a service without ``/healthz``, a ``capacity`` field in its
``ready``). ``u`` is
the share one job may plan to use (0.8), ``E`` the job's worker processes at its peak. Behind one address
``/healthz`` answers from one replica at a time, so each endpoint is asked a few times and every distinct
``replica`` counted once: a larger fleet is under-counted, which errs on the safe side. An explicit
``--sessions_per_worker`` always wins.

``plan`` turns this into an expected wall time. The formulas, term by term: docs/fleet.md, step 4;
``python -m bench fleet`` measures how close a simulated fleet comes to them.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from voxbeam import protocol
from voxbeam.client.config import ClientConfig
from voxbeam.client.connector import Connector

DEFAULT_UTILISATION = 0.8
DEFAULT_SESSIONS_PER_WORKER = 8  # when the service advertises no capacity
HEALTH_SAMPLES = 8  # /healthz requests per endpoint, to see several replicas behind one address


def sessions_per_worker(capacity: int, expected_workers: int, utilisation: float = DEFAULT_UTILISATION) -> int:
    """``max(1, floor(capacity * utilisation / expected_workers))``."""
    if capacity < 0 or expected_workers < 1 or not 0 < utilisation <= 1:
        raise ValueError("capacity >= 0, expected_workers >= 1 and 0 < utilisation <= 1 are required")
    return max(1, math.floor(capacity * utilisation / expected_workers + 1e-9))


# ---------------------------------------------------------------------------
# What the service advertises


@dataclass(frozen=True)
class EndpointCapacity:
    endpoint: str
    capacity: int | None  # sessions over every replica seen at this address; None: not advertised
    replicas: int = 0
    source: str = "none"  # "healthz", "ready" or "none"
    # Sessions that keep those replicas' workers busy: each one's ``bulk_sessions`` in /healthz, at most its
    # capacity (its capacity where it does not say); None: no replica here advertised it.
    bulk_sessions: int | None = None


def _connector(endpoints: Sequence[str], api_key: str | None, auth: str, ca_bundle: str | None) -> Connector:
    config = ClientConfig(
        endpoints=tuple(endpoints), auth="query" if auth == "query" else "header", ca_bundle=ca_bundle
    )
    return Connector(config, api_key)


async def _healthz(connector: Connector, endpoint: str, timeout: float) -> dict[str, Any] | None:
    # With the key, a voxbeam server says which replica answered (without it, only status and capacity).
    try:
        doc = await connector.get_json(endpoint, "/healthz", timeout)
    except (OSError, ValueError):  # no /healthz, not JSON, not reachable: nothing advertised
        return None
    return doc if isinstance(doc, dict) else None


async def _healthz_capacity(connector: Connector, endpoint: str, samples: int, timeout: float) -> EndpointCapacity:
    seen: dict[str, int] = {}
    bulk: dict[str, int | None] = {}
    for i in range(max(1, samples)):
        doc = await _healthz(connector, endpoint, timeout)
        cap = _count(doc.get("capacity") if doc else None)
        if cap is None:
            if i == 0:
                break  # no /healthz, or one without capacity: asking again will not change that
            continue
        replica = doc.get("replica") if doc else None
        name = replica if isinstance(replica, str) else ""  # a server that does not name itself: one per address
        seen[name], bulk[name] = cap, _count(doc.get("bulk_sessions") if doc else None)
        if not isinstance(replica, str):
            break
    if not seen:
        return EndpointCapacity(endpoint, None)
    # Each replica's own cap; one that does not say (an older release in a rolling upgrade) counts its slots.
    busy = sum(min(seen[r], b) if b is not None else seen[r] for r, b in bulk.items())
    advertised = any(b is not None for b in bulk.values())
    return EndpointCapacity(endpoint, sum(seen.values()), len(seen), "healthz", busy if advertised else None)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def healthz_capacity(
    endpoint: str,
    *,
    api_key: str | None = None,
    samples: int = HEALTH_SAMPLES,
    timeout: float = 5.0,
    ca_bundle: str | None = None,
) -> EndpointCapacity:
    """Capacity from ``/healthz``: each distinct replica (by its ``replica`` id) counted once."""
    connector = _connector([endpoint], api_key, "header", ca_bundle)
    return asyncio.run(_healthz_capacity(connector, endpoint, samples, timeout))


async def _ready_capacity(connector: Connector, endpoint: str, timeout: float) -> EndpointCapacity:
    """Capacity from a ``capacity`` field of an STT ``ready`` message, for a service without ``/healthz``."""
    try:
        async with asyncio.timeout(timeout):
            ws = await connector.connect(endpoint, "stt")
            try:
                await ws.send(protocol.serialize(protocol.SttInit()))
                frame = await ws.recv()
            finally:
                await ws.close()
        # capacity is no field of the spec's ready message: read it beside the parsed message.
        ready = isinstance(protocol.parse_server_message(frame), protocol.SttReady)
        reply = json.loads(frame) if ready else {}
    except Exception:  # sizing is advice: any failure means "not advertised"
        return EndpointCapacity(endpoint, None)
    cap = reply.get("capacity") if isinstance(reply, dict) else None
    if isinstance(cap, int) and not isinstance(cap, bool) and cap >= 0:
        return EndpointCapacity(endpoint, cap, 1, "ready")
    return EndpointCapacity(endpoint, None)


def advertised_capacity(
    endpoints: Sequence[str],
    api_key: str | None = None,
    *,
    auth: str = "header",
    ca_bundle: str | None = None,
    samples: int = HEALTH_SAMPLES,
    timeout: float = 5.0,
) -> list[EndpointCapacity]:
    """What each endpoint advertises: ``/healthz`` first, the ``ready`` message otherwise (both through the
    client's one ``Connector``: its TLS and its key)."""
    connector = _connector(endpoints, api_key, auth, ca_bundle)

    async def ask(endpoint: str) -> EndpointCapacity:
        found = await _healthz_capacity(connector, endpoint, samples, timeout)
        return found if found.capacity is not None else await _ready_capacity(connector, endpoint, timeout)

    async def ask_all() -> list[EndpointCapacity]:
        return [await ask(endpoint) for endpoint in endpoints]

    return asyncio.run(ask_all())


@dataclass(frozen=True)
class Sizing:
    """The sessions per worker a job should use, and why."""

    sessions_per_worker: int
    source: str  # "explicit", "bulk" (from bulk_sessions), "capacity" or "default"
    expected_workers: int
    utilisation: float
    capacity: int | None  # the fleet's sessions the formula used, summed over endpoints (None: nothing advertised)
    endpoints: tuple[EndpointCapacity, ...] = field(default=())

    def describe(self) -> str:
        if self.source == "explicit":
            return f"{self.sessions_per_worker} sessions per worker (--sessions_per_worker)"
        if self.source == "default":
            return (
                f"{self.sessions_per_worker} sessions per worker (the service advertises no capacity; "
                "set --sessions_per_worker to size the job)"
            )
        what = "bulk sessions that keep the fleet busy" if self.source == "bulk" else "sessions"
        return (
            f"{self.sessions_per_worker} sessions per worker = max(1, floor({self.capacity} {what} x "
            f"{self.utilisation:g} / {self.expected_workers} worker processes))"
        )


def size(
    explicit: int | None,
    capacities: Sequence[EndpointCapacity],
    expected_workers: int,
    utilisation: float = DEFAULT_UTILISATION,
) -> Sizing:
    """Explicit wins; else the formula over what was advertised; else the default.

    The formula takes the fleet's ``bulk_sessions`` where every endpoint advertises it, its session slots
    otherwise. Sessions past those that keep the workers busy add no throughput: they wait, holding their
    records in both processes' memory (a stream's burst of notifications filled every slot), and a worker
    switching between 50 syntheses spent 10 % more CPU per character than between 9 (bench synthesis).
    """
    known = [c.capacity for c in capacities if c.capacity is not None]
    total = sum(known) if known else None
    if explicit is not None:
        return Sizing(explicit, "explicit", expected_workers, utilisation, total, tuple(capacities))
    if total is None:
        return Sizing(DEFAULT_SESSIONS_PER_WORKER, "default", expected_workers, utilisation, None, tuple(capacities))
    if any(c.bulk_sessions is not None for c in capacities):
        busy = sum(c.bulk_sessions if c.bulk_sessions is not None else c.capacity or 0 for c in capacities)
        spw = sessions_per_worker(busy, expected_workers, utilisation)
        return Sizing(spw, "bulk", expected_workers, utilisation, busy, tuple(capacities))
    spw = sessions_per_worker(total, expected_workers, utilisation)
    return Sizing(spw, "capacity", expected_workers, utilisation, total, tuple(capacities))


# ---------------------------------------------------------------------------
# The expected wall time (the ``voxbeam plan`` command is voxbeam.jobs.plan)


@dataclass(frozen=True)
class Plan:
    worker_processes: int
    sessions_per_worker: int
    sessions: int  # concurrent, at the peak
    fleet_capacity: int
    fleet_utilisation: float
    throughput: float  # work units per second (audio s/s, or characters/s)
    wall_seconds: float
    limited_by: str
    warnings: tuple[str, ...] = ()


def plan(
    *,
    work: float,
    inputs: int,
    longest_input: float,
    workers: int,
    processes_per_worker: int,
    replicas: int,
    capacity: int,
    per_session_rate: float,
    replica_rate: float | None = None,
    utilisation: float = DEFAULT_UTILISATION,
    explicit_sessions_per_worker: int | None = None,
) -> Plan:
    """Expected wall time of a job of ``work`` units (audio seconds or characters); see the module doc."""
    if min(workers, processes_per_worker, replicas, capacity, inputs) < 1 or per_session_rate <= 0 or work <= 0:
        raise ValueError("workers, processes, replicas, capacity, inputs, work and the rate must be positive")
    procs = workers * processes_per_worker
    fleet = replicas * capacity
    spw = explicit_sessions_per_worker or sessions_per_worker(fleet, procs, utilisation)
    wanted = procs * spw
    sessions = min(wanted, fleet, inputs)
    limited_by = {wanted: "sessions per worker", fleet: "fleet capacity", inputs: "number of inputs"}[sessions]
    throughput = sessions * per_session_rate
    if replica_rate and throughput > replicas * replica_rate:
        throughput = replicas * replica_rate
        limited_by = "replica throughput (engine CPU)"
    wall = max(work / throughput, longest_input / per_session_rate)
    warnings = []
    if wanted > fleet:
        warnings.append(
            f"the workers want {wanted} sessions and the fleet admits {fleet}: {wanted - fleet} would be refused "
            "with SERVER_BUSY and back off; add replicas or lower --max_num_workers / --sessions_per_worker"
        )
    elif wanted > fleet * utilisation + 1e-9:
        warnings.append(
            f"the job alone would use {wanted / fleet:.0%} of the fleet's sessions (planned {utilisation:.0%})"
        )
    if replica_rate is None:
        warnings.append("no --replica_rate: assumes every session keeps its measured speed when replicas are full")
    return Plan(procs, spw, sessions, fleet, sessions / fleet, throughput, wall, limited_by, tuple(warnings))
