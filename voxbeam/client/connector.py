"""Opening WebSocket connections to the service: URL, auth, TLS, limits, and errors mapped to ours.

Everything that connects (the pool's sessions, the jobs' pre-flight check, sizing's reads of
``/healthz``) goes through one ``Connector``, and every exception ``websockets`` or the socket
layer raises while connecting becomes a VoxBeam error in one place, ``connect_error`` (a close
from the service later, in ``close_error``). Messages never show the API key nor a password given
in the URL (``ws://user:password@host``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
import urllib.request
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidMessage, InvalidStatus, InvalidURI

import voxbeam
from voxbeam import protocol
from voxbeam.client._redact import RedactingLogger, Redactor
from voxbeam.client.config import ClientConfig
from voxbeam.errors import (
    AuthenticationError,
    ConnectionLostError,
    HandshakeRejectedError,
    RequestTimeoutError,
    ServerBusyError,
    TLSVerificationError,
    VoxBeamError,
    service_error,
)
from voxbeam.protocol import Service

SERVICE_NAMES: dict[Service, str] = {"stt": "speech-to-text", "tts": "text-to-speech"}


def url_secrets(endpoints: tuple[str, ...]) -> list[str]:
    """Passwords given in endpoint URLs, raw and as the Basic auth header websockets sends for them."""
    out = []
    for endpoint in endpoints:
        parts = urlsplit(endpoint)
        if parts.password:
            user, password = unquote(parts.username or ""), unquote(parts.password)
            out += [password, base64.b64encode(f"{user}:{password}".encode()).decode()]
    return out


class Connector:
    """Opens WebSocket connections for one client configuration."""

    def __init__(self, config: ClientConfig, api_key: str | None, redactor: Redactor | None = None) -> None:
        self._config = config
        self._api_key = api_key
        self.redact = redactor or Redactor([api_key, *url_secrets(config.endpoints)])
        self._ws_logger = RedactingLogger(logging.getLogger("websockets.client"), self.redact)
        self._ssl: ssl.SSLContext | None = None
        if any(e.startswith("wss://") for e in config.endpoints):
            self._ssl = ssl.create_default_context(cafile=config.ca_bundle)
            if not config.verify_tls:
                self._ssl.check_hostname = False
                self._ssl.verify_mode = ssl.CERT_NONE

    @property
    def config(self) -> ClientConfig:
        return self._config

    def url(self, endpoint: str, kind: Service) -> str:
        url = endpoint + (protocol.STT_PATH if kind == "stt" else protocol.TTS_PATH)
        if self._config.auth == "query" and self._api_key:
            url += "?" + urlencode({"token": self._api_key})
        return url

    def display_url(self, endpoint: str, kind: Service) -> str:
        """The URL for messages: the key masked before anything else can quote it."""
        url = endpoint + (protocol.STT_PATH if kind == "stt" else protocol.TTS_PATH)
        if self._config.auth == "query" and self._api_key:
            url += "?token=***"
        return self.redact(url)

    async def connect(self, endpoint: str, kind: Service) -> ClientConnection:
        """An open WebSocket to ``endpoint``'s ``kind`` service, or a typed VoxBeam error."""
        headers = {}
        if self._config.auth == "header" and self._api_key:
            headers["X-Api-Key"] = self._api_key
        timeout = self._config.timeouts.connect
        try:
            # asyncio.timeout as well as open_timeout: the latter does not cover a stalled TCP connect
            # through every code path (proxies), and nothing may hang past its deadline.
            async with asyncio.timeout(timeout):
                return await connect(
                    self.url(endpoint, kind),
                    additional_headers=headers,
                    user_agent_header=f"voxbeam/{voxbeam.__version__}",
                    open_timeout=timeout,
                    # Keepalive is the session's own, and only while it sits idle in the pool: a busy
                    # session proves itself with results, and a server holding back its reads under
                    # load would answer automatic pings late and get a healthy session killed.
                    ping_interval=None,
                    close_timeout=min(2.0, timeout),
                    # JSON + base64 audio barely compresses and deflate costs CPU on both ends.
                    compression=None,
                    max_size=self._config.max_message_bytes,
                    logger=self._ws_logger,
                    ssl=self._ssl if endpoint.startswith("wss://") else None,
                )
        except Exception as exc:
            raise connect_error(exc, self.display_url(endpoint, kind), kind, self.redact, timeout) from None

    async def get_json(self, endpoint: str, path: str, timeout: float) -> Any:
        """``GET path`` on the service's HTTP side (``/healthz``) with this client's TLS and key, parsed.

        Raises OSError (unreachable, an HTTP error, TLS) or ValueError (not JSON).
        """
        base = endpoint.rstrip("/").replace("wss://", "https://", 1).replace("ws://", "http://", 1)
        headers = {"User-Agent": f"voxbeam/{voxbeam.__version__}"}
        if self._api_key:  # over HTTP the key goes as a header whatever ``auth`` says: never in a URL
            headers["X-Api-Key"] = self._api_key
        request = urllib.request.Request(base + path, headers=headers)
        context = self._ssl if base.startswith("https://") else None

        def fetch() -> Any:
            with urllib.request.urlopen(request, timeout=timeout, context=context) as resp:
                return json.load(resp)

        return await asyncio.to_thread(fetch)


