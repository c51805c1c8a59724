"""Beam transforms for bulk speech-to-text and text-to-speech.

Batch: ``Transcribe`` / ``Synthesize`` and the writers. Streaming: ``AudioNotifications`` and
``TextRecordMessages`` turn Pub/Sub messages into the same records (their ``RECORDS`` output).
Plumbing (worker clients, progress, storage) stays in its submodule.
"""

from voxbeam.beam._dofns import DEAD_LETTERS
from voxbeam.beam.audio_records import AudioRecord
from voxbeam.beam.notifications import RECORDS, AudioNotifications, TextRecordMessages
from voxbeam.beam.options import (
    Secret,
    ServiceSettings,
    SynthesizeTextOptions,
    TranscribeAudioOptions,
    VoxBeamOptions,
)
from voxbeam.beam.redacted_audio import REDACTED_AUDIO, REDACTED_AUDIO_MANIFEST
from voxbeam.beam.redacting import UNREDACTED
from voxbeam.beam.transforms import (
    MANIFEST,
    TRANSCRIPTS,
    Synthesize,
    Transcribe,
    WriteDeadLetters,
    WriteManifest,
    WriteRedactedAudioManifest,
    WriteTranscripts,
    WriteUnredacted,
)
from voxbeam.protocol import TtsParams

__all__ = [
    "DEAD_LETTERS",
    "MANIFEST",
    "RECORDS",
    "REDACTED_AUDIO",
    "REDACTED_AUDIO_MANIFEST",
    "TRANSCRIPTS",
    "UNREDACTED",
    "AudioNotifications",
    "AudioRecord",
    "Secret",
    "ServiceSettings",
    "Synthesize",
    "SynthesizeTextOptions",
    "TextRecordMessages",
    "Transcribe",
    "TranscribeAudioOptions",
    "TtsParams",
    "VoxBeamOptions",
    "WriteDeadLetters",
    "WriteManifest",
    "WriteRedactedAudioManifest",
    "WriteTranscripts",
    "WriteUnredacted",
]
