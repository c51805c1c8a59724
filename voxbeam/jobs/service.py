"""The service a job talks to: the endpoint named (checked before the run), or an embedded `voxbeam serve`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
from collections.abc import Iterator

from voxbeam.beam.options import API_KEY_ENV, Secret, ServiceSettings, split_list
from voxbeam.errors import ConnectionLostError, UsageError, VoxBeamError
from voxbeam.jobs.interrupt import Emergency

NO_KEY = f"no API key given: pass --api_key, set {API_KEY_ENV} or --api_key_secret"
_ERRNO_TEXT = re.compile(r"\[Errno -?\d+\] ")

_LOG = logging.getLogger("voxbeam")


@contextlib.contextmanager
def service_for(
    args: argparse.Namespace, api_key: str | None, local: bool, emergency: Emergency | None = None
) -> Iterator[ServiceSettings]:
    """Settings for the workers; starts and stops an embedded server when no endpoint is named.

    The embedded server is stopped whatever happens: an error, Ctrl-C while it starts or stops,
    or (through ``emergency``) a second Ctrl-C that quits the process at once.
    """
    common = {
        "auth": args.auth,
        "sessions_per_worker": args.sessions_per_worker,
        "max_attempts": args.max_attempts,
        "ca_bundle": args.ca_bundle,
    }
    if args.sessions_per_worker < 1:
        raise UsageError("--sessions_per_worker", "must be at least 1")
    if args.max_attempts < 1:
        raise UsageError("--max_attempts", "must be at least 1")
    if args.endpoint:
        endpoints = split_list(args.endpoint)
        for e in endpoints:
            if not e.startswith(("ws://", "wss://")):
                raise UsageError("--endpoint", f"{e!r} is not a ws:// or wss:// URL")
        key = api_key or os.environ.get(API_KEY_ENV)
        settings = ServiceSettings(
            endpoints=endpoints,
            api_key=Secret(key) if key else None,
            api_key_secret=args.api_key_secret,
            **common,
        )
        preflight(settings)
        yield settings
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
        yield ServiceSettings(endpoints=(server.url,), api_key=Secret(server.api_key), **common)
    finally:
        try:
            server.stop()
        except BaseException:  # Ctrl-C while it drains: do not leave it running
            server.kill()
            raise


def preflight(settings: ServiceSettings) -> None:
    """Connect once to every endpoint with the key: a wrong URL, key or CA fails here, in one line."""
    from voxbeam.client.probe import probe
    from voxbeam.errors import AuthenticationError, TLSVerificationError

    try:
        key = settings.resolve_api_key()
    except Exception as exc:
        raise UsageError("--api_key_secret", f"cannot read the secret: {exc}") from None
    if settings.ca_bundle and not os.path.isfile(settings.ca_bundle):
        raise UsageError("--ca_bundle", f"no such file: {settings.ca_bundle}")
    for endpoint in settings.endpoints:
        try:
            asyncio.run(probe(endpoint, key, auth=settings.auth, ca_bundle=settings.ca_bundle))
        except AuthenticationError as exc:
            if key is None:
                raise UsageError("--api_key", NO_KEY) from None
            flag = "--api_key_secret" if settings.api_key_secret else "--api_key"
            raise UsageError(flag, str(exc)) from None
        except TLSVerificationError as exc:
            raise UsageError("--ca_bundle", str(exc)) from None
        except ConnectionLostError as exc:
            raise UsageError("--endpoint", _connection_problem(endpoint, exc)) from None
        except VoxBeamError as exc:
            raise UsageError("--endpoint", _ERRNO_TEXT.sub("", str(exc))) from None


def _connection_problem(endpoint: str, exc: ConnectionLostError) -> str:
    text = str(exc)
    if "Connect call failed" in text or "Errno 111]" in text or "refused" in text.lower():
        why = "nothing accepts connections there (connection refused); check the host and port, and that it runs"
    elif "Name or service not known" in text or "Errno -2]" in text or "Errno -3]" in text:
        why = "its host name does not resolve; check the URL"
    else:
        return _ERRNO_TEXT.sub("", text)
    return f"cannot connect to {endpoint}: {why}"
