"""The pre-flight check every command that talks to a service makes before any work: the session it will
use opened on each endpoint, and the extensions it asks for found advertised, so that a wrong URL, key, CA,
language, voice or model is one line naming the flag (a ``UsageError``: exit 2). No Beam import here:
``voxbeam caption`` uses it too."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
from collections.abc import Sequence
from typing import Any

from voxbeam import protocol
from voxbeam.client.config import ClientConfig
from voxbeam.errors import ConnectionLostError, UsageError, VoxBeamError
from voxbeam.flags import control_flag, split_list
from voxbeam.protocol import API_KEY_ENV, Service
from voxbeam.protocol_controls import DIARIZATION, SttControls

NO_KEY = f"no API key given: pass --api_key, set {API_KEY_ENV} or --api_key_secret"
_ERRNO_TEXT = re.compile(r"\[Errno -?\d+\] ")


def checked_endpoints(flag: str) -> tuple[str, ...]:
    """The --endpoint URLs, each a ws:// or wss:// base URL without a query string (else a UsageError)."""
    endpoints = split_list(flag)
    for e in endpoints:
        if not e.startswith(("ws://", "wss://")):
            raise UsageError("--endpoint", f"{protocol.redact(e)!r} is not a ws:// or wss:// URL")
        if "?" in e:
            raise UsageError(
                "--endpoint",
                f"{protocol.redact(e)!r} carries a query string; give the base URL only and the key with "
                "--api_key or --api_key_secret (--auth query sends it as ?token=)",
            )
    return endpoints


# The flag to blame when the service refuses the job's own session settings.
_INIT_FLAGS = {
    "UNSUPPORTED_LANGUAGE": "--language",
    "VOICE_NOT_FOUND": "--voice_id",
    "UNSUPPORTED_FORMAT": "--audio_format",
    "UNSUPPORTED_SAMPLE_RATE": "--sample_rate",
    "INVALID_MESSAGE": "--speed/--pitch/--volume",
}
# The flag that asks for each capability a job may need of its service (what /healthz ``capabilities`` lists).
CAPABILITY_FLAGS = {
    "prompt": "--prompt",
    "hotwords": "--hotwords",
    "translate": "--task",
    "languages": "--languages",
    "redact": "--redact_on",
    "profanity": "--redact_on",
    "diarization": "--diarize",
}


def required_capabilities(init: Any) -> tuple[str, ...]:
    """The capabilities a job's session ``init`` asks of the service (its extensions)."""
    if not isinstance(init, protocol.SttInit):
        return ()
    redaction = ("redact",) * bool(init.redact) + ("profanity",) * bool(init.profanity)
    return init.controls.capabilities + redaction + (DIARIZATION,) * bool(init.enable_diarization)


def require_capabilities(client: ClientConfig, required: Sequence[str], model: str | None = None) -> None:
    """A ``UsageError`` (exit 2) naming the flag when an endpoint does not advertise one of ``required``,
    or does not serve ``model`` (then ``required`` are checked against that model's own capabilities).

    The one check for every extension a job may ask for: a spec-only service would ignore it, and the
    job would quietly get less than it asked. Add a capability's flag to ``CAPABILITY_FLAGS``.
    """
    from voxbeam.client.probe import MODEL

    found = not_offered(client, required, model)
    if found is None:
        return
    capability, why = found
    if capability == MODEL:
        raise UsageError(
            "--stt_model",
            f"{why}; pick one of them, or run the server with it (voxbeam serve --stt_model tiny.en,base)",
        )
    raise UsageError(CAPABILITY_FLAGS.get(capability, ""), f"{why}; leave the flag out or use a service that offers it")


def not_offered(client: ClientConfig, required: Sequence[str], model: str | None = None) -> tuple[str, str] | None:
    """The first of ``required`` (or ``model``: ``probe.MODEL``) an endpoint does not advertise, and why in
    words; None when every endpoint advertises them all."""
    from voxbeam.client.probe import MODEL, unadvertised

    for miss in asyncio.run(unadvertised(client, required, model)):
        shown = ", ".join(miss.advertised) or "none"
        where = f"the service at {protocol.redact(miss.endpoint)}"
        if miss.capability == MODEL:
            return MODEL, f"{where} does not serve model {model!r} (its /healthz models: {shown})"
        of = f" with model {model!r}" if model is not None else ""
        return (
            miss.capability,
            f"{where} does not offer {miss.capability!r}{of} (its /healthz capabilities{of}: {shown})",
        )
    return None


def preflight(client: ClientConfig, job_session: tuple[Service, Any], *, secret: bool) -> ClientConfig:
    """Open the session the records will use (kind and init) on every endpoint, before any record:
    a wrong URL, key, CA, language or voice fails here, in one line. ``client`` holds the key itself;
    ``secret`` says it came from --api_key_secret. Returns ``client``."""
    from voxbeam.client.probe import preflight as open_session
    from voxbeam.errors import AuthenticationError, InvalidRequestError, TLSVerificationError

    if client.ca_bundle and not os.path.isfile(client.ca_bundle):
        raise UsageError("--ca_bundle", f"no such file: {client.ca_bundle}")
    init = job_session[1]
    require_capabilities(
        client, required_capabilities(init), init.model if isinstance(init, protocol.SttInit) else None
    )
    try:
        asyncio.run(open_session(client, *job_session))
    except AuthenticationError as exc:
        if client.api_key is None:
            raise UsageError("--api_key", NO_KEY) from None
        raise UsageError("--api_key_secret" if secret else "--api_key", str(exc)) from None
    except TLSVerificationError as exc:
        raise UsageError("--ca_bundle", str(exc)) from None
    except InvalidRequestError as exc:
        flag = _init_flag(exc.code, exc.message)
        raise UsageError(flag, f"the service refused it ({exc.code}): {exc.message}") from None
    except ConnectionLostError as exc:
        raise UsageError("--endpoint", _connection_problem(client.endpoints[0], exc)) from None
    except VoxBeamError as exc:
        raise UsageError("--endpoint", _ERRNO_TEXT.sub("", str(exc))) from None
    return client


def _init_flag(code: str, message: str) -> str:
    """The flag behind an init refused with ``code``: a control's when the message names one ('task': ...)."""
    if code in ("UNSUPPORTED_OPTION", "INVALID_MESSAGE", "UNSUPPORTED_LANGUAGE"):
        for name in (f.name for f in dataclasses.fields(SttControls)):
            if f"'{name}'" in message:
                return control_flag(name)
    return _INIT_FLAGS.get(code, "")


def _connection_problem(endpoint: str, exc: ConnectionLostError) -> str:
    text = str(exc)
    if "Connect call failed" in text or "Errno 111]" in text or "refused" in text.lower():
        why = "nothing accepts connections there (connection refused); check the host and port, and that it runs"
    elif "Name or service not known" in text or "Errno -2]" in text or "Errno -3]" in text:
        why = "its host name does not resolve; check the URL"
    else:
        return _ERRNO_TEXT.sub("", text)
    return f"cannot connect to {protocol.redact(endpoint)}: {why}"
