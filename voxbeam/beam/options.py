"""Pipeline options and the service settings the transforms carry to the workers."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions

from voxbeam.errors import InputError
from voxbeam.protocol import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, TTS_FORMATS

API_KEY_ENV = "VOXNEXUS_API_KEY"


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
        parser.add_argument(
            "--endpoint",
            default=None,
            help="VoxNexus-compatible service base URL(s), comma-separated (e.g. wss://api.voxnexus.ai). "
            "Omitted on a local runner: an embedded `voxbeam serve` is started for the run.",
        )
        parser.add_argument(
            "--api_key",
            default=None,
            help=f"API key for the service (or set {API_KEY_ENV}). It is kept out of logs and display data; "
            "on Dataflow prefer --api_key_secret.",
        )
        parser.add_argument(
            "--api_key_secret",
            default=None,
            help="Secret Manager secret holding the API key: projects/P/secrets/S[/versions/V].",
        )
        parser.add_argument(
            "--auth",
            default="header",
            choices=["header", "query"],
            help="How to send the key: X-Api-Key header (default) or ?token= query parameter.",
        )
        parser.add_argument(
            "--sessions_per_worker",
            type=int,
            default=8,
            help="Concurrent service sessions per worker process (default 8).",
        )
        parser.add_argument(
            "--max_attempts", type=int, default=5, help="Attempts per record for retryable failures (default 5)."
        )
        parser.add_argument(
            "--ca_bundle", default=None, help="CA bundle (PEM) for verifying a wss:// service's certificate."
        )

    def display_data(self) -> dict[str, Any]:
        data = dict(super().display_data())
        data.pop("api_key", None)
        return data


class TranscribeAudioOptions(VoxBeamOptions):
    """Options of the transcription pipeline."""

    @classmethod
    def _add_argparse_args(cls, parser: Any) -> None:
        parser.add_argument(
            "--input",
            default=None,
            help="Audio to transcribe: a glob, a directory, or a text file listing one URI per line "
            "(local paths or gs:// URIs; wav, flac, mp3, ogg/opus, m4a).",
        )
        parser.add_argument("--output", default=None, help="Output prefix (local directory or gs://bucket/path).")
        parser.add_argument("--language", default="en-US", help="Language of the audio (default en-US).")
        parser.add_argument(
            "--timestamps",
            default="true",
            choices=["true", "false"],
            help="Word timings in the transcripts (default true).",
        )
        parser.add_argument(
            "--captions", default="", help="Caption files to write beside the transcripts: srt, vtt or srt,vtt."
        )
        parser.add_argument(
            "--skip_existing",
            default="false",
            choices=["true", "false"],
            help="Transcribe only files that are new or changed since earlier runs under the same --output.",
        )


class SynthesizeTextOptions(VoxBeamOptions):
    """Options of the synthesis pipeline."""

    @classmethod
    def _add_argparse_args(cls, parser: Any) -> None:
        parser.add_argument(
            "--input",
            default=None,
            help="Text records: text lines, JSON lines or CSV (with id and text), or Parquet with id and text columns.",
        )
        parser.add_argument("--output", default=None, help="Output prefix for audio objects and the manifest.")
        parser.add_argument("--voice_id", default=None, help="Default voice (e.g. vl-jenny); records may override.")
        parser.add_argument("--language", default=None, help="Default language (e.g. en-US); records may override.")
        parser.add_argument(
            "--audio_format",
            default="wav",
            choices=[*TTS_FORMATS, "ogg"],
            help="Audio format of the objects (default wav).",
        )
        parser.add_argument(
            "--sample_rate", type=int, default=16000, help=f"Sample rate in Hz, {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE}."
        )
        parser.add_argument("--speed", type=float, default=1.0, help="Speaking rate multiplier (default 1.0).")
        parser.add_argument("--pitch", type=float, default=0.0, help="Pitch offset (default 0).")
        parser.add_argument("--volume", type=float, default=1.0, help="Volume multiplier (default 1.0).")
