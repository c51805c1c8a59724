"""Beam transforms for bulk speech-to-text and text-to-speech."""

from voxbeam.beam._dofns import DEAD_LETTERS
from voxbeam.beam._workers import close_worker_clients
from voxbeam.beam.options import (
    Secret,
    ServiceSettings,
    SynthesizeTextOptions,
    TranscribeAudioOptions,
    VoxBeamOptions,
)
from voxbeam.beam.transforms import (
    MANIFEST,
    TRANSCRIPTS,
    Synthesize,
    Transcribe,
    WriteDeadLetters,
    WriteManifest,
    WriteTranscripts,
)

__all__ = [
    "DEAD_LETTERS",
    "MANIFEST",
    "TRANSCRIPTS",
    "Secret",
    "ServiceSettings",
    "Synthesize",
    "SynthesizeTextOptions",
    "Transcribe",
    "TranscribeAudioOptions",
    "VoxBeamOptions",
    "WriteDeadLetters",
    "WriteManifest",
    "WriteTranscripts",
    "close_worker_clients",
]
