"""Fixtures for the client tests: speech rendered once per session by the server's own TTS."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest

from tests import speech
from voxbeam.client import ClientConfig, RetryPolicy, SpeechClient, Timeouts

RATE = 16000


@pytest.fixture(scope="session")
def clips(server) -> list[bytes]:
    """PCM (16 kHz) of each of ``speech.SENTENCES``, through our own client's synthesize."""
    return speech.render(server, speech.SENTENCES, rate=RATE)


@pytest.fixture(scope="session")
def reference(server, clips) -> dict[int, str]:
    """Each clip's transcript from a fresh client and session: what pooling must not change."""

    async def one(pcm: bytes) -> str:
        async with SpeechClient(config_for(server)) as client:
            return (await client.transcribe(pcm)).text

    async def all_() -> list[str]:
        return list(await asyncio.gather(*(one(c) for c in clips)))

    return dict(enumerate(asyncio.run(all_())))


def config_for(server, **kw) -> ClientConfig:
    """A config for ``server`` with test-sized timeouts and backoff (overridable)."""
    kw.setdefault("endpoints", (server.url,))
    kw.setdefault("api_key", server.api_key)
    kw.setdefault("timeouts", Timeouts(connect=5, ready=10, result=10, record=60, pool=60))
    kw.setdefault("retry", RetryPolicy(max_attempts=5, base_delay=0.05, max_delay=0.5))
    return ClientConfig(**kw)


@contextlib.contextmanager
def local_server(**kw) -> Iterator[object]:
    """A dedicated LocalServer (for tests that kill, restart or cap it)."""
    from voxbeam.server.launcher import LocalServer

    with LocalServer(**kw) as srv:
        yield srv
