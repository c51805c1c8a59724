"""The service a job talks to: the endpoint named (checked before the run), or an embedded `voxbeam serve`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
from collections.abc import Iterator
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions

from voxbeam import protocol
from voxbeam.beam.options import Secret, ServiceSettings, split_list
from voxbeam.client.config import ClientConfig
from voxbeam.client.connector import Kind
from voxbeam.errors import ConnectionLostError, UsageError, VoxBeamError
from voxbeam.jobs.interrupt import Emergency
from voxbeam.jobs.summary import Summary
from voxbeam.protocol import API_KEY_ENV

NO_KEY = f"no API key given: pass --api_key, set {API_KEY_ENV} or --api_key_secret"
# Sessions per worker process against the embedded server (its 2 cores are the limit, not its slots).
EMBEDDED_SESSIONS_PER_WORKER = 8
_ERRNO_TEXT = re.compile(r"\[Errno -?\d+\] ")

_LOG = logging.getLogger("voxbeam")


@contextlib.contextmanager
def service_for(
    args: argparse.Namespace,
    api_key: str | None,
    local: bool,
    job_session: tuple[Kind, Any],
    options: PipelineOptions,
    summary: Summary,
    emergency: Emergency | None = None,
    *,
    stream: bool = False,
) -> Iterator[ServiceSettings]:
    """Settings for the workers; starts and stops an embedded server when no endpoint is named.

    ``job_session`` is the (kind, init) every record will use: the pre-flight check opens it. The
    embedded server is stopped whatever happens: an error, Ctrl-C while it starts or stops, or
    (through ``emergency``) a second Ctrl-C that quits the process at once. A ``stream`` is sized from
    the sessions that keep the fleet busy, not from all it admits (``voxbeam.client.sizing.size``).
    """
    common = {
        "auth": args.auth,
        "sessions_per_worker": args.sessions_per_worker,
        "retry_budget": args.retry_budget,
        "max_attempts": args.max_attempts,
        "ca_bundle": args.ca_bundle,
    }
    if args.endpoint:
        endpoints = split_list(args.endpoint)
        for e in endpoints:
            if not e.startswith(("ws://", "wss://")):
                raise UsageError("--endpoint", f"{protocol.redact(e)!r} is not a ws:// or wss:// URL")
            if "?" in e:
                raise UsageError(
                    "--endpoint",
                    f"{protocol.redact(e)!r} carries a query string; give the base URL only and the key with "
                    "--api_key or --api_key_secret (--auth query sends it as ?token=)",
                )
        key = api_key or os.environ.get(API_KEY_ENV)
        try:
            settings = ServiceSettings(
                endpoints=endpoints, api_key=Secret(key) if key else None, api_key_secret=args.api_key_secret, **common
            )
        except ValueError as exc:
            raise UsageError("--endpoint", str(exc)) from None
        config = preflight(settings, job_session)
        yield _sized(settings, args, options, summary, config.resolved_api_key(), stream)
        return
    if not local:
        settings = ServiceSettings(
            api_key=Secret(api_key) if api_key else None, api_key_secret=args.api_key_secret, **common
        )
        yield settings
        return
    from voxbeam.server.launcher import LocalServer

    _LOG.info("no --endpoint: starting an embedded voxbeam server")
    server = LocalServer()
    try:
        server.start()
    except Exception as exc:
        server.kill()
        raise UsageError("--endpoint", f"none given and the embedded server did not start: {exc}") from None
    except BaseException:
        server.kill()
        raise
    if emergency is not None:
        emergency.add(server.kill)
    try:
        common["sessions_per_worker"] = args.sessions_per_worker or EMBEDDED_SESSIONS_PER_WORKER
        summary.sessions = f"{common['sessions_per_worker']} sessions per worker (embedded server)"
        settings = ServiceSettings(endpoints=(server.url,), api_key=Secret(server.api_key), **common)
        preflight(settings, job_session)
        yield settings
    finally:
        try:
            server.stop()
        except BaseException:  # Ctrl-C while it drains: do not leave it running
            server.kill()
            raise


def _sized(
    settings: ServiceSettings,
    args: argparse.Namespace,
    options: PipelineOptions,
    summary: Summary,
    key: str | None,
    stream: bool,
) -> ServiceSettings:
    """``settings`` with sessions per worker from the fleet's advertised capacity, unless the flag set them."""
    from voxbeam.beam.sizing import resolve_sessions_per_worker

    sizing = resolve_sessions_per_worker(
        args.sessions_per_worker,
        settings.endpoints,
        key,
        options,
        auth=args.auth,
        ca_bundle=args.ca_bundle,
        stream=stream,
    )
    summary.sessions = sizing.describe()
    return ServiceSettings(
        settings.config,
        api_key=settings.api_key,
        api_key_secret=settings.api_key_secret,
        sessions_per_worker=sizing.sessions_per_worker,
    )


# The flag to blame when the service refuses the job's own session settings.
_INIT_FLAGS = {
    "UNSUPPORTED_LANGUAGE": "--language",
    "VOICE_NOT_FOUND": "--voice_id",
    "UNSUPPORTED_FORMAT": "--audio_format",
    "UNSUPPORTED_SAMPLE_RATE": "--sample_rate",
    "INVALID_MESSAGE": "--speed/--pitch/--volume",
}


def preflight(settings: ServiceSettings, job_session: tuple[Kind, Any]) -> ClientConfig:
    """Open the session the records will use (kind and init) on every endpoint, before any record:
    a wrong URL, key, CA, language or voice fails here, in one line. Returns the workers' client config
    (its key resolved, once)."""
    from voxbeam.client.probe import preflight as open_session
    from voxbeam.errors import AuthenticationError, InvalidRequestError, TLSVerificationError

    try:
        config = settings.client_config()
    except Exception as exc:
        raise UsageError("--api_key_secret", f"cannot read the secret: {exc}") from None
    if config.ca_bundle and not os.path.isfile(config.ca_bundle):
        raise UsageError("--ca_bundle", f"no such file: {config.ca_bundle}")
    try:
        asyncio.run(open_session(config, *job_session))
    except AuthenticationError as exc:
        if config.api_key is None:
            raise UsageError("--api_key", NO_KEY) from None
        raise UsageError("--api_key_secret" if settings.api_key_secret else "--api_key", str(exc)) from None
    except TLSVerificationError as exc:
        raise UsageError("--ca_bundle", str(exc)) from None
    except InvalidRequestError as exc:
        raise UsageError(_INIT_FLAGS.get(exc.code, ""), f"the service refused it ({exc.code}): {exc.message}") from None
    except ConnectionLostError as exc:
        raise UsageError("--endpoint", _connection_problem(config.endpoints[0], exc)) from None
    except VoxBeamError as exc:
        raise UsageError("--endpoint", _ERRNO_TEXT.sub("", str(exc))) from None
    return config


def _connection_problem(endpoint: str, exc: ConnectionLostError) -> str:
    text = str(exc)
    if "Connect call failed" in text or "Errno 111]" in text or "refused" in text.lower():
        why = "nothing accepts connections there (connection refused); check the host and port, and that it runs"
    elif "Name or service not known" in text or "Errno -2]" in text or "Errno -3]" in text:
        why = "its host name does not resolve; check the URL"
    else:
        return _ERRNO_TEXT.sub("", text)
    return f"cannot connect to {protocol.redact(endpoint)}: {why}"
