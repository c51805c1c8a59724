"""A pre-flight check: can we reach the service and does it accept our key?

Jobs call this before reading any record so that a wrong endpoint or key fails in one line,
not as a dead letter per record.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from urllib.parse import quote

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from voxbeam import protocol
from voxbeam.client._redact import RedactingLogger, Redactor
from voxbeam.client.connector import tls_message
from voxbeam.errors import (
    AuthenticationError,
    ConnectionLostError,
    RequestTimeoutError,
    ServiceError,
    TLSVerificationError,
)


async def probe(
    endpoint: str,
    api_key: str | None,
    *,
    auth: str = "header",
    timeout: float = 10.0,
    ca_bundle: str | None = None,
) -> None:
    """Open one STT session (connect, init, ready) and close it; raise a typed error otherwise."""
    url = endpoint.rstrip("/") + protocol.STT_PATH
    headers = {}
    if api_key and auth == "query":
        url += "?token=" + quote(api_key, safe="")
    elif api_key:
        headers["X-Api-Key"] = api_key
    ssl_ctx = ssl.create_default_context(cafile=ca_bundle) if url.startswith("wss://") else None
    redact = Redactor([api_key])
    where = redact(url)
    # websockets logs the handshake at DEBUG, key header and query included: redact it.
    ws_logger = RedactingLogger(logging.getLogger("websockets.client"), redact)
    try:
        async with asyncio.timeout(timeout):
            async with connect(
                url, additional_headers=headers, ssl=ssl_ctx, open_timeout=timeout, max_size=2**22, logger=ws_logger
            ) as ws:
                await ws.send(protocol.serialize(protocol.SttInit()))
                reply = protocol.parse_server_message(await ws.recv())
                if isinstance(reply, protocol.Error):
                    if reply.code == protocol.ErrorCode.UNAUTHORIZED.value:
                        raise AuthenticationError(f"{where} rejected the API key")
                    raise ServiceError(reply.error, code=reply.code)
    except TimeoutError:
        raise RequestTimeoutError(f"{where} did not answer within {timeout:g} s") from None
    except ConnectionClosed as exc:
        if exc.rcvd is not None and exc.rcvd.code == protocol.CLOSE_POLICY_VIOLATION:
            raise AuthenticationError(f"{where} rejected the API key") from None
        raise ConnectionLostError(f"{where} closed the connection: {redact(str(exc))}") from None
    except InvalidStatus as exc:
        if exc.response.status_code in (401, 403):
            raise AuthenticationError(f"{where} rejected the API key") from None
        raise ConnectionLostError(f"cannot connect to {where}: {redact(str(exc))}") from None
    except ssl.SSLCertVerificationError as exc:
        raise TLSVerificationError(tls_message(where, exc)) from None
    except (OSError, InvalidHandshake, InvalidURI) as exc:
        raise ConnectionLostError(f"cannot connect to {where}: {redact(str(exc))}") from None
