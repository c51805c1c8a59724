"""The pre-flight check: open the session the job will use, on every endpoint, and close it.

Jobs call ``preflight`` before reading any record, with the job's own ``init`` (its language,
or its voice and format), so that a wrong endpoint, key, certificate, language or voice is one
clear error, not a dead letter per record. It connects through the same ``Connector`` as the
pool, so TLS settings, auth and error mapping are the client's own. Before that, ``unadvertised``
finds the extensions the job needs that a service does not list in its ``/healthz`` ``capabilities``
(a spec-only service would ignore them, not refuse them), and a model it does not list in ``models``.
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
# The capability an ``Unadvertised`` names when the model asked for is not among the service's ``models``.
MODEL = "model"


@dataclass(frozen=True)
class Unadvertised:
    """An endpoint that does not advertise a capability a job needs, and what it does advertise.

    ``capability`` is ``MODEL`` when the service does not serve the model asked for: ``advertised`` then
    lists the models it serves."""

    endpoint: str
    capability: str
    advertised: tuple[str, ...]


async def unadvertised(config: ClientConfig, required: Sequence[str], model: str | None = None) -> list[Unadvertised]:
    """Each endpoint's missing ``required`` capabilities, or ``model`` when it does not serve it (nothing
    asked: no request).

    A service without ``/healthz``, or whose ``/healthz`` lists no ``capabilities``, advertises none; one
    that lists no ``models`` serves none by name. With ``model``, the capabilities checked are that
    model's own (its entry in ``models``): translation may be there for ``base`` and not for ``tiny.en``.
    An endpoint that cannot be reached is left to the session's own pre-flight, which says why.
    """
    if not required and model is None:
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
        health = doc if isinstance(doc, dict) else {}
        if model is not None:
            served = _models(health)
            if model not in served:
                out.append(Unadvertised(endpoint, MODEL, tuple(served)))
                continue
            advertised = served[model]
        else:
            advertised = _strings(health.get("capabilities"))
        out += [Unadvertised(endpoint, c, advertised) for c in required if c not in advertised]
    return out


def _strings(listed: object) -> tuple[str, ...]:
    return tuple(c for c in listed if isinstance(c, str)) if isinstance(listed, list) else ()


def _models(health: dict[str, object]) -> dict[str, tuple[str, ...]]:
    """The models a ``/healthz`` lists (``[{"name", "capabilities", ...}]``): name -> its capabilities."""
    listed = health.get("models")
    entries = [m for m in listed if isinstance(m, dict)] if isinstance(listed, list) else []
    return {m["name"]: _strings(m.get("capabilities")) for m in entries if isinstance(m.get("name"), str)}


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
