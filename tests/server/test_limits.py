"""A small dedicated server (wss, 1 worker, 2 sessions, 1 per key, 2 s idle): limits and faults.

The tests run in file order on one server: TLS, SERVER_BUSY, IDLE_TIMEOUT, a killed worker,
restart on the same port, and last a graceful shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import time

import psutil
import pytest
from websockets.exceptions import ConnectionClosed

from tests.server import helpers as h
from voxbeam.server.launcher import LocalServer

IDLE = 2.0
GRACE = 4.0
INIT = 1.0  # before the idle timeout: the init deadline is what closes a connection that never inits
KEYS = ["key-one-" + "a" * 20, "key-two-" + "b" * 20, "key-three-" + "c" * 20]


def _self_signed(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


class Keyed:
    """The small server seen with one particular key (helpers read ``url`` and ``api_key``)."""

    def __init__(self, srv: LocalServer, key: str) -> None:
        self.url = srv.url
        self.api_key = key


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("small")
    cert, key = _self_signed(tmp)
    srv = LocalServer(
        api_keys=KEYS,
        workers=1,
        max_sessions=2,
        log_path=str(tmp / "server.log"),
        extra_args=[
            "--max_sessions_per_key",
            "1",
            "--idle_timeout",
            str(IDLE),
            "--init_timeout",
            str(INIT),
            "--shutdown_grace",
            str(GRACE),
            "--decoders_per_worker",
            "1",
            "--tls_cert",
            cert,
            "--tls_key",
            key,
        ],
    )
    srv.start()
    yield srv
    srv.stop()


def test_tls_and_the_key_stays_out_of_argv_and_repr(small):
    assert small.url.startswith("wss://127.0.0.1:")
    cmdline = " ".join(psutil.Process(small.pid).cmdline())
    assert all(k not in cmdline for k in KEYS)
    assert all(k not in repr(small) for k in KEYS)

    async def main():
        async with await h.connect_to(Keyed(small, KEYS[0]), "tts", auth="token") as ws:
            assert (await h.init(ws, format="pcm"))["type"] == "ready"
            assert len(await h.synthesize(ws, ["Secure."])) > 1000

    asyncio.run(main())


def test_server_busy_past_capacity_and_per_key(small):
    """A slot is taken at init: connecting costs none; past a key's limit or the server's, SERVER_BUSY."""

    async def main():
        one = await h.connect_to(Keyed(small, KEYS[0]), "stt")
        idle = await h.connect_to(Keyed(small, KEYS[0]), "stt")  # connected, no init: holds no slot
        assert (await h.init(one))["type"] == "ready"
        # Same key again: that key's limit (1).
        async with await h.connect_to(Keyed(small, KEYS[0]), "tts") as again:
            await h.send(again, {"type": "init"})
            await h.expect_error(again, "SERVER_BUSY")
            assert await h.closed_with(again) == 1013
        two = await h.connect_to(Keyed(small, KEYS[1]), "tts")
        assert (await h.init(two))["type"] == "ready"
        # A third key: the server's limit (2).
        async with await h.connect_to(Keyed(small, KEYS[2]), "stt") as third:
            await h.send(third, {"type": "init"})
            await h.expect_error(third, "SERVER_BUSY")
            assert await h.closed_with(third) == 1013
        await idle.close()
        await one.close()
        await two.close()
        await asyncio.sleep(0.2)
        async with await h.connect_to(Keyed(small, KEYS[2]), "stt") as later:
            assert (await h.init(later))["type"] == "ready"

    asyncio.run(main())
    health = small.health()
    assert health["rejected_busy"] >= 2 and health["capacity"] == 2


def test_idle_sessions_are_told_and_closed_and_pings_do_not_count(small):
    """A session idle past the timeout is closed, pinging or not (pings would let one hold a slot for
    nothing); a connection that never sends init is closed at the init deadline."""

    async def pinging(ws, why: str) -> float:
        started = time.monotonic()
        with contextlib.suppress(ConnectionClosed):
            while True:
                await h.send(ws, {"type": "ping"})
                await asyncio.sleep(0.25)
        # Closed: what it said before closing.
        seen = []
        with contextlib.suppress(ConnectionClosed):
            while True:
                seen.append(await h.recv(ws))
        errors = [m for m in seen if m["type"] == "error"]
        assert len(errors) == 1 and errors[0]["code"] == "IDLE_TIMEOUT" and why in errors[0]["error"], seen
        # Idle after init: told, then closed with a handshake; no init at all: told, then simply dropped.
        assert ws.close_code == (1006 if why == "no init" else 1000)
        return time.monotonic() - started

    async def main():
        quiet = await h.connect_to(Keyed(small, KEYS[0]), "stt")
        busy = await h.connect_to(Keyed(small, KEYS[1]), "tts")
        lurker = await h.connect_to(Keyed(small, KEYS[2]), "stt")
        await h.init(quiet)
        await h.init(busy)
        started = time.monotonic()
        busy_after, lurker_after = await asyncio.gather(pinging(busy, "no message"), pinging(lurker, "no init"))
        error = await h.expect_error(quiet, "IDLE_TIMEOUT")
        assert await h.closed_with(quiet) == 1000
        return error, time.monotonic() - started, busy_after, lurker_after

    error, quiet_after, busy_after, lurker_after = asyncio.run(main())
    assert "no message" in error["error"]
    # Each closed by its own deadline: not before it; the upper bounds only guard against a hang.
    for elapsed in (quiet_after, busy_after):
        assert IDLE - 0.5 < elapsed < IDLE + 30, elapsed
    assert INIT - 0.5 < lurker_after < INIT + 30, lurker_after
    assert lurker_after < busy_after  # the init deadline is the shorter one, and fired first


def test_a_killed_worker_fails_its_sessions_and_is_restarted(small):
    before = small.health()
    speech = asyncio.run(h.tts_pcm(Keyed(small, KEYS[0]), ["Thank you very much for your help."]))

    async def main():
        async with await h.connect_to(Keyed(small, KEYS[0]), "stt") as ws:
            await h.init(ws)
            await h.send_audio(ws, h.silence(0.3) + speech[: len(speech) // 2])
            [worker] = h.worker_processes(small.pid)
            assert worker.pid == before["worker_pids"][0]
            worker.kill()
            msg = await h.expect_error(ws, "INTERNAL_ERROR")
            assert msg["request_id"].startswith("req_")
            assert await h.closed_with(ws) == 1011

    asyncio.run(main())
    for _ in range(100):
        health = small.health()
        if health["workers_alive"] == 1:
            break
        time.sleep(0.1)
    assert health["workers_alive"] == 1
    assert health["worker_restarts"] == before["worker_restarts"] + 1
    assert health["worker_pids"] != before["worker_pids"]
    assert len(h.worker_processes(small.pid)) == 1  # the dead one is reaped, not leaked
    msgs = asyncio.run(h.transcribe(Keyed(small, KEYS[0]), h.silence(0.3) + speech + h.silence(0.3)))
    assert h.finals(msgs), "a new session works on the restarted worker"


def test_restart_on_the_same_port(small):
    port = small.port
    small.restart()
    assert small.port == port and small.health()["status"] == "ok"


def test_graceful_shutdown_lets_sessions_finish_then_closes_1001(small):
    """After SIGTERM: no new connections; a session finishes its file and is closed right after;
    one still mid-file at the end of the grace period is closed then."""
    speech = asyncio.run(h.tts_pcm(Keyed(small, KEYS[0]), ["Please send the report by Friday."]))
    pid = small.pid

    async def until_closed(ws) -> float:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await ws.recv()
        return time.monotonic()

    async def main():
        audio = h.silence(0.3) + speech + h.silence(0.3)
        half = len(audio) // 4 * 2
        finishing = await h.connect_to(Keyed(small, KEYS[0]), "stt")
        await h.init(finishing)
        await h.send_audio(finishing, audio[:half])  # mid-file when the server is told to stop
        endless = await h.connect_to(Keyed(small, KEYS[2]), "stt")
        await h.init(endless)

        async def keep_streaming():
            # Audio and no flush, all along (activity: the idle timeout never fires on it).
            with contextlib.suppress(ConnectionClosed):
                while True:
                    await h.send_audio(endless, h.silence(0.2))
                    await asyncio.sleep(0.2)

        streamer = asyncio.create_task(keep_streaming())
        await asyncio.sleep(0.5)  # mid-file: audio and no flush yet
        asked = time.monotonic()
        stopping = asyncio.create_task(asyncio.to_thread(small.stop))
        await asyncio.sleep(0.5)
        # Shutting down: no new connections ...
        with pytest.raises(OSError):
            await h.connect_to(Keyed(small, KEYS[1]), "tts")
        # ... but the open session still gets its work done, and is closed once it is.
        await h.send_audio(finishing, audio[half:])
        await h.send(finishing, {"type": "command", "command": "flush"})
        msgs = await h.until_flush_done(finishing)
        finished = await until_closed(finishing)
        cut = await until_closed(endless)
        streamer.cancel()
        await stopping
        return msgs, finishing.close_code, finished - asked, endless.close_code, cut - asked

    try:
        msgs, code, finished, endless_code, cut = asyncio.run(main())
    finally:
        stopped = small.returncode
        small.start()  # the module's other tests, in whatever order they run, need it
    assert h.finals(msgs)
    # The finishing session was closed once its work was done, before the grace period cut the endless one;
    # that one was cut at the end of the grace period, not before (the upper bound guards against a hang).
    assert code == 1001 and finished < cut
    assert endless_code == 1001 and GRACE - 0.5 < cut < GRACE + 30
    assert stopped == 0
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
