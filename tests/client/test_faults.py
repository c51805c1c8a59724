"""Faults: cut, stalled and refused connections, a dead endpoint, a killed server, a full server.

Every request must end with the right transcript or a typed error, within its retry budget,
with retries counted and no word doubled by a resend.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests import speech
from tests.client.conftest import config_for, local_server
from tests.client.proxy import FaultProxy
from voxbeam import protocol
from voxbeam.client import CircuitPolicy, ClientConfig, RetryPolicy, SpeechClient, Timeouts
from voxbeam.errors import (
    ConnectionLostError,
    RequestTimeoutError,
    RetriesExhaustedError,
    ServiceUnavailableError,
    VoxBeamError,
)


async def _with_proxy(server, body):
    proxy = await FaultProxy(server.port).start()
    try:
        return await body(proxy)
    finally:
        await proxy.close()


def test_connections_cut_mid_stream_are_retried_without_duplicates(server, phrases, reference):
    async def body(proxy):
        proxy.cut(after_bytes=12_000, connections=3)  # ~0.25 s into a phrase's audio
        async with SpeechClient(config_for(server, endpoints=(proxy.url,), pool_size=3)) as client:
            results = await asyncio.gather(*(client.transcribe(phrases[i]) for i in range(6)))
            return results, client.stats(), proxy.faults_injected

    results, stats, injected = asyncio.run(_with_proxy(server, body))
    assert injected == 3
    assert [r.text for r in results] == [reference[i] for i in range(6)]
    assert sum(r.attempts - 1 for r in results) == stats["retries"] == 3
    assert stats["sessions_retired"] >= 3 and stats["connections_opened"] >= 4  # the cut ones were replaced


def test_a_stalled_connection_times_out_and_the_file_is_resent(server, phrases, reference):
    async def body(proxy):
        proxy.stall(after_bytes=12_000)
        cfg = config_for(server, endpoints=(proxy.url,), timeouts=Timeouts(connect=2, ready=5, result=4.0, record=30))
        async with SpeechClient(cfg) as client:
            started = time.monotonic()
            r = await client.transcribe(phrases[5])
            return r, time.monotonic() - started, client.stats()

    r, elapsed, stats = asyncio.run(_with_proxy(server, body))
    assert r.text == reference[5] and r.attempts == 2
    assert stats["timeouts"] >= 1 and stats["retries"] == 1
    # The result timeout (4 s) fired, not before, and it was that one: the record timeout (30 s) came later.
    assert 4.0 <= elapsed < 30, elapsed


def test_a_connection_that_never_recovers_ends_when_the_retry_budget_runs_out(server, phrases):
    async def body(proxy):
        proxy.stall(after_bytes=5_000, connections=100)
        cfg = config_for(
            server,
            endpoints=(proxy.url,),
            timeouts=Timeouts(connect=2, ready=5, result=0.5, record=60),
            retry=RetryPolicy(budget=2.5, base_delay=0.05, max_delay=0.2),
        )
        async with SpeechClient(cfg) as client:
            started = time.monotonic()
            with pytest.raises(RetriesExhaustedError) as info:
                await client.transcribe(phrases[0])
            return info.value, time.monotonic() - started

    err, elapsed = asyncio.run(_with_proxy(server, body))
    # The budget counts from the first stall (0.5 s in): not given up before it ran out (the upper bound
    # only guards against a hang); the client's own account of the wait is checked below.
    assert 2.9 <= elapsed < 30, elapsed
    assert err.attempts >= 2 and isinstance(err.last, RequestTimeoutError)
    assert err.waited is not None and err.waited >= 2.5 and "retry budget 2.5 s" in str(err)


def test_the_record_timeout_bounds_one_attempt_and_the_budget_decides_on_retries(server, phrases, reference):
    async def body(proxy):
        proxy.stall(after_bytes=5_000, connections=1)
        cfg = config_for(
            server,
            endpoints=(proxy.url,),
            # A stall no result timeout notices (it is longer than the attempt): the record timeout ends it.
            timeouts=Timeouts(connect=2, ready=5, result=30, record=6.0),
            retry=RetryPolicy(budget=20, base_delay=0.05, max_delay=0.2),
        )
        async with SpeechClient(cfg) as client:
            started = time.monotonic()
            r = await client.transcribe(phrases[3])
            return r, time.monotonic() - started, client.stats()

    r, elapsed, stats = asyncio.run(_with_proxy(server, body))
    assert r.text == reference[3] and r.attempts == 2
    # The record timeout (6 s) ended the first attempt, not before, and before the result timeout (30 s) could.
    assert stats["timeouts"] >= 1 and 6.0 <= elapsed < 30, elapsed


def test_refused_connections_open_the_circuit_and_are_given_up_after_the_budget(server, phrases, reference):
    circuit = CircuitPolicy(failures=2, base_delay=0.2, max_delay=0.4)

    async def body(proxy):
        await proxy.refuse()
        cfg = config_for(
            server, endpoints=(proxy.url,), retry=RetryPolicy(budget=2.0, base_delay=0.05), circuit=circuit
        )
        async with SpeechClient(cfg) as client:
            started = time.monotonic()
            with pytest.raises(RetriesExhaustedError) as info:
                await client.transcribe(phrases[0])
            exhausted, elapsed, down = info.value, time.monotonic() - started, client.stats()
        # Refused for a moment only: the circuit's probe finds the service back.
        cfg = config_for(server, endpoints=(proxy.url,), retry=RetryPolicy(budget=20, base_delay=0.05), circuit=circuit)
        async with SpeechClient(cfg) as client:
            loop = asyncio.get_running_loop()
            loop.call_later(0.4, lambda: asyncio.ensure_future(proxy.accept()))
            r = await client.transcribe(phrases[0])
            return exhausted, elapsed, down, r, client.stats()

    exhausted, elapsed, down, r, stats = asyncio.run(_with_proxy(server, body))
    # Two refusals open the circuit; after that the record waits (probes are the pool's, not attempts).
    assert exhausted.attempts == 2, exhausted
    assert isinstance(exhausted.last, ServiceUnavailableError) and isinstance(exhausted.last.last, ConnectionLostError)
    assert "connection refused" in str(exhausted) and exhausted.waited is not None and exhausted.waited >= 2.0
    assert 2.0 <= elapsed < 30, elapsed  # the budget ran out, not before (the upper bound guards against a hang)
    # Probes about every 0.1-0.4 s over two seconds, not a connection per backoff of every record.
    assert 2 <= down["probes"] <= 12 and down["connect_failures"] == 2 + down["probes"], down
    assert r.text == reference[0] and r.attempts >= 2
    assert stats["connect_failures"] >= 1 and stats["probes"] >= 1


def test_connections_dropped_during_the_handshake_are_retried(server, phrases, reference):
    async def body(proxy):
        proxy.reset_on_accept(2)
        async with SpeechClient(config_for(server, endpoints=(proxy.url,))) as client:
            r = await client.transcribe(phrases[1])
            return r, client.stats()

    r, stats = asyncio.run(_with_proxy(server, body))
    assert r.text == reference[1] and r.attempts == 3 and stats["connect_failures"] == 2


def test_a_dead_endpoint_is_failed_over_and_avoided(server, phrases, reference):
    async def go():
        circuit = CircuitPolicy(failures=1, base_delay=30, max_delay=30)
        cfg = config_for(server, endpoints=("ws://127.0.0.1:9", server.url), pool_size=4, circuit=circuit)
        async with SpeechClient(cfg) as client:
            first = await asyncio.gather(*(client.transcribe(phrases[i]) for i in range(4)))
            failures_after_first = client.stats()["connect_failures"]
            second = await asyncio.gather(*(client.transcribe(phrases[i]) for i in range(4, 8)))
            return first + second, failures_after_first, client.stats(), client.pool.circuits()

    results, failures_first, stats, circuits = asyncio.run(go())
    assert circuits == {"ws://127.0.0.1:9": "open", server.url: "closed"}
    assert [r.text for r in results] == [reference[i] for i in range(8)]
    assert 1 <= failures_first <= 4
    assert stats["connect_failures"] == failures_first  # its circuit is open: not tried again
    assert stats["endpoints_down"] == 1
    assert stats["retries"] == 0  # a refused connection fails over at once, not after a backoff


def test_server_killed_and_restarted_mid_run(server, phrases, reference):
    """A dedicated server dies under 4 streaming requests and comes back: each ends right or typed."""
    gap = speech.silence(0.3)
    files = [gap.join(phrases[(i + k) % len(phrases)] for k in range(3)) for i in range(4)]

    async def reference_texts():  # the shared server runs the same engines (checked deterministic)
        # Paced like the faulted run: a live session finishes speech cut short by the flush its own way.
        async with SpeechClient(config_for(server, pool_size=4, realtime_pacing=True)) as client:
            return [r.text for r in await asyncio.gather(*(client.transcribe(f) for f in files))]

    expected = asyncio.run(reference_texts())
    with local_server(workers=2) as srv:

        async def go():
            cfg = config_for(
                srv,
                pool_size=4,
                realtime_pacing=True,  # keeps every request mid-stream when the server dies
                timeouts=Timeouts(connect=2, ready=20, result=20, record=60),
                retry=RetryPolicy(budget=60, base_delay=0.3, max_delay=2.0),
            )
            async with SpeechClient(cfg) as client:
                tasks = [asyncio.ensure_future(client.transcribe(f)) for f in files]
                await asyncio.sleep(1.0)
                await asyncio.to_thread(srv.kill)
                await asyncio.sleep(0.5)
                await asyncio.to_thread(srv.restart)
                started = time.monotonic()
                outcomes = await asyncio.gather(*tasks, return_exceptions=True)
                return outcomes, time.monotonic() - started, client.stats()

        outcomes, elapsed, stats = asyncio.run(go())
    assert elapsed < 180  # a guard: every request ends (the retry budget bounds it), checked below
    ok = 0
    for out, want in zip(outcomes, expected, strict=True):
        if isinstance(out, BaseException):
            assert isinstance(out, VoxBeamError), repr(out)
        else:
            # Restarted from the top on a new session: nothing lost or doubled. Words, not punctuation: where a
            # live session's utterances end depends on when its audio reached the worker ("No. Thank you." on a
            # loaded machine, "No, thank you." on an idle one), and so does the punctuation Whisper gives them.
            assert speech.normalize(out.text) == speech.normalize(want), (out.text, want)
            ok += 1
    assert ok >= 3, outcomes
    assert stats["retries"] >= 4  # every request was streaming when the server died
    assert stats["reconnects"] >= 1 and stats["connect_failures"] >= 1


def test_a_full_server_answers_busy_and_requests_complete_when_sessions_free(phrases, reference):
    with local_server(workers=1, extra_args=["--max_sessions", "2"]) as srv:

        async def go():
            cfg = config_for(srv, pool_size=8, retry=RetryPolicy(budget=120, base_delay=0.2, max_delay=2.0))
            async with SpeechClient(cfg) as client:
                results = await asyncio.gather(*(client.transcribe(phrases[i % len(phrases)]) for i in range(10)))
                return results, client.stats()

        results, stats = asyncio.run(go())
        health = srv.health()
    assert [r.text for r in results] == [reference[i % len(phrases)] for i in range(10)]
    assert stats["server_busy"] >= 1 and stats["failures"] == 0
    assert stats["open"] <= 2
    assert health["peak_sessions"] <= 2


def test_acquire_alone_waits_out_an_unavailable_service_only_until_its_timeout():
    """A caller of pool.acquire without a retry budget is bounded by its own timeout."""

    async def go():
        cfg = ClientConfig(endpoints=("ws://127.0.0.1:9",), api_key="k", circuit=CircuitPolicy(failures=1))
        async with SpeechClient(cfg) as client:
            with pytest.raises(ConnectionLostError):  # refused: the circuit opens
                await client.pool.acquire("stt", protocol.SttInit(), timeout=1.0)
            started = time.monotonic()
            with pytest.raises(ServiceUnavailableError) as info:
                await client.pool.acquire("stt", protocol.SttInit(), timeout=1.0)
            return info.value, time.monotonic() - started

    err, elapsed = asyncio.run(go())
    # Waited for its own timeout, not less; the upper bound guards against a wait that never ends.
    assert 0.9 <= elapsed < 30 and isinstance(err.last, ConnectionLostError), (elapsed, err)
