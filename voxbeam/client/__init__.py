"""Async and blocking clients for the VoxNexus STT / TTS WebSocket API, with a session pool.

    async with SpeechClient(ClientConfig(endpoints=("wss://api.voxnexus.ai",))) as client:
        result = await client.transcribe(pcm_chunks, sample_rate=16000)

Beam and other threaded code use ``SyncSpeechClient`` (a ``SpeechClient`` on a ``BackgroundLoop``).
"""

from voxbeam.client.config import CircuitPolicy, ClientConfig, RetryPolicy, Timeouts
from voxbeam.client.pool import SessionPool
from voxbeam.client.results import Segment, SynthesisResult, TranscriptResult, Word
from voxbeam.client.segmenter import quietest_cut
from voxbeam.client.speech import SpeechClient
from voxbeam.client.sync import BackgroundLoop, SyncSpeechClient

__all__ = [
    "BackgroundLoop",
    "CircuitPolicy",
    "ClientConfig",
    "RetryPolicy",
    "Segment",
    "SessionPool",
    "SpeechClient",
    "SyncSpeechClient",
    "SynthesisResult",
    "Timeouts",
    "TranscriptResult",
    "Word",
    "quietest_cut",
]
