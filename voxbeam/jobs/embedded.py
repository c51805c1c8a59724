"""The embedded server: `voxbeam serve` started as a subprocess when a command is given no --endpoint,
and stopped whatever happens. No Beam import here: ``voxbeam caption`` starts one too."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from voxbeam.errors import UsageError

if TYPE_CHECKING:
    from voxbeam.jobs.interrupt import Emergency  # it imports Beam
    from voxbeam.server.launcher import LocalServer

_LOG = logging.getLogger("voxbeam")


@contextlib.contextmanager
def embedded_server(model: str | None = None, emergency: Emergency | None = None) -> Iterator[LocalServer]:
    """A started ``voxbeam serve`` on a free port, serving ``model`` (--stt_model), and only that one, when given.

    A server that does not start is a ``UsageError`` (exit 2) naming --stt_model when a model was asked
    for (most likely one it cannot load or that is not installed), else --endpoint. The server is stopped
    on the way out whatever happens: an error, Ctrl-C while it starts or stops, or (through ``emergency``)
    a second Ctrl-C that quits the process at once.
    """
    from voxbeam.server.launcher import LocalServer  # only when one is started: the server's modules take seconds

    _LOG.info("no --endpoint: starting an embedded voxbeam server")
    server = LocalServer(extra_args=["--stt_model", model] if model else [])
    try:
        server.start()
    except Exception as exc:
        server.kill()
        if model:
            raise UsageError("--stt_model", f"the embedded server did not start with model {model!r}: {exc}") from None
        raise UsageError("--endpoint", f"none given and the embedded server did not start: {exc}") from None
    except BaseException:
        server.kill()
        raise
    if emergency is not None:
        emergency.add(server.kill)
    try:
        yield server
    finally:
        try:
            server.stop()
        except BaseException:  # Ctrl-C while it drains: do not leave it running
            server.kill()
            raise
