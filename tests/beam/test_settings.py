"""ServiceSettings carries one ClientConfig: picklable, keyless in reprs, and keyed by every field."""

from __future__ import annotations

import dataclasses
import pickle

from voxbeam.beam import Secret, ServiceSettings
from voxbeam.beam._workers import _settings_tag
from voxbeam.client import CircuitPolicy, ClientConfig, RetryPolicy, Timeouts

KEY = "settings-k3y-secret"


def test_shorthands_fill_the_config_and_the_key_stays_a_secret():
    s = ServiceSettings(
        endpoints=("ws://a:1", "ws://b:2"),
        api_key=KEY,
        sessions_per_worker=3,
        retry_budget=42.0,
        max_attempts=7,
        record_timeout=99.0,
        result_timeout=5.0,
        auth="query",
        ca_bundle="/ca.pem",
    )
    c = s.config
    assert c.endpoints == ("ws://a:1", "ws://b:2") and c.pool_size == 3 and c.auth == "query"
    assert c.retry.budget == 42.0 and c.retry.max_attempts == 7 and c.ca_bundle == "/ca.pem"
    assert c.timeouts.record == 99.0 and c.timeouts.result == 5.0
    assert c.api_key is None and s.api_key == Secret(KEY)  # the config never holds the key
    assert s.client_config().api_key == KEY
    moved = ServiceSettings(ClientConfig(api_key=KEY))
    assert moved.config.api_key is None and moved.resolve_api_key() == KEY
    for text in (repr(s), str(s), repr(s.config), repr(pickle.loads(pickle.dumps(s)))):
        assert KEY not in text


def test_pickles_and_compares_by_value():
    s = ServiceSettings(ClientConfig(endpoints=("ws://a:1",), retry=RetryPolicy(budget=8)), api_key=Secret(KEY))
    back = pickle.loads(pickle.dumps(s))
    assert back == s and hash(back) == hash(s) and back.resolve_api_key() == KEY
    assert _settings_tag(back) == _settings_tag(s)


def test_the_shared_cache_key_changes_with_every_config_field_and_the_key():
    base = ServiceSettings(ClientConfig(endpoints=("ws://a:1",)), api_key=KEY)
    changed = {
        "endpoints": ("ws://b:1",),
        "auth": "query",
        "pool_size": 2,
        "timeouts": Timeouts(connect=3),
        "retry": RetryPolicy(budget=1),
        "circuit": CircuitPolicy(failures=5),
        "ping_interval": 1.0,
        "ping_timeout": 2.0,
        "chunk_ms": 200,
        "max_in_flight_chunks": 3,
        "realtime_pacing": True,
        "segment_seconds": 10.0,
        "ca_bundle": "/x.pem",
        "verify_tls": False,
        "max_message_bytes": 1024,
        "max_text_chars": 100,
    }
    names = {f.name for f in dataclasses.fields(ClientConfig)} - {"api_key"}
    assert set(changed) == names, "a new ClientConfig field: give it a changed value here"
    tags = {_settings_tag(base)}
    for name, value in changed.items():
        tags.add(_settings_tag(ServiceSettings(dataclasses.replace(base.config, **{name: value}), api_key=KEY)))
    tags.add(_settings_tag(ServiceSettings(base.config, api_key="another key")))
    tags.add(_settings_tag(ServiceSettings(base.config, api_key_secret="projects/p/secrets/s")))
    assert len(tags) == len(changed) + 3
    assert KEY not in _settings_tag(base)
