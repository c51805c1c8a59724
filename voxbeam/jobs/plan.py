"""``voxbeam plan``: the expected wall time of a job on a fleet, and the sessions per worker to use
(the formula: ``voxbeam.client.sizing``)."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from dataclasses import asdict

from voxbeam import protocol
from voxbeam.client.sizing import DEFAULT_UTILISATION, advertised_capacity, plan
from voxbeam.flag_values import positive, whole_number


def _fmt_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    m = seconds / 60
    if m < 90:
        return f"{m:.0f} min"
    return f"{m / 60:.1f} h"


def plan_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="voxbeam plan",
        description="Expected wall time of a job on a fleet, and the sessions per worker to use. "
        "Transcription: --hours (of audio) or --files with --minutes_per_file; synthesis: --characters.",
    )
    add = p.add_argument
    add("--files", type=whole_number(1), help="input files (or text records)")
    add("--hours", type=positive, help="total hours of audio (transcription)")
    add("--minutes_per_file", type=positive, help="mean file length in minutes (with --files)")
    add("--characters", type=whole_number(1), help="total characters of text (synthesis)")
    add("--workers", type=whole_number(1), required=True, help="Beam workers at the peak (Dataflow: max_num_workers)")
    add(
        "--processes_per_worker",
        type=whole_number(1),
        default=1,
        help="SDK processes per worker (Dataflow: one per vCPU; default 1)",
    )
    add("--replicas", type=whole_number(1), help="server replicas (with --capacity)")
    add(
        "--capacity",
        type=whole_number(1),
        help="sessions per replica a job uses: its /healthz bulk_sessions (6 per engine worker), else --max_sessions",
    )
    add("--endpoint", help="read replicas and capacity from these endpoints' /healthz instead (comma-separated)")
    add(
        "--per_session_rate",
        type=positive,
        required=True,
        help="measured throughput of one session: audio seconds per second (transcription) or characters "
        "per second (synthesis); e.g. rate(voxbeam_audio_seconds_total) / voxbeam_sessions_open on a busy replica",
    )
    add(
        "--replica_rate",
        type=positive,
        help="measured throughput one replica sustains when full (same unit); caps the fleet's",
    )
    add("--utilisation", type=float, default=DEFAULT_UTILISATION, help="share of the fleet to plan for (0.8)")
    add("--sessions_per_worker", type=whole_number(1), help="use this instead of the formula")
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
        # As a job sizes itself: the sessions that keep each replica busy where it says, else its slots.
        busy = sum((c.bulk_sessions if c.bulk_sessions is not None else c.capacity) or 0 for c in known)
        capacity = max(1, busy // replicas)
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
