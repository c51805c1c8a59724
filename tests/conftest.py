"""The one speech server every test shares: `python -m voxbeam.server` on a free port, real engines."""

from __future__ import annotations

from collections.abc import Iterator

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
