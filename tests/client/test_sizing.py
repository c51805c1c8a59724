"""Fleet sizing: the formula, the runner's worker count, the capacity servers advertise, `voxbeam plan`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from typing import Any

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from tests.client.spec_server import ThreadedSpecServer
from tests.reliability.conftest import dedicated_server
from voxbeam.beam.sizing import expected_workers, resolve_sessions_per_worker, vcpus
from voxbeam.cli import main as cli_main
from voxbeam.client.sizing import (
    EndpointCapacity,
    advertised_capacity,
    healthz_capacity,
    plan,
    sessions_per_worker,
    size,
)


@pytest.mark.parametrize(
    ("capacity", "workers", "utilisation", "expected"),
    [
        (64, 1, 0.8, 51),
        (64, 2, 0.8, 25),
        (128, 10, 0.8, 10),
        (160, 200, 0.8, 1),  # more processes than sessions: one each, never zero
        (0, 4, 0.8, 1),
        (100, 4, 1.0, 25),
        (10, 4, 0.5, 1),
    ],
)
def test_the_formula(capacity: int, workers: int, utilisation: float, expected: int) -> None:
    assert sessions_per_worker(capacity, workers, utilisation) == expected


def test_the_formula_rejects_nonsense() -> None:
    for args in [(10, 0, 0.8), (10, 1, 0.0), (10, 1, 1.5), (-1, 1, 0.8)]:
        with pytest.raises(ValueError):
            sessions_per_worker(*args)


@pytest.mark.parametrize(
    ("machine", "n"),
    [("n1-standard-1", 1), ("n1-standard-4", 4), ("e2-highmem-16", 16), ("c3-standard-22", 22),
     ("custom-6-23040", 6), ("n2-custom-8-32768", 8), ("e2-medium", 2), ("zones/x/machineTypes/n2-standard-32", 32),
     ("weird", 1)],
)  # fmt: skip
def test_vcpus_of_machine_types(machine: str, n: int) -> None:
    assert vcpus(machine) == n


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], 1),
        (["--runner", "DirectRunner"], 1),
        (["--runner", "DirectRunner", "--direct_running_mode", "multi_processing", "--direct_num_workers", "3"], 3),
        (["--runner", "DirectRunner", "--direct_running_mode", "multi_threading", "--direct_num_workers", "3"], 1),
        (["--runner", "DataflowRunner", "--max_num_workers", "10", "--machine_type", "n1-standard-4"], 40),
        (["--runner", "DataflowRunner", "--max_num_workers", "10", "--machine_type", "n1-standard-4",
          "--experiments", "no_use_multiple_sdk_containers"], 10),
        (["--runner", "DataflowRunner", "--num_workers", "5", "--autoscaling_algorithm", "NONE"], 5),
        (["--runner", "DataflowRunner", "--num_workers", "5"], 1000),  # autoscaled with no ceiling given
        (["--runner", "FlinkRunner", "--parallelism", "12"], 12),
        (["--runner", "SparkRunner"], 1),
    ],
)  # fmt: skip
def test_expected_workers_from_runner_options(flags: list[str], expected: int) -> None:
    assert expected_workers(PipelineOptions(flags)) == expected


def test_explicit_sessions_per_worker_wins_without_asking_the_service() -> None:
    options = PipelineOptions(["--runner", "DataflowRunner", "--max_num_workers", "100"])
    sizing = resolve_sessions_per_worker(3, ["ws://127.0.0.1:9"], None, options)
    assert (sizing.sessions_per_worker, sizing.source, sizing.capacity) == (3, "explicit", None)
    assert "--sessions_per_worker" in sizing.describe()


def test_capacity_from_healthz_of_each_endpoint(server) -> None:
    with dedicated_server(workers=1, max_sessions=16, api_keys=[server.api_key]) as small:
        found = advertised_capacity([server.url, small.url], server.api_key)
        assert [(c.capacity, c.replicas, c.source) for c in found] == [(64, 1, "healthz"), (16, 1, "healthz")]
        options = PipelineOptions(["--runner", "DirectRunner", "--direct_running_mode", "multi_processing",
                                   "--direct_num_workers", "4"])  # fmt: skip
        # The sessions that keep the workers busy (2 + 1 workers, 6 each), not every one of the 80 slots.
        assert [c.bulk_sessions for c in found] == [12, 6]
        sizing = resolve_sessions_per_worker(None, [server.url, small.url], server.api_key, options)
        assert (sizing.source, sizing.capacity, sizing.expected_workers) == ("bulk", 18, 4)
        assert sizing.sessions_per_worker == 3  # floor(18 * 0.8 / 4)
        assert "floor(18 bulk sessions that keep the fleet busy x 0.8 / 4 worker processes)" in sizing.describe()

        # Two replicas behind one address (as behind a Kubernetes Service): each counted once, by the replica
        # id /healthz gives key holders; without the key it tells capacity only, so one address is one replica.
        with RoundRobin([server.port, small.port]) as service:
            behind = healthz_capacity(service.url, api_key=server.api_key)
            anonymous = healthz_capacity(service.url)
        assert (behind.capacity, behind.replicas, behind.bulk_sessions) == (80, 2, 18)
        assert anonymous.replicas == 1 and anonymous.capacity in (64, 16)


class RoundRobin:
    """A TCP forwarder that sends each new connection to the next upstream port (like kube-proxy)."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.url = ""
        self._n = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        port = self.ports[self._n % len(self.ports)]
        self._n += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _start(self) -> Any:
        return await asyncio.start_server(self._handle, "127.0.0.1", 0)

    def __enter__(self) -> RoundRobin:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        self.url = f"ws://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def test_capacity_from_the_ready_message_when_there_is_no_healthz() -> None:
    with ThreadedSpecServer(ready_extra={"capacity": 12}) as spec:
        [found] = advertised_capacity([spec.url], spec.api_key)
    assert (found.capacity, found.source, found.bulk_sessions) == (12, "ready", None)
    # A service that does not say what keeps it busy: its session slots.
    sizing = size(None, [found], expected_workers=1)
    assert (sizing.source, sizing.sessions_per_worker) == ("capacity", 9)
    assert "floor(12 sessions x 0.8 / 1 worker processes)" in sizing.describe()


