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

from tests import speech
from tests.reliability.conftest import dedicated_server
from tests.server import helpers as h
from voxbeam import protocol

KEYS = ["admission-key-one-000000000", "admission-key-two-000000000", "admission-key-three-0000000"]
PRE_INIT = 8
PER_ADDRESS = 5
INIT_S = 3.0  # long enough that a burst of connections is surely held at once
LIVE = 2
QUEUE_S = 5.0


class Keyed:
    def __init__(self, srv: Any, key: str) -> None:
        self.url, self.api_key = srv.url, key


@pytest.fixture(scope="module")
def gate(tmp_path_factory):
    args = ["--max_pre_init_per_key", str(PRE_INIT), "--max_connections_per_address", str(PER_ADDRESS),
            "--init_timeout", str(INIT_S), "--trusted_proxies", "127.0.0.1",
            "--live_capacity", str(LIVE), "--stt_capacity", "2", "--max_queue_s", str(QUEUE_S)]  # fmt: skip
    with dedicated_server(workers=1, api_keys=KEYS, extra_args=args) as srv:
        yield srv


class Holding:
    """Connections of one key that never init, as a misbehaving client keeps them.

    The server drops each at its init deadline, so how many it holds at once is counted from the client's
    side as a lower bound: a connection begun less than the deadline ago is surely still held.
    """

    def __init__(self) -> None:
        self.opened: list[tuple[float, Any]] = []
        self.refused = 0
        self.most_at_once = 0

    async def open(self, srv: Any, key: str, n: int, headers: dict[str, str] = {}) -> int:  # noqa: B006 (read only)
        """Try ``n`` more; how many were let in."""
        before = len(self.opened)
        for _ in range(n):
            begun = time.monotonic()
            try:
                ws = await connect(srv.url + protocol.STT_PATH, additional_headers={"X-Api-Key": key, **headers})
            except InvalidStatus as exc:
                assert exc.response.status_code == 429, exc.response.status_code
                self.refused += 1
                continue
            self.opened.append((begun, ws))
            now = time.monotonic()
            self.most_at_once = max(self.most_at_once, sum(now < t + INIT_S for t, _ in self.opened))
        return len(self.opened) - before

    async def close(self) -> None:
        for _, ws in self.opened:
            await ws.close()


def test_a_key_holding_connections_without_init_locks_out_only_itself(gate, server):
    clip = asyncio.run(h.tts_pcm(server, ["Please call me when you get home."]))

    async def main() -> tuple[Holding, list[dict[str, Any]]]:
        holding = Holding()
        await holding.open(gate, KEYS[0], 300)
        try:
            # Another key, from the same address, is served as if nothing were going on.
            msgs = await h.transcribe(Keyed(gate, KEYS[1]), h.silence(0.3) + clip + h.silence(0.3))
        finally:
            await holding.close()
        return holding, msgs

    holding, msgs = asyncio.run(main())
    assert holding.most_at_once == min(PRE_INIT, PER_ADDRESS), holding.most_at_once
    assert holding.refused > 300 / 2, holding.refused  # dropped ones make room again: a round every deadline
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

    async def main() -> tuple[int, Holding]:
        holding = Holding()
        distinct = 0
        for i in range(PER_ADDRESS + 1):
            forwarded = {"X-Forwarded-For": f"198.51.100.7, 203.0.113.{i}"}
            distinct += await holding.open(gate, KEYS[2], 1, headers=forwarded)
        await holding.open(gate, KEYS[2], PRE_INIT, headers={"X-Forwarded-For": "203.0.113.99"})
        await holding.close()
        return distinct, holding

    distinct, holding = asyncio.run(main())
    assert distinct == PER_ADDRESS + 1  # more than one address's share, from the proxy's one address
    assert holding.most_at_once == PRE_INIT and holding.refused > 0  # then the key's own cap, whatever address


