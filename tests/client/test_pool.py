"""The pool under load: bounded connections, reuse across files, results unchanged by pooling."""

from __future__ import annotations

import asyncio

from tests import speech
from tests.client.conftest import config_for
from voxbeam.client import SpeechClient


def test_24_files_through_8_sessions_match_fresh_sessions(server, phrases, reference):
    """24 short files, 8 pooled sessions: at most 8 connections, every transcript as a fresh session gives."""
    n_files = 24
    # File i is phrase i % k: every file's reference is a fresh session on identical audio.
    files = [(i % len(phrases), phrases[i % len(phrases)]) for i in range(n_files)]
    before = server.health()["connections_total"]

    async def go():
        async with SpeechClient(config_for(server, pool_size=8)) as client:
            results = await asyncio.gather(*(client.transcribe(pcm) for _, pcm in files))
            return results, client.stats(), repr(client.pool)

    results, stats, pool_repr = asyncio.run(go())
    opened = server.health()["connections_total"] - before
    assert opened <= 8, (opened, stats)
    assert stats["connections_opened"] <= 8 and stats["sessions_opened"] <= 8
    assert stats["transcriptions"] == n_files and stats["failures"] == 0 and stats["retries"] == 0
    mismatches = [(k, r.text, reference[k]) for (k, _), r in zip(files, results, strict=True) if r.text != reference[k]]
    assert not mismatches, mismatches[:5]
    assert all(bool(r.words) == bool(reference[k]) for (k, _), r in zip(files, results, strict=True))
    # Each file got its own recognition session id.
    ids = [r.request_ids[0] for r in results]
    assert len(set(ids)) == n_files
    assert "max=8" in pool_repr


def test_sessions_of_different_configurations_share_one_bound(server, phrases):
    """STT at two rates and TTS through a pool of 2: idle sessions of one key make room for another."""

    async def go():
        async with SpeechClient(config_for(server, pool_size=2)) as client:
            pcm8k = speech.silence(0.2) + phrases[0][::2]  # crude 8 kHz version
            jobs = []
            for i in range(3):
                jobs.append(client.transcribe(phrases[i]))
                jobs.append(client.transcribe(pcm8k, sample_rate=8000))
                jobs.append(client.synthesize(f"Number {i}."))
            results = await asyncio.gather(*jobs)
            return results, client.stats()

    results, stats = asyncio.run(go())
    assert len(results) == 9 and stats["failures"] == 0
    assert stats["open"] <= 2
    assert stats["sessions_evicted"] >= 1
