"""Fleet sizing: how many sessions each worker process may hold, and how long a job will take.

The formula (also in README, "Beyond one machine"):

    sessions_per_worker = max(1, floor(C * u / E))

- ``C``: the fleet's session capacity, the sum of each replica's ``capacity`` (its
  ``--max_sessions``), as ``GET /healthz`` advertises it (or, for a service without
  ``/healthz``, a ``capacity`` field in its ``ready`` message). Behind one address (a Kubernetes
  Service) ``/healthz`` answers from one replica at a time, so each endpoint is asked a few
  times and every distinct ``replica`` counted once: a fleet larger than that is under-counted,
  which errs on the safe side.
- ``u``: the share of that capacity one job may plan to use (default 0.8: headroom for other
  clients, retries and a replica that restarts).
- ``E``: the worker processes the job can have at its peak: on Dataflow ``max_num_workers`` x
  SDK processes per worker (one per vCPU); on the DirectRunner ``direct_num_workers`` in
  ``multi_processing`` mode, else 1.

So the job never opens more than ``C * u`` sessions however far it autoscales (``E`` at least
``C * u``: one session each, and every process past ``C`` is refused with SERVER_BUSY; add
replicas or cap the workers). An explicit ``--sessions_per_worker`` always wins.

Expected wall time (``plan``), with ``r`` the measured throughput of one session (audio seconds
per second, or characters per second) and ``R`` replicas of capacity ``c`` each:

    sessions   S = min(E * sessions_per_worker, R * c, inputs)
    throughput T = S * r                      (capped at R * replica_rate when that is given)
    wall         = max(work / T, longest input / r)

``voxbeam plan`` prints these; ``python -m bench fleet`` measures how close a simulated fleet
comes to them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import ssl
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import quote

from voxbeam import protocol

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


def _http_base(endpoint: str) -> str:
    base = endpoint.rstrip("/")
    for suffix in (protocol.STT_PATH, protocol.TTS_PATH):
        base = base.removesuffix(suffix)
    return base.replace("wss://", "https://", 1).replace("ws://", "http://", 1)


def _healthz(endpoint: str, timeout: float, ca_bundle: str | None, api_key: str | None) -> dict[str, Any] | None:
    url = _http_base(endpoint) + "/healthz"
    context = ssl.create_default_context(cafile=ca_bundle) if url.startswith("https://") else None
    # With the key, a voxbeam server says which replica answered (without it, only status and capacity).
    request = urllib.request.Request(url, headers={"X-Api-Key": api_key} if api_key else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as resp:
            doc = json.load(resp)
    except (OSError, ValueError, urllib.error.URLError):
        return None
    return doc if isinstance(doc, dict) else None


def healthz_capacity(
    endpoint: str,
    *,
    api_key: str | None = None,
    samples: int = HEALTH_SAMPLES,
    timeout: float = 5.0,
    ca_bundle: str | None = None,
) -> EndpointCapacity:
    """Capacity from ``/healthz``: each distinct replica (by its ``replica`` id) counted once."""
    seen: dict[str, int] = {}
    for i in range(max(1, samples)):
        doc = _healthz(endpoint, timeout, ca_bundle, api_key)
        cap = doc.get("capacity") if doc else None
        if not isinstance(cap, int) or isinstance(cap, bool) or cap < 0:
            if i == 0:
                break  # no /healthz, or one without capacity: asking again will not change that
            continue
        replica = doc.get("replica") if doc else None
        if not isinstance(replica, str):
            seen[""] = cap  # a server that does not name itself: one replica per address
            break
        seen[replica] = cap
    if not seen:
        return EndpointCapacity(endpoint, None)
    return EndpointCapacity(endpoint, sum(seen.values()), len(seen), "healthz")


async def ready_capacity(
    endpoint: str,
    api_key: str | None,
    *,
    auth: str = "header",
    timeout: float = 10.0,
    ca_bundle: str | None = None,
) -> EndpointCapacity:
    """Capacity from a ``capacity`` field of an STT ``ready`` message, for a service without ``/healthz``."""
    from websockets.asyncio.client import connect

    url = endpoint.rstrip("/") + protocol.STT_PATH
    headers = {}
    if api_key and auth == "query":
        url += "?token=" + quote(api_key, safe="")
    elif api_key:
        headers["X-Api-Key"] = api_key
    ctx = ssl.create_default_context(cafile=ca_bundle) if url.startswith("wss://") else None
    try:
        async with asyncio.timeout(timeout):
            async with connect(url, additional_headers=headers, ssl=ctx, open_timeout=timeout) as ws:
                await ws.send(protocol.serialize(protocol.SttInit()))
                frame = await ws.recv()
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
    """What each endpoint advertises: ``/healthz`` first, the ``ready`` message otherwise."""
    out = []
    for endpoint in endpoints:
        found = healthz_capacity(endpoint, api_key=api_key, samples=samples, timeout=timeout, ca_bundle=ca_bundle)
        if found.capacity is None:
            found = asyncio.run(ready_capacity(endpoint, api_key, auth=auth, timeout=timeout, ca_bundle=ca_bundle))
        out.append(found)
    return out


@dataclass(frozen=True)
class Sizing:
    """The sessions per worker a job should use, and why."""

    sessions_per_worker: int
    source: str  # "explicit", "capacity" or "default"
    expected_workers: int
    utilisation: float
    capacity: int | None  # the fleet's, summed over endpoints (None: nothing advertised)
    endpoints: tuple[EndpointCapacity, ...] = field(default=())

    def describe(self) -> str:
        if self.source == "explicit":
            return f"{self.sessions_per_worker} sessions per worker (--sessions_per_worker)"
        if self.source == "default":
            return (
                f"{self.sessions_per_worker} sessions per worker (the service advertises no capacity; "
                "set --sessions_per_worker to size the job)"
            )
        return (
            f"{self.sessions_per_worker} sessions per worker = max(1, floor({self.capacity} sessions x "
            f"{self.utilisation:g} / {self.expected_workers} worker processes))"
        )


def size(
    explicit: int | None,
    capacities: Sequence[EndpointCapacity],
    expected_workers: int,
    utilisation: float = DEFAULT_UTILISATION,
) -> Sizing:
    """Explicit wins; else the formula over what was advertised; else the default."""
    known = [c.capacity for c in capacities if c.capacity is not None]
    total = sum(known) if known else None
    if explicit is not None:
        return Sizing(explicit, "explicit", expected_workers, utilisation, total, tuple(capacities))
    if total is None:
        return Sizing(DEFAULT_SESSIONS_PER_WORKER, "default", expected_workers, utilisation, None, tuple(capacities))
    spw = sessions_per_worker(total, expected_workers, utilisation)
    return Sizing(spw, "capacity", expected_workers, utilisation, total, tuple(capacities))


# ---------------------------------------------------------------------------
# voxbeam plan


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


def _fmt_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    m = seconds / 60
    if m < 90:
        return f"{m:.0f} min"
    return f"{m / 60:.1f} h"


def _positive(kind: type[Any]) -> Any:
    def parse(text: str) -> Any:
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def plan_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="voxbeam plan",
        description="Expected wall time of a job on a fleet, and the sessions per worker to use. "
        "Transcription: --hours (of audio) or --files with --minutes_per_file; synthesis: --characters.",
    )
    add = p.add_argument
    add("--files", type=_positive(int), help="input files (or text records)")
    add("--hours", type=_positive(float), help="total hours of audio (transcription)")
    add("--minutes_per_file", type=_positive(float), help="mean file length in minutes (with --files)")
    add("--characters", type=_positive(int), help="total characters of text (synthesis)")
    add("--workers", type=_positive(int), required=True, help="Beam workers at the peak (Dataflow: max_num_workers)")
    add(
        "--processes_per_worker",
        type=_positive(int),
        default=1,
        help="SDK processes per worker (Dataflow: one per vCPU; default 1)",
    )
    add("--replicas", type=_positive(int), help="server replicas (with --capacity)")
    add("--capacity", type=_positive(int), help="sessions per replica (the server's --max_sessions)")
    add("--endpoint", help="read replicas and capacity from these endpoints' /healthz instead (comma-separated)")
    add(
        "--per_session_rate",
        type=_positive(float),
        required=True,
        help="measured throughput of one session: audio seconds per second (transcription) or characters "
        "per second (synthesis); e.g. rate(voxbeam_audio_seconds_total) / voxbeam_sessions_open on a busy replica",
    )
    add(
        "--replica_rate",
        type=_positive(float),
        help="measured throughput one replica sustains when full (same unit); caps the fleet's",
    )
    add("--utilisation", type=float, default=DEFAULT_UTILISATION, help="share of the fleet to plan for (0.8)")
    add("--sessions_per_worker", type=_positive(int), help="use this instead of the formula")
    add("--json", action="store_true", help="print the plan as JSON")
    return p


def plan_main(argv: Sequence[str] | None = None) -> int:
    """``voxbeam plan``: prints the plan; exit status 2 on a usage error."""
    parser = plan_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2

    def usage(message: str) -> int:
        parser.print_usage()
        print(f"voxbeam plan: error: {message}")
        return 2

    if not 0 < args.utilisation <= 1:
        return usage("--utilisation must be in (0, 1]")
    if args.characters:
        work, unit, inputs = float(args.characters), "characters", args.files or 1
        longest = work / inputs
    elif args.hours:
        work, unit, inputs = args.hours * 3600, "audio seconds", args.files or max(1, round(args.hours * 60))
        longest = args.minutes_per_file * 60 if args.minutes_per_file else work / inputs
    elif args.files and args.minutes_per_file:
        work, unit, inputs = args.files * args.minutes_per_file * 60, "audio seconds", args.files
        longest = args.minutes_per_file * 60
    else:
        return usage("give --hours, --files with --minutes_per_file, or --characters")
    replicas, capacity = args.replicas, args.capacity
    if args.endpoint:
        endpoints = [e.strip() for e in args.endpoint.split(",") if e.strip()]
        found = advertised_capacity(endpoints, os.environ.get(protocol.API_KEY_ENV) or None)
        known = [c for c in found if c.capacity]
        if not known:
            return usage(f"{args.endpoint} advertises no capacity; give --replicas and --capacity")
        replicas = sum(max(1, c.replicas) for c in known)
        capacity = max(1, sum(c.capacity or 0 for c in known) // replicas)
    if not replicas or not capacity:
        return usage("give --replicas and --capacity, or --endpoint")
    result = plan(
        work=work,
        inputs=inputs,
        longest_input=longest,
        workers=args.workers,
        processes_per_worker=args.processes_per_worker,
        replicas=replicas,
        capacity=capacity,
        per_session_rate=args.per_session_rate,
        replica_rate=args.replica_rate,
        utilisation=args.utilisation,
        explicit_sessions_per_worker=args.sessions_per_worker,
    )
    if args.json:
        print(json.dumps({"unit": unit, "work": work, "inputs": inputs, **asdict(result)}, indent=2))
        return 0
    speed = f"{result.throughput:.1f}x real time" if unit == "audio seconds" else f"{result.throughput:.0f} chars/s"
    print(f"work: {work:,.0f} {unit} in {inputs:,} inputs")
    print(
        f"fleet: {replicas} replicas x {capacity} sessions = {result.fleet_capacity} sessions; "
        f"{result.worker_processes} worker processes ({args.workers} workers x {args.processes_per_worker})"
    )
    print(
        f"sessions per worker: {result.sessions_per_worker}"
        + ("" if args.sessions_per_worker else f"  (max(1, floor({result.fleet_capacity} x {args.utilisation:g} / "
           f"{result.worker_processes})))")
    )  # fmt: skip
    print(
        f"concurrent sessions: {result.sessions} ({result.fleet_utilisation:.0%} of the fleet; "
        f"limited by {result.limited_by})"
    )
    print(f"throughput: {speed}")
    print(f"expected wall time: {_fmt_duration(result.wall_seconds)}")
    for w in result.warnings:
        print(f"note: {w}")
    return 0
