"""What a streaming run has done, for its status line and summary (the job's process only).

A local streaming run is executed in the job's own process (the DirectRunner's streaming mode),
so its DoFns report here directly; on a remote runner the same figures are Beam metrics.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

# Latencies kept for the percentiles: the most recent ones (a bounded memory however long the run).
_KEEP = 10_000


@dataclass
class StreamStats:
    """Counters of a streaming run; every method is thread-safe."""

    pulled: int = 0  # messages taken from the subscription
    ignored: Counter[str] = field(default_factory=Counter)  # messages not to process, by why (event, pattern)
    redelivered: int = 0  # a (uri, generation) or (id, text) seen before within the dedup window: dropped
    superseded: int = 0  # the object changed since its notification (its newer version has its own)
    windows: int = 0  # Parquet files written (a window's pane of one output kind)
    rows: int = 0  # rows in them
    _latencies: list[float] = field(default_factory=list, repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_pulled(self, n: int) -> None:
        with self.lock:
            self.pulled += n

    def add_ignored(self, why: str) -> None:
        with self.lock:
            self.ignored[why] += 1

    def add_redelivered(self) -> None:
        with self.lock:
            self.redelivered += 1

    def add_superseded(self) -> None:
        with self.lock:
            self.superseded += 1

    def add_written(self, latencies_s: Iterable[float]) -> None:
        """One file written, with the publish-to-row latency of each row in it."""
        values = list(latencies_s)
        with self.lock:
            self.windows += 1
            self.rows += len(values)
            self._latencies.extend(values)
            del self._latencies[:-_KEEP]

    def dropped(self) -> int:
        """Messages that end neither in an output nor in the dead letters, on purpose."""
        with self.lock:
            return sum(self.ignored.values()) + self.redelivered + self.superseded

    def held(self, done: int) -> int:
        """Messages pulled and not yet finished, given ``done`` records finished (output or dead letter)."""
        return self.pulled - self.dropped() - done

    def percentiles(self) -> tuple[float, float] | None:
        """Publish-to-row latency p50 and p95 (seconds) over the recent rows; None before any."""
        with self.lock:
            values = sorted(self._latencies)
        if not values:
            return None
        return values[len(values) // 2], values[min(len(values) - 1, int(len(values) * 0.95))]

    def parts(self) -> list[str]:
        """The status line's streaming figures."""
        with self.lock:
            out = [f"{self.windows} files written ({self.rows} rows)"]
            if self.redelivered:
                out.append(f"{self.redelivered} redeliveries dropped")
            if self.superseded:
                out.append(f"{self.superseded} superseded")
            if self.ignored:
                out.append(f"{sum(self.ignored.values())} ignored")
        latency = self.percentiles()
        if latency is not None:
            out.append(f"publish to row p50 {latency[0]:.0f} s, p95 {latency[1]:.0f} s")
        return out
