"""Authentication: keys are compared in constant time, bad keys get no work done, per-key caps hold.

The constant-time claim is checked on the running server, not by reading its source: the
server is started with a ``sitecustomize`` (on PYTHONPATH) that wraps ``hmac.compare_digest``
and records a digest of each pair it compares. Every bad key sent must show up there as
compared, and the server's engine counters must not move while bad keys are rejected.
(Wall-clock timing of comparisons is far too noisy over a socket to test directly.)
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import textwrap
import uuid
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.reliability.conftest import dedicated_server
from voxbeam import protocol
from voxbeam.client import ClientConfig, RetryPolicy, SpeechClient, Timeouts
from voxbeam.errors import AuthenticationError, RetriesExhaustedError, ServerBusyError

SITECUSTOMIZE = textwrap.dedent(
    '''
    """Test hook: record what hmac.compare_digest compares (as SHA-256 digests) in a log file."""
    import hashlib
    import hmac
    import os

    _LOG = os.environ.get("VOXBEAM_TEST_COMPARE_LOG")
    if _LOG:
        _real = hmac.compare_digest

        def _digest(value):
            if isinstance(value, str):
                value = value.encode("utf-8", "surrogatepass")
            return hashlib.sha256(bytes(value)).hexdigest()

        def compare_digest(a, b):
            with open(_LOG, "a") as fh:
                fh.write(_digest(a) + " " + _digest(b) + "\\n")
            return _real(a, b)

        hmac.compare_digest = compare_digest
    '''
)

KEY_A = "key-A-" + uuid.uuid4().hex
KEY_B = "key-B-" + uuid.uuid4().hex
PER_KEY = 2


def sha(value: str | bytes) -> str:
    return hashlib.sha256(value.encode() if isinstance(value, str) else value).hexdigest()


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    hook = tmp_path_factory.mktemp("hook")
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    log = hook / "compare.log"
    env = {
        "VOXBEAM_TEST_COMPARE_LOG": str(log),
        "PYTHONPATH": os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH")) if p),
    }
    with dedicated_server(
        workers=1, api_keys=[KEY_A, KEY_B], env=env, extra_args=["--max_sessions_per_key", str(PER_KEY)]
    ) as srv:
        yield srv, log


def bad_keys() -> list[str]:
    """Wrong keys near and far from the right ones: prefixes, one character off, longer, other alphabets."""
    keys = [
        "",
        "x",
        KEY_A[:-1],
        KEY_A + "0",
        KEY_A[:-1] + ("0" if KEY_A[-1] != "0" else "1"),
        "0" + KEY_A[1:],
        KEY_A.upper(),
        KEY_B[: len(KEY_B) // 2],
        "k" * 4096,
        "ключ-" + uuid.uuid4().hex,
        KEY_A[:5] + " " + KEY_A[5:],  # (leading or trailing blanks are not part of a header value)
    ]
    keys += [f"key-A-{uuid.uuid4().hex}" for _ in range(40)]
    return keys


async def try_key(srv: Any, service: str, key: str, how: str) -> str:
    """Connect with ``key``; send init (and work) if let in. Returns how the server said no."""
    url = srv.url + (protocol.STT_PATH if service == "stt" else protocol.TTS_PATH)
    headers = {}
    if how == "header":
        headers["X-Api-Key"] = key
    else:
        from urllib.parse import quote

        url += "?token=" + quote(key, safe="")
    try:
        async with connect(url, additional_headers=headers, open_timeout=10, close_timeout=2) as ws:
            init = protocol.SttInit() if service == "stt" else protocol.TtsInit()
            try:
                await ws.send(protocol.serialize(init))
                work = protocol.Audio(b"\1\0" * 8000) if service == "stt" else protocol.Text("Hello there.", True)
                await ws.send(protocol.serialize(work))
                if service == "stt":
                    await ws.send(protocol.serialize(protocol.Command("flush")))
            except ConnectionClosed:
                pass
            messages = []
            try:
                async with asyncio.timeout(10):
                    async for frame in ws:
                        messages.append(protocol.parse_server_message(frame))
            except ConnectionClosed:
                pass
            rcvd = ws.protocol.close_rcvd
            code = rcvd.code if rcvd is not None else None
    except InvalidStatus as exc:
        assert exc.response.status_code in (401, 403), exc
        return f"http {exc.response.status_code}"
    kinds = [m.type for m in messages]
    assert not {"ready", "audio", "transcript", "flush_done"} & set(kinds), kinds
    errors = [m for m in messages if isinstance(m, protocol.Error)]
    assert code == protocol.CLOSE_POLICY_VIOLATION, (code, messages)
    assert all(e.code == "UNAUTHORIZED" for e in errors), errors
    return "UNAUTHORIZED/1008"


def engine_counters(health: dict[str, Any]) -> dict[str, Any]:
    """What counts engine work in /healthz: requests sent to the workers, by op, and sessions admitted."""
    return {"engine_calls": health["engine_calls"], "peak_sessions": health["peak_sessions"]}


def test_bad_keys_are_compared_in_constant_time_and_rejected_before_any_work(auth_server):
    srv, log = auth_server
    before = srv.health()
    counters = engine_counters(before)
    compared_before = log.read_text().splitlines() if log.exists() else []

    keys = bad_keys()

    async def go() -> list[str]:
        outcomes = []
        for i, key in enumerate(keys):
            service = "stt" if i % 2 == 0 else "tts"
            how = "header" if i % 3 else "query"
            try:
                outcomes.append(await try_key(srv, service, key, how))
            except Exception as exc:
                raise AssertionError(f"bad key #{i} ({how}, {service}, {len(key)} chars): {exc!r}") from exc
        return outcomes

    outcomes = asyncio.run(go())
    after = srv.health()
    assert engine_counters(after) == counters, (counters, engine_counters(after))
    assert after["rejected_unauthorized"] - before["rejected_unauthorized"] == len(keys), (before, after)
    assert set(outcomes) <= {"UNAUTHORIZED/1008", "http 401", "http 403"}, set(outcomes)

    compared = (log.read_text().splitlines() if log.exists() else [])[len(compared_before) :]
    seen = {d for line in compared for d in line.split()}
    # Each bad key went through hmac.compare_digest (raw, or as its SHA-256 if the server hashes
    # first). An empty key is refused without a comparison, which tells an attacker nothing.
    forms = {k: {sha(k), sha(hashlib.sha256(k.encode()).digest()), sha(sha(k))} for k in keys}
    missing = [k for k in keys if k and not forms[k] & seen]
    assert not missing, f"{len(missing)} bad keys were never compared with hmac.compare_digest"


def test_the_right_keys_still_work_by_header_and_query(auth_server, short_clips):
    srv, _ = auth_server
    before = srv.health()["engine_calls"]

    async def go():
        out = []
        for key, auth in ((KEY_A, "header"), (KEY_B, "query")):
            cfg = ClientConfig(endpoints=(srv.url,), api_key=key, auth=auth)
            async with SpeechClient(cfg) as client:
                out.append((await client.transcribe(short_clips[0])).text)
        return out

    assert all(asyncio.run(go()))
    after = srv.health()["engine_calls"]
    # The same probe that stays flat for bad keys moves for good ones.
    assert after.get("stt_audio", 0) > before.get("stt_audio", 0), (before, after)


def test_a_wrong_key_is_a_typed_error_and_not_retried(auth_server):
    srv, _ = auth_server

    async def go():
        cfg = ClientConfig(endpoints=(srv.url,), api_key="wrong", retry=RetryPolicy(max_attempts=5))
        async with SpeechClient(cfg) as client:
            with pytest.raises(AuthenticationError) as info:
                await client.synthesize("Hello.")
            return info.value, client.stats()

    err, stats = asyncio.run(go())
    assert err.attempts == 1 and stats["retries"] == 0


def test_sessions_per_key_are_capped(auth_server):
    srv, _ = auth_server
    timeouts = Timeouts(connect=5, ready=10, result=10, record=30, pool=30)

    async def go():
        hold_a = SpeechClient(ClientConfig(endpoints=(srv.url,), api_key=KEY_A, pool_size=PER_KEY + 1))
        try:
            # PER_KEY sessions of key A, held open.
            held = [await hold_a.pool.acquire("tts", protocol.TtsInit(), timeout=10) for _ in range(PER_KEY)]
            # One more with key A is refused; key B is not affected by A's sessions.
            one_more = ClientConfig(
                endpoints=(srv.url,), api_key=KEY_A, retry=RetryPolicy(max_attempts=1), timeouts=timeouts
            )
            async with SpeechClient(one_more) as extra:
                with pytest.raises((RetriesExhaustedError, ServerBusyError)) as info:
                    await extra.synthesize("Hello.")
            refused = info.value
            async with SpeechClient(ClientConfig(endpoints=(srv.url,), api_key=KEY_B, timeouts=timeouts)) as b:
                other_key = await b.synthesize("Hello.")
            # When A gives one back, A gets in again.
            hold_a.pool.release(held.pop(), healthy=False)
            await asyncio.sleep(0.5)
            async with SpeechClient(ClientConfig(endpoints=(srv.url,), api_key=KEY_A, timeouts=timeouts)) as again:
                after_release = await again.synthesize("Hello.")
            return refused, other_key, after_release
        finally:
            await hold_a.aclose()

    refused, other_key, after_release = asyncio.run(go())
    last = refused.last if isinstance(refused, RetriesExhaustedError) else refused
    assert isinstance(last, ServerBusyError), refused
    assert other_key.audio and after_release.audio
