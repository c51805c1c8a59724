"""One job's settings, typed: built once from its parsed flags (``JobConfig.from_flags``) and read
everywhere after (the checks, the inputs, the service, the transforms). No Beam import here."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields
from typing import Literal

from voxbeam.errors import UsageError
from voxbeam.flags import STREAM_SOURCES, split_list
from voxbeam.protocol import TtsParams
from voxbeam.protocol_controls import SttControls


@dataclass(frozen=True)
class JobConfig:
    """A job's own flags with real types (bools, ints, tuples); the API key is not among them.

    Flags a kind does not have keep their defaults here (``timestamps`` for synthesis, ``tts``
    for transcription).
    """

    kind: str
    output: str
    input: str | None
    input_subscription: str | None
    input_topic: str | None
    max_dead_letter_fraction: float
    skip_existing: bool
    window_seconds: float
    dedup_minutes: float
    language: str | None
    # The service: --endpoint (comma-separated URLs; none: the embedded server) and how to reach it.
    endpoint: str | None
    api_key_secret: str | None
    auth: Literal["header", "query"]
    sessions_per_worker: int | None
    retry_budget: float
    max_attempts: int | None
    ca_bundle: str | None
    # Transcription only.
    input_pattern: str | None = None
    timestamps: bool = True
    captions: tuple[str, ...] = ()
    # Recognition controls as given (``Transcription`` checks them).
    controls: SttControls = SttControls()
    redact: tuple[str, ...] = ()
    phone_region: str | None = None
    profanity: str | None = None
    redact_keep_original: bool = False
    redact_on: str = "client"
    redact_audio: str | None = None
    # Diarization on the service (--diarize, bounded by --min_speakers / --max_speakers).
    diarize: bool = False
    min_speakers: int | None = None
    max_speakers: int | None = None
    # A file's channels: mixed, split, or split when they carry different speech (--channels).
    channels: str = "auto"
    # Synthesis only: the records' defaults (a record may override any of them).
    tts: TtsParams | None = None

    @classmethod
    def from_flags(cls, kind: str, values: argparse.Namespace) -> JobConfig:
        """The config of ``values``, as ``voxbeam.jobs.args`` parsed them from ``voxbeam.flags``."""
        v = vars(values)
        tts = None
        if kind == "synthesize":
            tts = TtsParams(
                voice_id=v["voice_id"],
                language=v["language"],
                format=v["audio_format"],
                sample_rate=v["sample_rate"],
                speed=v["speed"],
                pitch=v["pitch"],
                volume=v["volume"],
            )
        given = {f.name: v[f.name] for f in fields(cls) if f.name in v}
        # The flags that are not already what the config holds: booleans spelled true/false, lists.
        typed = {
            "skip_existing": v["skip_existing"] == "true",
            "timestamps": v.get("timestamps", "true") == "true",
            "captions": split_list(v.get("captions")),
            "controls": SttControls(
                v.get("prompt"),
                v.get("hotwords"),
                v.get("task"),
                split_list(v.get("languages")) or None,
                model=v.get("stt_model"),
            ),
            "redact": tuple(v.get("redact") or ()),
            "redact_keep_original": v.get("redact_keep_original", "false") == "true",
            "diarize": v.get("diarize", "false") == "true",
        }
        return cls(**{**given, **typed, "kind": kind, "tts": tts})

    @property
    def stream(self) -> bool:
        """Whether the job reads a Pub/Sub stream (else a batch over --input)."""
        return any(getattr(self, name) for name in STREAM_SOURCES)

    @property
    def batch_input(self) -> str:
        """--input, which a batch run has (``voxbeam.jobs.args.parse`` makes sure)."""
        if self.input is None:
            raise UsageError("--input", "is required (or --input_subscription / --input_topic for a stream)")
        return self.input

    @property
    def tts_params(self) -> TtsParams:
        """The synthesis parameters (the defaults for a job that has none)."""
        return self.tts or TtsParams()
