"""A file to transcribe, as one mixed stream or as each of its channels (``Transcribe(channels=...)``).

``mix`` decodes the file to mono, as before channels were known; ``split`` transcribes each channel of a file
with two or more as its own stream (its own session), crosstalk gated (``voxbeam.channels``), and merges them;
``auto`` splits when the channels carry different speech, by ``voxbeam.channels``'s rule over the file's start.
Each stream decodes the file on its own, so memory stays that of one chunk per stream.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
from collections.abc import Iterator
from typing import Any

from voxbeam import audio, channels
from voxbeam.beam import storage
from voxbeam.client import SyncSpeechClient, TranscriptResult

CHUNK_MS = 200


def _mixed(uri: str, rate: int) -> Iterator[bytes]:
    # A generator, so the file closes when decoding ends or the client abandons it.
    with storage.open_read(uri) as fh:
        yield from audio.decode_to_pcm(fh, rate=rate, chunk_ms=CHUNK_MS)


def _channel(uri: str, count: int, channel: int, rate: int, levels: channels.Levels | None) -> Iterator[bytes]:
    with storage.open_read(uri) as fh:
        pcm = audio.decode_to_pcm(fh, rate=rate, chunk_ms=CHUNK_MS, keep_channels=True)
        yield from channels.gated(pcm, count, channel, rate, levels)


def splits(uri: str, mode: str, rate: int) -> int:
    """How many streams ``mode`` makes of the file: its channels when split, else 1 (mixed)."""
    if mode == "mix":
        return 1
    with storage.open_read(uri) as fh:
        count = channels.count(fh)
    if count < 2 or mode == "split":
        return count
    with storage.open_read(uri) as fh:
        pcm = audio.decode_to_pcm(fh, rate=rate, chunk_ms=CHUNK_MS, keep_channels=True)
        with contextlib.closing(pcm):
            return count if channels.survey(pcm, count, rate).split else 1


def start(
    client: SyncSpeechClient, uri: str, mode: str, rate: int, **options: Any
) -> concurrent.futures.Future[TranscriptResult]:
    """Start transcribing ``uri`` as ``mode`` (``voxbeam.flags.CHANNELS``) has it."""
    count = splits(uri, mode, rate)
    if count < 2:
        return client.transcribe_async(functools.partial(_mixed, uri, rate), sample_rate=rate, **options)
    # Frame levels are measured by channel 0's stream, the time each stream leaves out by each; read when all are done.
    levels = channels.Levels(rate)
    factories = [functools.partial(_channel, uri, count, c, rate, levels) for c in range(count)]
    return client.transcribe_channels_async(factories, levels, sample_rate=rate, **options)
