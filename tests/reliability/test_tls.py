"""wss:// end to end: a throwaway CA signs the server's certificate; clients trust it only when told."""

from __future__ import annotations

import json
import time

import pytest

from tests.reliability.conftest import SHORT_SENTENCES, dedicated_server
from tests.reliability.tls_certs import make_ca_and_server_cert
from voxbeam import audio, jobs
from voxbeam.client import ClientConfig, RetryPolicy, SyncSpeechClient, Timeouts, TtsParams
from voxbeam.errors import TLSVerificationError


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    certs = make_ca_and_server_cert(tmp_path_factory.mktemp("tls"))
    with dedicated_server(
        workers=1, extra_args=["--tls_cert", certs.server_cert, "--tls_key", certs.server_key]
    ) as srv:
        yield srv, certs


def _config(url: str, key: str, **kw) -> ClientConfig:
    kw.setdefault("timeouts", Timeouts(connect=5, ready=10, result=10, record=60, pool=30))
    kw.setdefault("retry", RetryPolicy(max_attempts=5, base_delay=0.05, max_delay=0.5))
    return ClientConfig(endpoints=(url,), api_key=key, pool_size=2, **kw)


def test_the_server_speaks_wss_and_a_client_with_the_ca_bundle_works(tls_server, short_clips, server):
    srv, certs = tls_server
    assert srv.url.startswith("wss://"), srv.url
    for url in (srv.url, srv.url.replace("127.0.0.1", "localhost")):
        with SyncSpeechClient(_config(url, srv.api_key, ca_bundle=certs.ca_cert)) as client:
            spoken = client.synthesize(SHORT_SENTENCES[1], TtsParams(format="wav"))
            assert audio.duration_ms(spoken.audio) > 300
            result = client.transcribe(short_clips[2])
            assert result.text and result.attempts == 1
            stats = client.stats()
            assert stats["retries"] == 0 and stats["failures"] == 0


def test_without_the_ca_bundle_the_client_fails_at_once_with_a_typed_error(tls_server):
    srv, _ = tls_server
    with SyncSpeechClient(_config(srv.url, srv.api_key, retry=RetryPolicy(max_attempts=50))) as client:
        started = time.monotonic()
        with pytest.raises(TLSVerificationError) as info:
            client.synthesize("Hello there.")
        elapsed = time.monotonic() - started
        stats = client.stats()
    err = info.value
    assert err.code == "TLS_VERIFICATION_FAILED" and not err.retryable
    assert "certificate" in str(err) and "ca_bundle" in str(err)
    # At once: one attempt and no retry (the count is the check; the bound only guards against a hang).
    assert err.attempts == 1 and stats["retries"] == 0 and elapsed < 60, (err.attempts, stats, elapsed)


def test_a_plain_ws_client_cannot_talk_to_the_tls_port(tls_server):
    srv, _ = tls_server
    plain = srv.url.replace("wss://", "ws://")
    cfg = _config(plain, srv.api_key, retry=RetryPolicy(max_attempts=2, base_delay=0.05))
    with SyncSpeechClient(cfg) as client:
        with pytest.raises(Exception) as info:
            client.synthesize("Hello there.")
    assert getattr(info.value, "code", "") in {"RETRIES_EXHAUSTED", "CONNECTION_LOST", "HANDSHAKE_REJECTED"}, info.value


def test_the_jobs_accept_ca_bundle_and_name_it_when_verification_fails(tls_server, tmp_path):
    srv, certs = tls_server
    src = tmp_path / "records.jsonl"
    src.write_text("".join(json.dumps({"id": f"t{i}", "text": s}) + "\n" for i, s in enumerate(SHORT_SENTENCES[:3])))
    base = ["--input", str(src), "--endpoint", srv.url, "--api_key", srv.api_key]

    summary = jobs.run("synthesize", [*base, "--output", str(tmp_path / "ok"), "--ca_bundle", certs.ca_cert])
    assert summary.written == 3 and not summary.dead_letters

    with pytest.raises(jobs.UsageError) as info:
        jobs.run("synthesize", [*base, "--output", str(tmp_path / "no-ca")])
    assert info.value.flag == "--ca_bundle" and "did not verify" in str(info.value)

    with pytest.raises(jobs.UsageError) as info:
        jobs.run("synthesize", [*base, "--output", str(tmp_path / "bad"), "--ca_bundle", str(tmp_path / "nope.pem")])
    assert info.value.flag == "--ca_bundle" and "no such file" in str(info.value)
