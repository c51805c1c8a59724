"""The service a job talks to: the endpoint named (checked before the run), or an embedded `voxbeam serve`."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions

from voxbeam.beam.options import Secret, ServiceSettings, resolve_api_key
from voxbeam.client.config import ClientConfig
from voxbeam.client.sizing import Sizing
from voxbeam.errors import UsageError
from voxbeam.jobs.args import JobArgs
from voxbeam.jobs.config import JobConfig
from voxbeam.jobs.embedded import embedded_server
from voxbeam.jobs.interrupt import Emergency

# The pre-flight check lives in its own module (no Beam import there); these names stay importable from here.
from voxbeam.jobs.preflight import (
    CAPABILITY_FLAGS,
    NO_KEY,
    checked_endpoints,
    not_offered,
    preflight,
    require_capabilities,
    required_capabilities,
)
from voxbeam.jobs.summary import Summary
from voxbeam.protocol import API_KEY_ENV, Service

__all__ = [
    "CAPABILITY_FLAGS",
    "NO_KEY",
    "not_offered",
    "preflight",
    "require_capabilities",
    "required_capabilities",
    "service_for",
]

# Sessions per worker process against the embedded server (its 2 cores are the limit, not its slots).
EMBEDDED_SESSIONS_PER_WORKER = 8


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
        endpoints = checked_endpoints(config.endpoint)
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
    # The embedded server serves the model the job asks for (--stt_model), and only that one.
    model = config.controls.model.strip() if config.controls.model else None
    with embedded_server(model, emergency) as server:
        sessions = config.sessions_per_worker or EMBEDDED_SESSIONS_PER_WORKER
        summary.sessions = f"{sessions} sessions per worker (embedded server)"
        settings = _settings(
            config, endpoints=(server.url,), api_key=server.api_key, sessions_per_worker=sessions, embedded=True
        )
        client = preflight(settings.client_config(), job_session, secret=False)
        if screen is not None:
            screen(client)
        yield settings


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
