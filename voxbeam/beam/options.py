"""Pipeline options and the service settings the transforms carry to the workers."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from apache_beam.options.pipeline_options import PipelineOptions

from voxbeam.client.config import ClientConfig
from voxbeam.errors import InputError
from voxbeam.flags import SERVICE_FLAGS, SYNTHESIZE_FLAGS, TRANSCRIBE_FLAGS
from voxbeam.protocol import API_KEY_ENV

_T = TypeVar("_T")


class Secret:
    """A string that never shows itself: repr, str, display data and logs see ``***``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, init=False)
class ServiceSettings:
    """How workers reach the speech service: a ``ClientConfig`` and where its key comes from.

    Picklable; holds no socket. The key travels as a ``Secret`` (never in a repr or display
    data), or as a Secret Manager name resolved on the worker, or not at all (the worker's
    ``VOXNEXUS_API_KEY``); ``config`` itself never holds it. The keywords after ``config`` are
    shorthands that replace the matching fields of ``config`` (``sessions_per_worker`` is
    ``pool_size``, ``retry_budget`` and ``max_attempts`` go to ``retry``, ``record_timeout`` and
    ``result_timeout`` to ``timeouts``).
    """

    config: ClientConfig
    api_key: Secret | None = field(default=None, repr=False)
    api_key_secret: str | None = None  # Secret Manager name, resolved on the worker

    def __init__(
        self,
        config: ClientConfig | None = None,
        *,
        api_key: Secret | str | None = None,
        api_key_secret: str | None = None,
        endpoints: Sequence[str] | None = None,
        auth: Literal["header", "query"] | None = None,
        sessions_per_worker: int | None = None,
        retry_budget: float | None = None,
        max_attempts: int | None = None,
        record_timeout: float | None = None,
        result_timeout: float | None = None,
        ca_bundle: str | None = None,
    ) -> None:
        config = config or ClientConfig()
        if api_key is None and config.api_key is not None:
            api_key = config.api_key
        config = _given(
            dataclasses.replace(config, api_key=None),
            endpoints=None if endpoints is None else tuple(endpoints),
            auth=auth,
            pool_size=sessions_per_worker,
            ca_bundle=ca_bundle,
            retry=_given(config.retry, budget=retry_budget, max_attempts=max_attempts),
            timeouts=_given(config.timeouts, record=record_timeout, result=result_timeout),
        )
        object.__setattr__(self, "config", config)
        object.__setattr__(self, "api_key", Secret(api_key) if isinstance(api_key, str) else api_key)
        object.__setattr__(self, "api_key_secret", api_key_secret)

    @property
    def endpoints(self) -> tuple[str, ...]:
        return self.config.endpoints

    @property
    def sessions_per_worker(self) -> int:
        return self.config.pool_size

    def resolve_api_key(self) -> str | None:
        """The key itself: given, from Secret Manager, or from the environment."""
        return resolve_api_key(self.api_key, self.api_key_secret)

    def client_config(self) -> ClientConfig:
        """The worker's client configuration, key included (call it on the worker, not at submit)."""
        return dataclasses.replace(self.config, api_key=self.resolve_api_key())


def resolve_api_key(api_key: Secret | None, api_key_secret: str | None) -> str | None:
    """The key itself: ``api_key``, else the Secret Manager secret named, else the environment's."""
    if api_key is not None:
        return api_key.reveal()
    if api_key_secret:
        return access_secret(api_key_secret)
    return os.environ.get(API_KEY_ENV) or None


def access_secret(name: str) -> str:
    """Read a Secret Manager secret (``projects/P/secrets/S[/versions/V]``; latest by default)."""
    if "/versions/" not in name:
        name = name.rstrip("/") + "/versions/latest"
    try:
        from google.cloud import secretmanager
    except ImportError as exc:
        raise InputError("--api_key_secret needs google-cloud-secret-manager (pip install 'voxbeam[gcp]')") from exc
    client = secretmanager.SecretManagerServiceClient()
    response = client.access_secret_version(name=name)
    return str(response.payload.data.decode("utf-8"))


class VoxBeamOptions(PipelineOptions):
    """Options every VoxBeam pipeline shares: the service and how to reach it."""

    @classmethod
    def _add_argparse_args(cls, parser: Any) -> None:
        for flag in SERVICE_FLAGS:
            flag.add_to(parser)

    def display_data(self) -> dict[str, Any]:
        data = dict(super().display_data())
        data.pop("api_key", None)
        return data


class TranscribeAudioOptions(VoxBeamOptions):
    """Options of the transcription pipeline (the same flags as ``voxbeam transcribe``)."""

    @classmethod
    def _add_argparse_args(cls, parser: Any) -> None:
        for flag in TRANSCRIBE_FLAGS:
            flag.add_to(parser)


class SynthesizeTextOptions(VoxBeamOptions):
    """Options of the synthesis pipeline (the same flags as ``voxbeam synthesize``)."""

    @classmethod
    def _add_argparse_args(cls, parser: Any) -> None:
        for flag in SYNTHESIZE_FLAGS:
            flag.add_to(parser)


def _given(settings: _T, **values: Any) -> _T:
    """``settings`` with the fields a caller gave (not None) replaced."""
    given = {name: value for name, value in values.items() if value is not None}
    return dataclasses.replace(settings, **given) if given else settings  # type: ignore[type-var]
