"""The pre-flight check: open the session the job will use, on every endpoint, and close it.

Jobs call ``preflight`` before reading any record, with the job's own ``init`` (its language,
or its voice and format), so that a wrong endpoint, key, certificate, language or voice is one
clear error, not a dead letter per record. It connects through the same ``Connector`` as the
pool, so TLS settings, auth and error mapping are the client's own.
"""

from __future__ import annotations

from voxbeam import protocol
from voxbeam.client._stats import Stats
from voxbeam.client.config import ClientConfig
from voxbeam.client.connector import Connector
from voxbeam.client.session import InitMessage, Session
from voxbeam.protocol import Service

Ready = protocol.SttReady | protocol.TtsReady


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
