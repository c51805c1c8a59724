"""The service a job talks to: the endpoint named (checked before the run), or an embedded `voxbeam serve`."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions

from voxbeam import protocol
from voxbeam.beam.options import Secret, ServiceSettings, resolve_api_key
from voxbeam.client.config import ClientConfig
from voxbeam.client.sizing import Sizing
from voxbeam.errors import ConnectionLostError, UsageError, VoxBeamError
from voxbeam.flags import control_flag, split_list
from voxbeam.jobs.args import JobArgs
from voxbeam.jobs.config import JobConfig
from voxbeam.jobs.interrupt import Emergency
from voxbeam.jobs.summary import Summary
from voxbeam.protocol import API_KEY_ENV, Service
from voxbeam.protocol_controls import SttControls

NO_KEY = f"no API key given: pass --api_key, set {API_KEY_ENV} or --api_key_secret"
# Sessions per worker process against the embedded server (its 2 cores are the limit, not its slots).
EMBEDDED_SESSIONS_PER_WORKER = 8
_ERRNO_TEXT = re.compile(r"\[Errno -?\d+\] ")

_LOG = logging.getLogger("voxbeam")


@contextlib.contextmanager
def service_for(
    parsed: JobArgs,
    job_session: tuple[Service, Any],
    *,
    local: bool,
    options: PipelineOptions,
    summary: Summary,
    emergency: Emergency | None = None,
    screen: Callable[[ClientConfig], None] | None = None,
) -> Iterator[ServiceSettings]:
    """Settings for the workers, built once; starts and stops an embedded server when no endpoint is named.

    ``job_session`` is the (kind, init) every record will use: the pre-flight check opens it; then
    ``screen`` checks the records' own asks against the same service (``Job.screen``). The
    embedded server is stopped whatever happens: an error, Ctrl-C while it starts or stops, or
    (through ``emergency``) a second Ctrl-C that quits the process at once.
    """
    config, api_key = parsed.config, parsed.api_key
    if config.endpoint:
        endpoints = _checked_endpoints(config.endpoint)
        key = api_key or os.environ.get(API_KEY_ENV)
        # Checked (and the key read) before the fleet is asked its capacity, which sizes the settings.
        client = preflight(_client_config(config, endpoints, key), job_session, secret=bool(config.api_key_secret))
        if screen is not None:
            screen(client)
        sizing = _sizing(config, endpoints, client.api_key, options)
        summary.sessions = sizing.describe()
        yield _settings(config, endpoints=endpoints, api_key=key, sessions_per_worker=sizing.sessions_per_worker)
        return
    if not local:
        yield _settings(config, api_key=api_key, sessions_per_worker=config.sessions_per_worker)
        return
    from voxbeam.server.launcher import LocalServer

    _LOG.info("no --endpoint: starting an embedded voxbeam server")
    # The embedded server serves the model the job asks for (--stt_model), and only that one.
    model = config.controls.model.strip() if config.controls.model else None
    server = LocalServer(extra_args=["--stt_model", model] if model else [])
    try:
        server.start()
    except Exception as exc:
        server.kill()
        if model:  # most likely the model: one it cannot load or that is not installed
            raise UsageError("--stt_model", f"the embedded server did not start with model {model!r}: {exc}") from None
        raise UsageError("--endpoint", f"none given and the embedded server did not start: {exc}") from None
    except BaseException:
        server.kill()
        raise
    if emergency is not None:
        emergency.add(server.kill)
    try:
        sessions = config.sessions_per_worker or EMBEDDED_SESSIONS_PER_WORKER
        summary.sessions = f"{sessions} sessions per worker (embedded server)"
        settings = _settings(
            config, endpoints=(server.url,), api_key=server.api_key, sessions_per_worker=sessions, embedded=True
        )
        client = preflight(settings.client_config(), job_session, secret=False)
        if screen is not None:
            screen(client)
        yield settings
    finally:
        try:
            server.stop()
        except BaseException:  # Ctrl-C while it drains: do not leave it running
            server.kill()
            raise


def _checked_endpoints(flag: str) -> tuple[str, ...]:
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


def _client_config(config: JobConfig, endpoints: tuple[str, ...], key: str | None) -> ClientConfig:
    """The client config the pre-flight connects with: the job's endpoints, auth and CA, the key read."""
    try:
        client = ClientConfig(endpoints=endpoints, auth=config.auth, ca_bundle=config.ca_bundle)
    except ValueError as exc:
        raise UsageError("--endpoint", str(exc)) from None
    try:
        resolved = resolve_api_key(Secret(key) if key else None, config.api_key_secret)
    except Exception as exc:
        raise UsageError("--api_key_secret", f"cannot read the secret: {exc}") from None
    return dataclasses.replace(client, api_key=resolved)


def _sizing(config: JobConfig, endpoints: Sequence[str], key: str | None, options: PipelineOptions) -> Sizing:
    """Sessions per worker from what the fleet advertises (``client.sizing.size``), unless the flag set them."""
    from voxbeam.beam.sizing import resolve_sessions_per_worker

    return resolve_sessions_per_worker(
        config.sessions_per_worker,
        endpoints,
        key,
        options,
        auth=config.auth,
        ca_bundle=config.ca_bundle,
    )


def _settings(
    config: JobConfig,
    *,
    api_key: str | None,
    sessions_per_worker: int | None,
    endpoints: Sequence[str] | None = None,
    embedded: bool = False,
) -> ServiceSettings:
    """The run's one ``ServiceSettings``: how its workers reach the service."""
    try:
        return ServiceSettings(
            endpoints=endpoints,
            api_key=Secret(api_key) if api_key else None,
            api_key_secret=None if embedded else config.api_key_secret,
            auth=config.auth,
            sessions_per_worker=sessions_per_worker,
            retry_budget=config.retry_budget,
            max_attempts=config.max_attempts,
            ca_bundle=config.ca_bundle,
        )
    except ValueError as exc:
        if endpoints is None or embedded:  # nothing the user named to blame: a bug, with its traceback
            raise
        raise UsageError("--endpoint", str(exc)) from None


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
}


def required_capabilities(init: Any) -> tuple[str, ...]:
    """The capabilities a job's session ``init`` asks of the service (its extensions)."""
    if not isinstance(init, protocol.SttInit):
        return ()
    redaction = ("redact",) * bool(init.redact) + ("profanity",) * bool(init.profanity)
    return init.controls.capabilities + redaction


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
