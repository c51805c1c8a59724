"""Sessions per worker from what the fleet advertises and the runner's options.

The formula and where its inputs come from are in ``voxbeam.client.sizing``; this module adds
what only Beam knows: how many worker processes a job may have at its peak.

The jobs layer calls ``resolve_sessions_per_worker`` once, at job start, after the pre-flight
check and before it builds ``ServiceSettings``::

    sizing = resolve_sessions_per_worker(config.sessions_per_worker, endpoints, key, options,
                                         auth=config.auth, ca_bundle=config.ca_bundle)
    settings = ServiceSettings(..., sessions_per_worker=sizing.sessions_per_worker)  # the run's only one

with ``--sessions_per_worker`` defaulting to None, so that an explicit value can win.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from apache_beam.options.pipeline_options import (
    DebugOptions,
    DirectOptions,
    PipelineOptions,
    StandardOptions,
    WorkerOptions,
)

from voxbeam.client.sizing import DEFAULT_UTILISATION, Sizing, advertised_capacity, size

# Dataflow's ceiling for an autoscaled batch job that sets no --max_num_workers.
DATAFLOW_DEFAULT_MAX_WORKERS = 1000
DATAFLOW_DEFAULT_MACHINE = "n1-standard-1"
# Shared-core machine types (the vCPUs Dataflow starts SDK processes for).
_SHARED_CORE = {"e2-micro": 2, "e2-small": 2, "e2-medium": 2, "f1-micro": 1, "g1-small": 1}
_LOCAL = {"", "none", "directrunner", "direct", "fnapirunner", "fnapi", "prismrunner", "prism", "switchingdirectrunner"}


def vcpus(machine_type: str) -> int:
    """vCPUs of a Compute Engine machine type (n1-standard-4 -> 4, custom-6-23040 -> 6); 1 if unknown."""
    name = machine_type.rsplit("/", 1)[-1].lower()
    if name in _SHARED_CORE:
        return _SHARED_CORE[name]
    custom = re.search(r"custom-(\d+)-\d+", name)
    if custom:
        return int(custom.group(1))
    trailing = re.search(r"-(\d+)$", name)
    return int(trailing.group(1)) if trailing else 1


def expected_workers(options: PipelineOptions) -> int:
    """Worker processes the job may run at its peak, each with its own session pool.

    - Dataflow: ``max_num_workers`` (else ``num_workers`` when autoscaling is off, else Dataflow's
      default ceiling of 1000) x SDK processes per worker: one per vCPU of ``machine_type``, or
      one with the ``no_use_multiple_sdk_containers`` experiment.
    - DirectRunner / FnApiRunner: ``direct_num_workers`` in ``multi_processing`` mode (0 means one
      per core); one process otherwise.
    - Flink: ``parallelism`` when set. Other runners: 1 (set --sessions_per_worker yourself).
    """
    runner = str(options.view_as(StandardOptions).runner or "").lower()
    runner = runner.rsplit(".", 1)[-1]
    if runner in _LOCAL:
        direct = options.view_as(DirectOptions)
        if direct.direct_running_mode == "multi_processing":
            n = direct.direct_num_workers
            return max(1, n if n else (os.cpu_count() or 1))
        return 1
    if "dataflow" in runner:
        worker = options.view_as(WorkerOptions)
        autoscaling = (worker.autoscaling_algorithm or "").upper()
        if worker.max_num_workers:
            machines = worker.max_num_workers
        elif worker.num_workers and autoscaling == "NONE":
            machines = worker.num_workers
        else:
            machines = max(DATAFLOW_DEFAULT_MAX_WORKERS, worker.num_workers or 0)
        experiments = options.view_as(DebugOptions).experiments or []
        per_machine = (
            1
            if "no_use_multiple_sdk_containers" in experiments
            else vcpus(worker.machine_type or DATAFLOW_DEFAULT_MACHINE)
        )
        return max(1, machines * per_machine)
    if "flink" in runner:
        parallelism = options.get_all_options(retain_unknown_options=True).get("parallelism")
        if isinstance(parallelism, int) and parallelism > 0:
            return parallelism
    return 1


def resolve_sessions_per_worker(
    explicit: int | None,
    endpoints: Sequence[str],
    api_key: str | None,
    options: PipelineOptions,
    *,
    auth: str = "header",
    ca_bundle: str | None = None,
    utilisation: float = DEFAULT_UTILISATION,
) -> Sizing:
    """The sessions per worker to use: ``explicit`` when given, else from the fleet's capacity (``size``)."""
    workers = expected_workers(options)
    if explicit is not None:
        return size(explicit, (), workers, utilisation)
    capacities = advertised_capacity(endpoints, api_key, auth=auth, ca_bundle=ca_bundle)
    return size(None, capacities, workers, utilisation)
