"""One exception hierarchy for VoxBeam; every error says whether retrying can help."""

from __future__ import annotations

import errno
import re

from voxbeam.protocol import RETRYABLE_CODES, ErrorCode


class VoxBeamError(Exception):
    """Root of every VoxBeam error. ``code`` is a protocol code or a local one."""

    code: str = "VOXBEAM_ERROR"
    retryable: bool = False
    # How many attempts the request made before this error surfaced (the client sets it).
    attempts: int = 1

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


class InvalidRequestError(ServiceError):
    """The service refused the request as given (bad language, voice, format, ...); never retried."""


class ServerBusyError(ServiceError):
    """The service is at capacity (SERVER_BUSY or close 1013); retried with backoff."""

    def __init__(self, message: str = "the service is at capacity", *, request_id: str | None = None) -> None:
        super().__init__(message, code=ErrorCode.SERVER_BUSY.value, request_id=request_id)


_PERMANENT_REQUEST_CODES = frozenset(
    {
        ErrorCode.UNSUPPORTED_FORMAT.value,
        ErrorCode.UNSUPPORTED_LANGUAGE.value,
        ErrorCode.UNSUPPORTED_SAMPLE_RATE.value,
        ErrorCode.VOICE_NOT_FOUND.value,
        ErrorCode.INVALID_AUDIO.value,
        ErrorCode.TEXT_TOO_LONG.value,
        ErrorCode.MESSAGE_TOO_LARGE.value,
        ErrorCode.INVALID_MESSAGE.value,
        ErrorCode.NOT_INITIALIZED.value,
        ErrorCode.UNSUPPORTED_OPTION.value,
    }
)


def service_error(code: str, message: str, request_id: str | None = None) -> ServiceError:
    """The typed exception for an ``error`` message from the service."""
    if code == ErrorCode.UNAUTHORIZED.value:
        return AuthenticationError(message or "the service rejected the API key", request_id=request_id)
    if code == ErrorCode.SERVER_BUSY.value:
        return ServerBusyError(message or "the service is at capacity", request_id=request_id)
    if code in _PERMANENT_REQUEST_CODES:
        return InvalidRequestError(message, code=code, request_id=request_id)
    return ServiceError(message, code=code, request_id=request_id)


class ConnectionLostError(VoxBeamError):
    """The connection failed or dropped before the exchange finished."""

    code = "CONNECTION_LOST"
    retryable = True


class RequestTimeoutError(VoxBeamError):
    """A connect, ready, result or record deadline passed."""

    code = "TIMEOUT"
    retryable = True


class PoolTimeoutError(RequestTimeoutError):
    """No pooled session became free in time; the request never started, so it is not retried."""

    code = "POOL_TIMEOUT"
    retryable = False


class ServiceUnavailableError(VoxBeamError):
    """Every endpoint is refusing connections (all circuits open); ``last`` says how the last one failed.

    Retryable: the pool holds records while it probes the endpoints; this surfaces only when a
    record's retry budget has run out meanwhile.
    """

    code = "SERVICE_UNAVAILABLE"
    retryable = True

    def __init__(self, last: VoxBeamError | None, down_for: float) -> None:
        why = f": {last}" if last is not None else ""
        super().__init__(f"the service has been unavailable for {down_for:.1f} s{why}", code=self.code)
        self.last = last
        self.down_for = down_for


class RetriesExhaustedError(VoxBeamError):
    """A record kept failing with retryable errors until its retry budget (or attempt cap) ran out.

    ``last`` is the final error, ``attempts`` the attempts made (time spent waiting for an
    unavailable service is not an attempt), ``waited`` the seconds since the record started
    failing (or since the outage it waited out began).
    """

    code = "RETRIES_EXHAUSTED"

    def __init__(
        self, last: VoxBeamError, attempts: int, waited: float | None = None, budget: float | None = None
    ) -> None:
        tries = "no attempt" if attempts == 0 else f"{attempts} attempt{'' if attempts == 1 else 's'}"
        if waited is None:
            head = f"gave up after {tries}"
        else:
            cap = f", retry budget {budget:g} s" if budget is not None else ""
            head = f"gave up after {waited:.1f} s of retrying ({tries}{cap})"
        super().__init__(f"{head}: {last}", code=self.code)
        self.last = last
        self.attempts = attempts
        self.waited = waited


class ProtocolViolationError(VoxBeamError):
    """The service sent something the protocol does not allow; the session is dropped and retried."""

    code = "PROTOCOL_ERROR"
    retryable = True


class HandshakeRejectedError(VoxBeamError):
    """The service refused the WebSocket upgrade with an HTTP status that retrying cannot fix."""

    code = "HANDSHAKE_REJECTED"


class TLSVerificationError(VoxBeamError):
    """The service's TLS certificate did not verify (unknown CA, wrong host name, expired).

    Never retried: the same certificate fails the same way. Pass the CA that signed it as
    ``ca_bundle`` (``--ca_bundle``) for a private or self-signed service.
    """

    code = "TLS_VERIFICATION_FAILED"


class ClientClosedError(VoxBeamError):
    """The client was closed while the request waited or ran."""

    code = "CLIENT_CLOSED"


class AudioError(VoxBeamError):
    """An input could not be read or decoded as audio (never retried)."""

    code = "INVALID_AUDIO"


class InputError(VoxBeamError):
    """A record is unusable as given (missing file, missing text, ...)."""

    code = "INVALID_INPUT"


class UsageError(VoxBeamError):
    """A job's flag, input or environment is wrong; found before any record is processed.

    ``flag`` names the option to fix (empty when none applies); the CLI prints the one line
    and exits with status 2.
    """

    code = "USAGE_ERROR"

    def __init__(self, flag: str, message: str) -> None:
        super().__init__(f"{flag}: {message}" if flag else message)
        self.flag = flag


# What an OS error means for a path, in words (the system's own text starts "[Errno N]").
_OS_ERROR_WORDS = {
    errno.ENOENT: "{path} does not exist",
    errno.EACCES: "permission to {path} is denied",
    errno.EPERM: "the system does not allow this on {path}",
    errno.EEXIST: "{path} already exists",
    errno.ENOTDIR: "a part of {path} is a file, not a folder",
    errno.EISDIR: "{path} is a folder, not a file",
    errno.EROFS: "{path} is on a read-only file system",
    errno.ENOSPC: "no space is left on the device that holds {path}",
    errno.EDQUOT: "the disk quota for {path} is used up",
    errno.ENAMETOOLONG: "the path {path} is too long",
    errno.ELOOP: "{path} loops through symbolic links",
    errno.EMFILE: "too many files are open to open {path}",
    errno.ECONNREFUSED: "nothing accepts connections at {path} (connection refused)",
    errno.ETIMEDOUT: "{path} did not answer in time",
    errno.EHOSTUNREACH: "there is no route to {path}",
}
_ERRNO_TEXT = re.compile(r"\[Errno -?\d+\] ")


def describe_os_error(exc: OSError, path: str | None = None) -> str:
    """One sentence for ``exc`` that names ``path`` (or the file the error names) without errno numbers."""
    if exc.errno is None:  # raised by us with a message of our own
        return str(exc)
    where = path or exc.filename or "the file"
    words = _OS_ERROR_WORDS.get(exc.errno)
    if words:
        return words.format(path=where)
    reason = (exc.strerror or _ERRNO_TEXT.sub("", str(exc)) or type(exc).__name__).rstrip(".")
    return f"{where}: {reason[:1].lower()}{reason[1:]}"
