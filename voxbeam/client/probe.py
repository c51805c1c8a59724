"""The pre-flight check: open the session the job will use, on every endpoint, and close it.

Jobs call ``preflight`` before reading any record, with the job's own ``init`` (its language,
or its voice and format), so that a wrong endpoint, key, certificate, language or voice is one
clear error, not a dead letter per record. It connects through the same ``Connector`` as the
pool, so TLS settings, auth and error mapping are the client's own. Before that, ``unadvertised``
finds the extensions the job needs that a service does not list in its ``/healthz`` ``capabilities``
(a spec-only service would ignore them, not refuse them).
"""

from __future__ import annotations

import urllib.error
from collections.abc import Sequence
from dataclasses import dataclass

from voxbeam import protocol
from voxbeam.client._stats import Stats
from voxbeam.client.config import ClientConfig
from voxbeam.client.connector import Connector
from voxbeam.client.session import InitMessage, Session
from voxbeam.protocol import Service

Ready = protocol.SttReady | protocol.TtsReady
HEALTH_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Unadvertised:
    """An endpoint that does not advertise a capability a job needs, and what it does advertise."""

    endpoint: str
    capability: str
    advertised: tuple[str, ...]


async def unadvertised(config: ClientConfig, required: Sequence[str]) -> list[Unadvertised]:
    """Each endpoint's missing ``required`` capabilities (none asked: no request).

    A service without ``/healthz``, or whose ``/healthz`` lists no ``capabilities``, advertises none. An
    endpoint that cannot be reached is left to the session's own pre-flight, which says why.
    """
    if not required:
        return []
    connector = Connector(config, config.resolved_api_key())
    out: list[Unadvertised] = []
    for endpoint in config.endpoints:
        try:
            doc = await connector.get_json(endpoint, "/healthz", HEALTH_TIMEOUT_S)
        except urllib.error.HTTPError:  # it answered: no /healthz
            doc = None
        except ValueError:  # not JSON
            doc = None
        except OSError:  # unreachable: preflight() reports it
            continue
        listed = doc.get("capabilities") if isinstance(doc, dict) else None
        advertised = tuple(c for c in listed if isinstance(c, str)) if isinstance(listed, list) else ()
        out += [Unadvertised(endpoint, c, advertised) for c in required if c not in advertised]
    return out


async def preflight(config: ClientConfig, kind: Service, init: InitMessage) -> list[Ready]:
    """Open and close one ``kind`` session with ``init`` on each endpoint; their ``ready`` messages.

    Raises the client's typed errors: ``AuthenticationError``, ``TLSVerificationError``,
    ``InvalidRequestError`` (e.g. UNSUPPORTED_LANGUAGE, VOICE_NOT_FOUND), ``HandshakeRejectedError``
    (e.g. no such service at that endpoint), ``ConnectionLostError``, ``RequestTimeoutError``,
    ``ServerBusyError``. No retries: the job should fail fast and say why.
    """
    connector = Connector(config, config.resolved_api_key())
    readies: list[Ready] = []
    for endpoint in config.endpoints:
        session = Session(endpoint, kind, init, connector, Stats())
        try:
            await session.open()
            assert session.ready is not None
            readies.append(session.ready)
        finally:
            await session.close()
    return readies