def connect_error(exc: BaseException, where: str, kind: Service, redact: Redactor, timeout: float) -> VoxBeamError:
    """The VoxBeam error for an exception raised while connecting to ``where`` (already redacted)."""
    if isinstance(exc, VoxBeamError):
        return exc
    tls = where.startswith("wss://")
    if isinstance(exc, TimeoutError):
        return RequestTimeoutError(f"could not connect to {where} within {timeout:g} s")
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        if status in (401, 403):
            return AuthenticationError(f"{where} rejected the API key (HTTP {status})")
        if status in (429, 503):
            return ServerBusyError(f"{where} is at capacity (HTTP {status})")
        if status >= 500:
            return ConnectionLostError(f"{where} failed the handshake (HTTP {status})")
        if status == 404:
            return HandshakeRejectedError(f"{where} has no {SERVICE_NAMES[kind]} service (HTTP 404)")
        return HandshakeRejectedError(f"{where} refused the WebSocket upgrade (HTTP {status})")
    if isinstance(exc, InvalidURI):
        return HandshakeRejectedError(redact(f"invalid endpoint URL {where}: {exc}"))
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TLSVerificationError(tls_message(where, exc))
    hint = ""
    if tls and isinstance(exc, (ssl.SSLError, ConnectionResetError, EOFError)):
        hint = " (is it a plain ws:// port? then use ws://)"
    elif not tls and isinstance(exc, InvalidMessage):
        hint = " (is it a TLS port? then use wss://)"
    if isinstance(exc, (OSError, InvalidHandshake, ConnectionClosed, EOFError)):
        return ConnectionLostError(redact(f"could not connect to {where}: {_reason(exc)}{hint}"))
    return ConnectionLostError(redact(f"could not connect to {where}: {_reason(exc)}"))


def close_error(code: int | None, reason: str | None, redact: Redactor) -> VoxBeamError:
    """The VoxBeam error for a connection the service closed (``code`` None: without a close frame)."""
    reason = reason or ""
    detail = f"code {code}{': ' + reason if reason else ''}" if code is not None else "no close frame"
    if code == protocol.CLOSE_POLICY_VIOLATION:
        return AuthenticationError(f"the service rejected the API key (it closed the session: {detail})")
    if code == protocol.CLOSE_TRY_AGAIN_LATER:
        return ServerBusyError(f"the service closed the session ({detail})")
    if code == protocol.CLOSE_MESSAGE_TOO_BIG:
        return service_error(protocol.ErrorCode.MESSAGE_TOO_LARGE.value, f"the service closed the session ({detail})")
    return ConnectionLostError(redact(f"the connection closed ({detail})"))


def _reason(exc: BaseException) -> str:
    """What went wrong, never empty: a reset connection's own text is ''."""
    if isinstance(exc, ssl.SSLError):
        text = exc.reason or exc.strerror or str(exc)
        return f"TLS handshake failed: {text}" if text else "TLS handshake failed"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "the connection was reset"
    text = str(exc).strip()
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause).strip() and str(cause).strip() not in text:
        text = f"{text}: {str(cause).strip()}" if text else str(cause).strip()
    return text or type(exc).__name__


def tls_message(where: str, exc: ssl.SSLCertVerificationError) -> str:
    reason = exc.verify_message or exc.reason or str(exc)
    return (
        f"the TLS certificate of {where} did not verify ({reason}); "
        "if the service uses a private CA, pass it as ca_bundle (--ca_bundle)"
    )
