"""The server side's exceptions: one root, ``ServerError``.

What a client is told travels as a protocol ``ErrorCode`` (``EngineError.code``); everything
else here is about the server's own parts: its options and models at start, its worker
processes while it runs.
"""

from __future__ import annotations

from voxbeam.protocol import ErrorCode


class ServerError(Exception):
    """Root of every server-side error."""


class ConfigError(ServerError):
    """An option, model or voice the server cannot start with; the message is one line for the operator."""


class ModelError(ConfigError):
    """Model weights missing, unreadable or not the pinned ones (names the file or the pip command)."""


class EngineError(ServerError):
    """An engine refused a request; ``code`` is what the client is told.

    Raised inside a worker process and raised again, with the same code and message, where the
    server awaits the call.
    """

    def __init__(self, code: ErrorCode | str, message: str) -> None:
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message


class WorkerError(ServerError):
    """A worker process could not serve a call."""


class WorkerDied(WorkerError):
    """The worker process ended while a call was in flight."""


class WorkerUnavailable(WorkerError):
    """No worker is alive to take the work."""


class ServerStartError(ServerError):
    """A launched server exited or did not become ready; the message ends with its log's tail."""
