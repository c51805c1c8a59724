"""Fixtures for the client tests: speech rendered once per session by the server's own TTS."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest

from tests import speech
from voxbeam.client import ClientConfig, RetryPolicy, SpeechClient, Timeouts

RATE = 16000
# Short phrases keep the many-file tests cheap for a server that decodes at ~0.5 CPU-s per audio second.
PHRASES = ("Yes.", "No.", "Thank you.", "Monday.", "Sunday.", "Come here.", "Not today.", "See you later.")


def config_for(server, **kw) -> ClientConfig:
    """A config for ``server`` with test-sized timeouts and backoff (overridable)."""
    kw.setdefault("endpoints", (server.url,))
    kw.setdefault("api_key", server.api_key)
    kw.setdefault("timeouts", Timeouts(connect=5, ready=20, result=20, record=120, pool=300))
    kw.setdefault("retry", RetryPolicy(budget=60, base_delay=0.05, max_delay=0.5))
    return ClientConfig(**kw)


@pytest.fixture(scope="session")
def clips(server) -> list[bytes]:
    """PCM (16 kHz) of each of ``speech.SENTENCES``, through our own client's synthesize."""
    return speech.render(server, speech.SENTENCES, rate=RATE)


@pytest.fixture(scope="session")
def phrases(server) -> list[bytes]:
    return speech.render(server, PHRASES, rate=RATE)


@pytest.fixture(scope="session")
def reference(server, phrases) -> dict[int, str]:
    """Each phrase's transcript from a fresh client and session: what pooling must not change.

    Taken twice, one file at a time and all at once in reverse order. If those disagree, the
    server's results depend on what its decoders heard before (a pooled pocketsphinx decoder
    keeps CMN and dither state across utterances unless it is reset per utterance), and no
    comparison of pooled against fresh sessions can mean anything: that is reported as a failure.
    """

    async def one(pcm: bytes) -> str:
        async with SpeechClient(config_for(server)) as client:
            return (await client.transcribe(pcm)).text

    async def both() -> tuple[list[str], list[str]]:
        serial = [await one(p) for p in phrases]
        parallel = list(await asyncio.gather(*(one(p) for p in reversed(phrases))))[::-1]
        return serial, parallel

    serial, parallel = asyncio.run(both())
    if serial != parallel:
        pytest.fail(
            "the server is not deterministic: fresh sessions transcribe the same audio differently "
            f"depending on what ran before ({list(zip(serial, parallel, strict=True))}); "
            "reset each pooled decoder per utterance (Decoder.reinit_feat() before start_utt)"
        )
    assert sum(map(bool, serial)) >= 6, serial  # phrases must produce words, or equality proves little
    return dict(enumerate(serial))


@contextlib.contextmanager
def local_server(**kw) -> Iterator[object]:
    """A dedicated LocalServer (for tests that kill, restart or cap it)."""
    from voxbeam.server.launcher import LocalServer

    with LocalServer(**kw) as srv:
        yield srv
