"""Issue 33: one client must not lock out the others; and the small defects found on the way.

A dedicated server per module with three keys; connections are made as a misbehaving client would
(upgrades completed, no init), from the address every client shares (127.0.0.1, as behind a proxy).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.reliability.conftest import dedicated_server
from tests.server import helpers as h
from voxbeam import protocol

KEYS = ["admission-key-one-000000000", "admission-key-two-000000000", "admission-key-three-0000000"]
PRE_INIT = 8
PER_ADDRESS = 5
INIT_S = 1.0


class Keyed:
    def __init__(self, srv: Any, key: str) -> None:
        self.url, self.api_key = srv.url, key


@pytest.fixture(scope="module")
def gate(tmp_path_factory):
    args = ["--max_pre_init_per_key", str(PRE_INIT), "--max_connections_per_address", str(PER_ADDRESS),
            "--init_timeout", str(INIT_S), "--trusted_proxies", "127.0.0.1"]  # fmt: skip
    with dedicated_server(workers=1, api_keys=KEYS, extra_args=args) as srv:
        yield srv


async def hold_without_init(srv: Any, key: str, n: int, headers: dict[str, str] | None = None) -> tuple[list, int]:
    """Open ``n`` connections of ``key`` that never init; (the open ones, how many were refused at the handshake)."""
    held, refused = [], 0
    for _ in range(n):
        try:
            held.append(
                await connect(srv.url + protocol.STT_PATH, additional_headers={"X-Api-Key": key, **(headers or {})})
            )
        except InvalidStatus as exc:
            assert exc.response.status_code == 429, exc.response.status_code
            refused += 1
    return held, refused


def test_a_key_holding_connections_without_init_locks_out_only_itself(gate, server):
    clip = asyncio.run(h.tts_pcm(server, ["Please call me when you get home."]))

    async def main() -> tuple[int, int, list[dict[str, Any]]]:
        held, refused = await hold_without_init(gate, KEYS[0], 300)
        try:
            # Another key, from the same address, is served as if nothing were going on.
            msgs = await h.transcribe(Keyed(gate, KEYS[1]), h.silence(0.3) + clip + h.silence(0.3))
        finally:
            for ws in held:
                await ws.close()
        return len(held), refused, msgs

    held, refused, msgs = asyncio.run(main())
    assert held == min(PRE_INIT, PER_ADDRESS) and refused == 300 - held, (held, refused)
    assert "call me" in " ".join(m["text"] for m in h.finals(msgs)).lower()


def test_a_connection_without_init_is_dropped_at_the_deadline_without_a_closing_handshake(gate):
    async def main() -> tuple[float, int | None, list[dict[str, Any]]]:
        ws = await connect(gate.url + protocol.STT_PATH, additional_headers={"X-Api-Key": KEYS[2]})
        started = time.monotonic()
        seen = []
        try:
            while True:
                seen.append(json.loads(await ws.recv()))
        except ConnectionClosed:
            pass
        return time.monotonic() - started, ws.close_code, seen

    after, code, seen = asyncio.run(main())
    assert INIT_S - 0.2 <= after < INIT_S + 30, after  # not before the deadline; the bound guards a hang
    assert code == 1006, code  # dropped: no close frame exchanged
    assert [m["code"] for m in seen] == ["IDLE_TIMEOUT"], seen


def test_behind_a_trusted_proxy_each_client_it_names_is_counted_on_its_own(gate):
    """From 127.0.0.1 (a trusted proxy here), the per-address cap counts the address X-Forwarded-For names;
    the key's own cap on connections without init still holds them all."""

    async def main() -> tuple[int, int]:
        clients = [
            await hold_without_init(gate, KEYS[2], 1, headers={"X-Forwarded-For": f"198.51.100.7, 203.0.113.{i}"})
            for i in range(PER_ADDRESS + 1)
        ]
        more, refused = await hold_without_init(gate, KEYS[2], PRE_INIT, headers={"X-Forwarded-For": "203.0.113.99"})
        for held, _ in clients:
            for ws in held:
                await ws.close()
        for ws in more:
            await ws.close()
        return sum(len(held) for held, _ in clients), len(more)

    distinct, more = asyncio.run(main())
    assert distinct == PER_ADDRESS + 1  # more than one address's share, from the proxy's one address
    assert more == PRE_INIT - distinct  # then the key's own cap, whatever address


def test_healthz_without_a_key_tells_status_and_capacity_only(gate):
    url = gate.url.replace("ws://", "http://") + "/healthz"
    with urllib.request.urlopen(url, timeout=10) as resp:
        anonymous = json.load(resp)
    assert set(anonymous) == {"status", "capacity"}, anonymous
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {KEYS[0]}"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        full = json.load(resp)
    assert {"sessions", "worker_pids", "replica", "voices"} <= set(full)


def test_prosody_that_would_be_silent_is_refused_naming_the_range(server):
    async def main() -> dict[str, Any]:
        async with await h.connect_to(server, "tts") as ws:
            return await h.init(ws, voice_id="vl-jenny", voice_config={"style": "whispering", "degree": 1.8})

    reply = asyncio.run(main())
    assert reply["code"] == "INVALID_MESSAGE" and "silent" in reply["error"] and "below 1.58" in reply["error"]


def test_errors_quote_at_most_a_little_of_what_the_client_sent(server):
    async def main() -> dict[str, Any]:
        async with await h.connect_to(server, "tts") as ws:
            return await h.init(ws, format="x" * 900_000)

    reply = asyncio.run(main())
    assert reply["code"] == "UNSUPPORTED_FORMAT" and len(reply["error"]) < 300, len(reply["error"])
    assert "more characters" in reply["error"]


def test_a_sample_rate_that_is_a_number_but_not_a_whole_one_says_so(server):
    async def main() -> dict[str, Any]:
        async with await h.connect_to(server, "stt") as ws:
            return await h.init(ws, sample_rate=16000.5)

    reply = asyncio.run(main())
    assert reply["code"] == "INVALID_MESSAGE" and "whole number" in reply["error"] and "16000.5" in reply["error"]


def test_a_short_key_is_refused_at_start():
    proc = subprocess.run(
        [sys.executable, "-m", "voxbeam", "serve", "--port", "0"],
        env={"VOXNEXUS_API_KEY": "short-key", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "shorter than 16 characters" in proc.stderr, proc.stderr
    assert "short-key" not in proc.stderr
