"""The one speech server every test shares: `python -m voxbeam.server` on a free port, real engines; and the one
extra server for the tests that need a second model (``tiers``)."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from voxbeam.server.launcher import LocalServer


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """Restores the root logger after each test.

    The CLI run in-process points the root logger at the stderr that pytest captures for one test and then
    closes: left in place, every later log line becomes a 'Logging error' on the real stderr."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


# The suite runs on two xdist workers (pyproject.toml's addopts, --dist loadgroup). The tests of the shared
# servers (and of the Pub/Sub emulator: its tests use the server too) are one group, so one worker starts each
# server once and gives it one test at a time, as those tests assume (counters, capacity, idle), with the tests
# that share a module fixture with them (it is built once, on that worker). The other tests (units, and those
# that start servers of their own) run on the other worker meanwhile, a module at a time for the same reason,
# in the time the first leaves idle.
SHARED_GROUP = "shared-servers"
SHARED_FIXTURES = {"server", "tiers", "pubsub_emulator"}


def _module_fixtures(item: pytest.Item) -> set[tuple[str, str]]:
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs.items() if info is not None else ()
    return {(str(item.path), name) for name, d in defs if d and d[-1].scope in ("module", "class", "package")}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    shared = {item.nodeid for item in items if SHARED_FIXTURES & set(getattr(item, "fixturenames", ()))}
    shared_fixtures = {key for item in items if item.nodeid in shared for key in _module_fixtures(item)}
    for item in items:
        if item.nodeid in shared or _module_fixtures(item) & shared_fixtures:
            item.add_marker(pytest.mark.xdist_group(SHARED_GROUP))
        else:
            item.add_marker(pytest.mark.xdist_group(str(item.path)))


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """A started LocalServer (2 workers), stopped at the end of the test session."""
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    srv = LocalServer(workers=2, log_path=str(log_path))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


# What the tests on the extra server cost, for the suite's summary, by phase (the first setup starts it).
_SECOND_MODEL_S: dict[str, float] = {}
# The models each worker of the extra server held when it started (tiers load on first use).
TIERS_AT_START: dict[str, list[list[str]]] = {}


@pytest.fixture(scope="session")
def tiers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """The one extra server with a second model: `--stt_model tiny.en,base` (tiny.en the default, base loaded
    on first use), one worker. Every test that needs a model besides tiny.en uses it, marked ``second_model``."""
    log_path = tmp_path_factory.mktemp("tiers") / "server.log"
    srv = LocalServer(workers=1, log_path=str(log_path), extra_args=["--stt_model", "tiny.en,base"])
    srv.start()
    TIERS_AT_START["worker_models"] = srv.health()["worker_models"]
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def gcs_emulator():
    """An in-memory GCS emulator on a free port (honouring preconditions); STORAGE_EMULATOR_HOST points at it."""
    from tests import gcs

    server, host = gcs.start()
    old = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = host
    from voxbeam.beam import storage

    storage.gcs_client.cache_clear()
    yield storage.gcs_client()
    storage.gcs_client.cache_clear()
    if old is None:
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
    else:
        os.environ["STORAGE_EMULATOR_HOST"] = old
    server.stop()


@pytest.fixture
def bucket(gcs_emulator):
    """A fresh bucket name in the emulator."""
    name = f"voxbeam-test-{uuid.uuid4().hex[:10]}"
    gcs_emulator.create_bucket(name)
    return name


@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Google Cloud CLI's Pub/Sub emulator on a free port; PUBSUB_EMULATOR_HOST points at it."""
    from tests import pubsub

    missing = pubsub.command(0)
    if isinstance(missing, str):
        pytest.skip(f"no Pub/Sub emulator: {missing}")
    emulator = pubsub.Emulator(str(tmp_path_factory.mktemp("pubsub") / "emulator.log"))
    old = os.environ.get("PUBSUB_EMULATOR_HOST")
    os.environ["PUBSUB_EMULATOR_HOST"] = emulator.host
    try:
        yield emulator.host
    finally:
        if old is None:
            os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = old
        emulator.stop()


# .ci/run sets it: on a CI machine everything a test needs is installed, so a skip is a failure.
NO_SKIPS_ENV = "VOXBEAM_NO_SKIPS"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and os.environ.get(NO_SKIPS_ENV) and not hasattr(report, "wasxfail"):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped where {NO_SKIPS_ENV} is set (a CI machine has everything): {reason}"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Sums what the second model's tests cost, on the controller (under xdist the tests run in workers)."""
    if "second_model" in report.keywords:
        _SECOND_MODEL_S[report.when] = _SECOND_MODEL_S.get(report.when, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The random order's seed, even under -q: a failure that depends on the order can be run again; and what
    the tests on the second model's server cost (CI's budget allows one such server)."""
    if _SECOND_MODEL_S:
        parts = ", ".join(f"{what} {s:.1f} s" for what, s in _SECOND_MODEL_S.items())  # setup: the server's start
        terminalreporter.write_line(f"second model (tiers server, marked second_model): {parts}")
    seed = getattr(config.option, "randomly_seed", None)
    if seed is not None and getattr(config.option, "randomly_reorganize", True):
        terminalreporter.write_line(
            f"test order: pytest-randomly seed {seed} (the same order again: --randomly-seed={seed})"
        )
