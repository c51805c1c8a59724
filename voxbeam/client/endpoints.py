"""The pool's endpoints: where a new session goes, and a circuit breaker per endpoint.

The policy is described in ``voxbeam.client.pool``; this module keeps each endpoint's state
(sessions open and in use, circuit, consecutive failures, SERVER_BUSY pause), picks the endpoint
for a new session and moves the circuits on each connect's outcome.
"""

from __future__ import annotations

import enum
import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from voxbeam.client._stats import Stats
from voxbeam.client.config import ClientConfig
from voxbeam.client.connector import Connector
from voxbeam.client.session import Session
from voxbeam.errors import ConnectionLostError, RequestTimeoutError, ServerBusyError, VoxBeamError

logger = logging.getLogger("voxbeam.client")

# After SERVER_BUSY, an endpoint is treated as full at the sessions it holds of ours for this long.
BUSY_PAUSE = 5.0


class Circuit(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"  # one probe connection in flight


@dataclass
class EndpointState:
    url: str
    index: int
    open: int = 0  # sessions open or opening on this endpoint
    in_use: int = 0
    circuit: Circuit = Circuit.CLOSED
    failures: int = 0  # consecutive connect failures
    times_opened: int = 0  # consecutive open periods (the backoff exponent)
    opened_at: float = 0.0  # when the circuit last went from closed to open
    retry_at: float = 0.0  # open: when the half-open probe may go
    last_error: VoxBeamError | None = None
    busy_until: float = 0.0
    busy_cap: int = 0  # sessions the endpoint accepted from us when it last said SERVER_BUSY

    def is_full(self, now: float) -> bool:
        return now < self.busy_until and self.open >= self.busy_cap

    def probe_due(self, now: float) -> bool:
        return self.circuit is Circuit.OPEN and now >= self.retry_at


def is_connect_failure(exc: VoxBeamError, session: Session) -> bool:
    """A failure that says the endpoint is not there (as opposed to full, or refusing the request)."""
    return not session.connected and isinstance(exc, (ConnectionLostError, RequestTimeoutError))


class Endpoints:
    """Every endpoint of the configuration, in order; ``notify`` wakes the pool's waiters."""

    def __init__(self, config: ClientConfig, connector: Connector, stats: Stats, notify: Callable[[], None]) -> None:
        self._config = config
        self._connector = connector
        self._stats = stats
        self._notify = notify
        self.all = [EndpointState(url, i) for i, url in enumerate(config.endpoints)]
        self.by_url = {ep.url: ep for ep in self.all}
        self._rr = 0
        self._rng = random.Random()

    def __iter__(self) -> Iterator[EndpointState]:
        return iter(self.all)

    def __len__(self) -> int:
        return len(self.all)

    def usable(self, now: float, besides: EndpointState | None = None) -> list[EndpointState]:
        return [ep for ep in self.all if ep is not besides and ep.circuit is Circuit.CLOSED and not ep.is_full(now)]

    def pick(self, now: float) -> EndpointState | None:
        """An open circuit whose probe is due (so a dead endpoint is tried again once per period),
        else a closed circuit with room: fewest recent failures, then least loaded."""
        due = [ep for ep in self.all if ep.probe_due(now)]
        if due:
            return min(due, key=lambda ep: ep.retry_at)
        usable = self.usable(now)
        if not usable:
            return None
        self._rr += 1
        n = len(self.all)
        return min(usable, key=lambda ep: (ep.failures, ep.in_use, ep.open, (ep.index - self._rr) % n))

    def wake_times(self) -> list[float]:
        """When waiting may end: a full endpoint's SERVER_BUSY pause ends, or an open circuit's probe falls due."""
        return [ep.busy_until for ep in self.all] + [ep.retry_at for ep in self.all if ep.circuit is Circuit.OPEN]

    def note_reachable(self, ep: EndpointState) -> None:
        """The endpoint answered: its circuit closes and records waiting for it go on."""
        if ep.circuit is not Circuit.CLOSED:
            logger.warning("%s is reachable again; circuit closed", self._connector.redact(ep.url))
            ep.circuit = Circuit.CLOSED
            self._notify()
        ep.failures = 0
        ep.times_opened = 0

    def note_open_failure(self, ep: EndpointState, session: Session, exc: VoxBeamError) -> None:
        """Opening ``session`` on ``ep`` failed: a SERVER_BUSY pause, or a failure its circuit counts."""
        now = time.monotonic()
        if isinstance(exc, ServerBusyError):
            self._stats.incr("server_busy")
            self.note_reachable(ep)
            # The endpoint holds as many of our sessions as it will take: wait for one of those.
            ep.busy_cap = ep.open
            ep.busy_until = now + BUSY_PAUSE
            logger.info("%s is at capacity with %d of our sessions", self._connector.redact(ep.url), ep.open)
            return
        if not is_connect_failure(exc, session):
            self.note_reachable(ep)  # it answered, if only to refuse this request
            return
        ep.last_error = exc
        if ep.circuit is Circuit.OPEN:
            return  # a connection started before the circuit opened: the outage is already known
        ep.failures += 1
        # The threshold forgives a blip on the only way in; with another endpoint up, one failure
        # opens the circuit (so the endpoint is probed, and rejoins when it answers).
        if ep.circuit is Circuit.CLOSED and ep.failures < self._config.circuit.failures and not self.usable(now, ep):
            return
        if ep.circuit is Circuit.CLOSED:
            ep.opened_at = now
            self._stats.incr("circuit_opens")
        ep.times_opened += 1
        ep.circuit = Circuit.OPEN
        period = self._config.circuit.open_for(ep.times_opened, self._rng)
        ep.retry_at = now + period
        logger.warning(
            "endpoint %s is unavailable (%s); next probe in %.1f s",
            self._connector.redact(ep.url),
            self._connector.redact(str(exc)),
            period,
        )
