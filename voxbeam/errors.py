"""One exception hierarchy for VoxBeam; every error says whether retrying can help."""

from __future__ import annotations

from voxbeam.protocol import RETRYABLE_CODES, ErrorCode


class VoxBeamError(Exception):
    """Root of every VoxBeam error. ``code`` is a protocol code or a local one."""

    code: str = "VOXBEAM_ERROR"
    retryable: bool = False

    def __init__(self, message: str, *, code: str | None = None, request_id: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.request_id = request_id

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ServiceError(VoxBeamError):
    """The service answered with a protocol error message."""

    def __init__(self, message: str, *, code: str, request_id: str | None = None) -> None:
        super().__init__(message, code=code, request_id=request_id)
        self.retryable = code in RETRYABLE_CODES

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class AuthenticationError(ServiceError):
    """The service rejected the API key (UNAUTHORIZED / close 1008)."""

    def __init__(self, message: str = "the service rejected the API key", *, request_id: str | None = None) -> None:
        super().__init__(message, code=ErrorCode.UNAUTHORIZED.value, request_id=request_id)


class ConnectionLostError(VoxBeamError):
    """The connection failed or dropped before the exchange finished."""

    code = "CONNECTION_LOST"
    retryable = True


class RequestTimeoutError(VoxBeamError):
    """A connect, ready, result or record deadline passed."""

    code = "TIMEOUT"
    retryable = True


class RetriesExhaustedError(VoxBeamError):
    """Every attempt failed with a retryable error; ``last`` is the final one."""

    code = "RETRIES_EXHAUSTED"

    def __init__(self, last: VoxBeamError, attempts: int) -> None:
        super().__init__(f"gave up after {attempts} attempts: {last}", code=self.code)
        self.last = last
        self.attempts = attempts


class AudioError(VoxBeamError):
    """An input could not be read or decoded as audio (never retried)."""

    code = "INVALID_AUDIO"


class InputError(VoxBeamError):
    """A record is unusable as given (missing file, missing text, ...)."""

    code = "INVALID_INPUT"
