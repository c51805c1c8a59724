"""Configuration objects, backoff, redaction: the parts that need no server."""

from __future__ import annotations

import logging
import random

import pytest

from voxbeam.client import ClientConfig, RetryPolicy, Timeouts
from voxbeam.client._redact import RedactingLogger, Redactor
from voxbeam.errors import (
    AuthenticationError,
    InvalidRequestError,
    RetriesExhaustedError,
    ServerBusyError,
    ServiceError,
    service_error,
)

KEY = "vx-Sup3r/Secret+key=="


def test_repr_and_str_never_show_the_key(monkeypatch):
    cfg = ClientConfig(api_key=KEY)
    assert KEY not in repr(cfg) and KEY not in str(cfg)
    monkeypatch.setenv("VOXNEXUS_API_KEY", "from-env")
    assert ClientConfig().resolved_api_key() == "from-env"
    assert ClientConfig(api_key=KEY).resolved_api_key() == KEY
    monkeypatch.delenv("VOXNEXUS_API_KEY")
    assert ClientConfig().resolved_api_key() is None


def test_endpoints_are_normalised_and_validated():
    cfg = ClientConfig(endpoints=("wss://a.example/v1/stt/realtime", "ws://b:81/"))
    assert cfg.endpoints == ("wss://a.example", "ws://b:81")
    assert ClientConfig(endpoints="ws://one:1").endpoints == ("ws://one:1",)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ws:// or wss://"):
        ClientConfig(endpoints=("https://x",))
    with pytest.raises(ValueError, match="query"):
        ClientConfig(endpoints=("wss://x?token=abc",))
    with pytest.raises(ValueError):
        ClientConfig(endpoints=())
    with pytest.raises(ValueError):
        ClientConfig(pool_size=0)
    with pytest.raises(ValueError):
        Timeouts(result=0)
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_backoff_is_exponential_with_full_jitter_and_capped():
    policy = RetryPolicy(base_delay=0.2, max_delay=1.0)
    rng = random.Random(7)
    for attempt, cap in [(1, 0.2), (2, 0.4), (3, 0.8), (4, 1.0), (9, 1.0)]:
        delays = [policy.delay(attempt, rng) for _ in range(400)]
        assert all(0.0 <= d <= cap for d in delays)
        assert max(delays) > 0.8 * cap and min(delays) < 0.2 * cap  # jitter spans the whole range


def test_service_errors_are_typed_by_code():
    assert isinstance(service_error("UNAUTHORIZED", "x"), AuthenticationError)
    busy = service_error("SERVER_BUSY", "x")
    assert isinstance(busy, ServerBusyError) and busy.retryable
    lang = service_error("UNSUPPORTED_LANGUAGE", "fr-FR is not installed")
    assert isinstance(lang, InvalidRequestError) and not lang.retryable and lang.code == "UNSUPPORTED_LANGUAGE"
    internal = service_error("INTERNAL_ERROR", "x")
    assert type(internal) is ServiceError and internal.retryable
    exhausted = RetriesExhaustedError(internal, 5)
    assert exhausted.attempts == 5 and exhausted.last is internal and not exhausted.retryable


def test_redactor_hides_raw_encoded_and_token_forms():
    r = Redactor([KEY])
    assert KEY not in r(f"key {KEY}")
    assert "Sup3r" not in r("ws://h/v1/stt/realtime?token=vx-Sup3r%2FSecret%2Bkey%3D%3D")
    assert "abc" not in r("ws://h/x?token=abc&y=1")


def test_redacting_logger_formats_then_redacts(caplog):
    log = RedactingLogger(logging.getLogger("voxbeam.test"), Redactor([KEY]))
    with caplog.at_level(logging.DEBUG):
        log.debug("> %s: %s", "X-Api-Key", KEY)
        try:
            raise RuntimeError(f"boom {KEY}")
        except RuntimeError:
            log.error("failed", exc_info=True)
    assert caplog.records
    for record in caplog.records:
        assert KEY not in record.getMessage() and not record.exc_info
    assert "X-Api-Key: ***" in caplog.records[0].getMessage()
