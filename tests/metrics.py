"""``GET /metrics`` as the tests read it: every sample by name and labels, with prometheus_client's parser."""

from __future__ import annotations

import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition as {(name, sorted labels): value}."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(srv: Any) -> Samples:
    """Every sample of ``srv``'s /metrics (a test server with a ``url``); no key is sent."""
    url = srv.url.replace("ws://", "http://", 1) + "/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        return parse(resp.read().decode("utf-8"))


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample of ``name`` with exactly ``labels``; 0 when there is none (a counter not yet incremented)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)
