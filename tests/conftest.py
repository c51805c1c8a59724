"""The one speech server every test shares: `python -m voxbeam.server` on a free port, real engines."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from voxbeam.server.launcher import LocalServer


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


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The random order's seed, even under -q: a failure that depends on the order can be run again."""
    seed = getattr(config.option, "randomly_seed", None)
    if seed is not None and getattr(config.option, "randomly_reorganize", True):
        terminalreporter.write_line(
            f"test order: pytest-randomly seed {seed} (the same order again: --randomly-seed={seed})"
        )