def test_healthz_without_a_key_tells_status_and_capacity_only(gate):
    url = gate.url.replace("ws://", "http://") + "/healthz"
    with urllib.request.urlopen(url, timeout=10) as resp:
        anonymous = json.load(resp)
    assert set(anonymous) == {
        "status",
        "capacity",
        "live_capacity",
        "audio_capacity",
        "bulk_sessions",
        "capabilities",
        "models",
    }, anonymous
    assert anonymous["bulk_sessions"] == 6 * gate.workers  # a batch of three in hand and one queued, per worker
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


def test_live_sessions_past_what_the_server_keeps_real_time_are_refused_at_init(gate):
    async def main() -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
        live = [
            await connect(gate.url + protocol.STT_PATH, additional_headers={"X-Api-Key": KEYS[1]}) for _ in range(LIVE)
        ]
        readies = [await h.init(ws, realtime=True) for ws in live]
        extra = await connect(gate.url + protocol.STT_PATH, additional_headers={"X-Api-Key": KEYS[1]})
        refused = await h.init(extra, realtime=True)  # the first reply to its init: no work was done for it
        # A bulk session is no live stream: it is admitted beside them.
        async with await connect(gate.url + protocol.STT_PATH, additional_headers={"X-Api-Key": KEYS[1]}) as bulk:
            bulk_reply = await h.init(bulk, realtime=False)
        for ws in [*live, extra]:
            await ws.close()
        return readies, refused, bulk_reply

    readies, refused, bulk_reply = asyncio.run(main())
    assert [r["type"] for r in readies] == ["ready"] * LIVE
    assert refused["code"] == "SERVER_BUSY" and f"{LIVE} live streams" in refused["error"], refused
    assert bulk_reply["type"] == "ready", bulk_reply
    assert gate.health()["live_capacity"] == LIVE


def test_a_session_that_streams_at_real_time_without_saying_so_needs_a_live_slot_too(gate, server):
    clip = asyncio.run(h.tts_pcm(server, ["Thank you very much for your help today."]))

    async def main() -> dict[str, Any]:
        held = [
            await connect(gate.url + protocol.STT_PATH, additional_headers={"X-Api-Key": KEYS[1]}) for _ in range(LIVE)
        ]
        for ws in held:
            assert (await h.init(ws, realtime=True))["type"] == "ready"
        async with await h.connect_to(Keyed(gate, KEYS[0]), "stt") as spec_only:
            assert (await h.init(spec_only))["type"] == "ready"  # the spec's own init: admitted, kind unknown
            sender = asyncio.create_task(h.send_audio(spec_only, clip * 3, chunk=3200, realtime_rate=16000))
            try:
                while True:
                    msg = await h.recv(spec_only, 30)
                    if msg["type"] == "error":
                        return msg
            finally:
                sender.cancel()
                for ws in held:
                    await ws.close()

    error = asyncio.run(main())
    assert error["code"] == "SERVER_BUSY" and "live streams" in error["error"], error


def test_a_bulk_session_is_told_when_its_audio_would_wait_too_long(gate, server):
    """With a long upload's decoding queued (a capacity of 2 audio s/s, configured), a file that says it is
    bulk is refused with SERVER_BUSY saying how long it would wait, instead of waiting."""
    clips = speech.render(server, speech.SENTENCES)
    upload = b"".join(c + speech.silence(0.3) for c in clips * 12)  # a few minutes of speech

    async def main() -> dict[str, Any]:
        async with await h.connect_to(Keyed(gate, KEYS[0]), "stt") as long_one:
            assert (await h.init(long_one, realtime=False))["type"] == "ready"
            await h.send_audio(long_one, upload)
            deadline = time.monotonic() + 120  # a guard: the queue fills as rounds are cut
            while gate.health()["decode_backlog_s"] <= 2 * QUEUE_S * 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            async with await h.connect_to(Keyed(gate, KEYS[1]), "stt") as newcomer:
                reply = await h.init(newcomer, realtime=False)
        # What a worker had in hand is decoded still: leave the server idle for the module's other tests.
        deadline = time.monotonic() + 120
        while gate.health()["decode_backlog_s"] > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        return reply

    reply = asyncio.run(main())
    assert reply["code"] == "SERVER_BUSY" and "would wait about" in reply["error"], reply
