"""Pipeline options and the service settings the transforms carry to the workers."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions

from voxbeam.errors import InputError
from voxbeam.jobs.args import API_KEY_ENV, SERVICE_FLAGS, SYNTHESIZE_FLAGS, TRANSCRIBE_FLAGS


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


@dataclass(frozen=True)
class ServiceSettings:
    """How workers reach the speech service. Picklable; holds no socket."""

    endpoints: tuple[str, ...] = ("wss://api.voxnexus.ai",)
    api_key: Secret | None = field(default=None, repr=False)
    api_key_secret: str | None = None  # Secret Manager name, resolved on the worker
    auth: str = "header"
    sessions_per_worker: int = 8
    max_attempts: int = 5
    record_timeout: float = 600.0
    ca_bundle: str | None = None
    # Longest silence from the service while a result is owed (transcripts, audio): a stalled
    # connection is dropped and the record retried on a fresh session after this many seconds.
    result_timeout: float = 30.0

    def resolve_api_key(self) -> str | None:
        """The key itself: given, from Secret Manager, or from the environment."""
        if self.api_key is not None:
            return self.api_key.reveal()
        if self.api_key_secret:
            return access_secret(self.api_key_secret)
        return os.environ.get(API_KEY_ENV) or None

    def client_config(self) -> Any:
        from voxbeam.client import ClientConfig, RetryPolicy, Timeouts

        return ClientConfig(
            endpoints=self.endpoints,
            api_key=self.resolve_api_key(),
            auth=self.auth,  # type: ignore[arg-type]
            pool_size=self.sessions_per_worker,
            retry=RetryPolicy(max_attempts=self.max_attempts),
            timeouts=Timeouts(result=self.result_timeout, record=self.record_timeout),
            ca_bundle=self.ca_bundle,
        )


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


def split_list(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


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