def test_no_capacity_advertised_keeps_the_default() -> None:
    with ThreadedSpecServer() as spec:  # the spec's ready message: no capacity
        [found] = advertised_capacity([spec.url], spec.api_key)
    assert found == EndpointCapacity(spec.url, None)
    sizing = size(None, [found], expected_workers=50)
    assert (sizing.sessions_per_worker, sizing.source) == (8, "default")
    assert "advertises no capacity" in sizing.describe()


def test_sizing_counts_what_keeps_each_endpoint_busy_and_the_slots_of_one_that_does_not_say() -> None:
    fleet = [EndpointCapacity("ws://a", 64, 2, "healthz", 12), EndpointCapacity("ws://b", 16, 1, "healthz", None)]
    sizing = size(None, fleet, expected_workers=2)
    assert (sizing.source, sizing.capacity, sizing.sessions_per_worker) == ("bulk", 28, 11)  # floor(28 * 0.8 / 2)


def test_plan_numbers() -> None:
    p = plan(work=3600.0 * 100, inputs=6000, longest_input=60.0, workers=10, processes_per_worker=4, replicas=4,
             capacity=32, per_session_rate=2.0)  # fmt: skip
    assert p.worker_processes == 40 and p.sessions_per_worker == 2  # floor(128 * 0.8 / 40)
    assert p.sessions == 80 and p.limited_by == "sessions per worker"
    assert p.throughput == 160.0 and p.wall_seconds == pytest.approx(360000 / 160)
    # The engines' ceiling caps it; a single long input bounds it from below.
    capped = plan(work=3600.0, inputs=2, longest_input=3000.0, workers=1, processes_per_worker=1, replicas=1,
                  capacity=8, per_session_rate=1.5, replica_rate=2.0)  # fmt: skip
    assert capped.sessions == 2 and capped.throughput == 2.0 and capped.wall_seconds == 2000.0
    over = plan(work=1000.0, inputs=1000, longest_input=1.0, workers=100, processes_per_worker=1, replicas=1,
                capacity=16, per_session_rate=1.0)  # fmt: skip
    assert over.sessions == 16 and any("refused with SERVER_BUSY" in w for w in over.warnings)


def test_voxbeam_plan_command(capsys, server) -> None:
    assert cli_main(["plan", "--hours", "100", "--files", "6000", "--workers", "10", "--processes_per_worker", "4",
                     "--replicas", "4", "--capacity", "32", "--per_session_rate", "2"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "sessions per worker: 2  (max(1, floor(128 x 0.8 / 40)))" in out
    assert "expected wall time: 38 min" in out and "throughput: 160.0x real time" in out

    assert cli_main(["plan", "--characters", "1000000", "--files", "20000", "--workers", "2", "--endpoint",
                     server.url, "--per_session_rate", "400", "--json"]) == 0  # fmt: skip
    doc = json.loads(capsys.readouterr().out)
    # As the job sizes itself: the 12 sessions that keep the shared server's 2 workers busy, not its 64 slots.
    assert doc["fleet_capacity"] == 12 and doc["sessions_per_worker"] == 4 and doc["unit"] == "characters"

    assert cli_main(["plan", "--workers", "2", "--per_session_rate", "1", "--replicas", "1", "--capacity", "4"]) == 2
    assert "give --hours" in capsys.readouterr().out
