"""Async and blocking clients for the VoxNexus STT / TTS WebSocket API, with a session pool.

    async with SpeechClient(ClientConfig(endpoints=("wss://api.voxnexus.ai",))) as client:
        result = await client.transcribe(pcm_chunks, sample_rate=16000)

Beam and other threaded code use ``SyncSpeechClient`` (a ``SpeechClient`` on a background event loop).
Plumbing (the session pool, the loop, the segmenter) stays in its submodule.
"""

from voxbeam.client.config import CircuitPolicy, ClientConfig, RetryPolicy, Timeouts
from voxbeam.client.results import Segment, SynthesisResult, TranscriptResult, Word
from voxbeam.client.speech import SpeechClient, TranscribeOptions
from voxbeam.client.sync import SyncSpeechClient
from voxbeam.protocol import TtsParams

__all__ = [
    "CircuitPolicy",
    "ClientConfig",
    "RetryPolicy",
    "Segment",
    "SpeechClient",
    "SyncSpeechClient",
    "SynthesisResult",
    "Timeouts",
    "TranscribeOptions",
    "TtsParams",
    "TranscriptResult",
    "Word",
]
