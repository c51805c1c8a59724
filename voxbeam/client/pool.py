"""A bounded pool of ready sessions, keyed by endpoint + kind + init configuration, with a circuit per endpoint.

At most ``pool_size`` sessions are open at once (all endpoints, kinds and configurations
together). Sessions open lazily, go back to the pool after a clean exchange, and are closed after
any error or when the service closes them. New sessions go to the endpoint with the fewest recent
connect failures and sessions in use.

Each endpoint has a circuit breaker (``CircuitPolicy``). Closed: connections are tried. After
``failures`` consecutive connect failures (refused, reset, timed out, HTTP 5xx) it opens: no
connection is tried until its open period ends; then it is half-open and exactly one record
makes a probe connection. Success closes the circuit and wakes the records waiting; failure opens
it again for longer (capped, jittered). Records go to closed circuits; while every circuit is
open they wait in ``acquire`` (a wait, not an attempt) until a probe succeeds or their retry
budget, counted from the start of the outage at the latest, runs out.

An endpoint that answered SERVER_BUSY is up but full: it is treated as full at the number of
sessions already open on it for a while, so requests wait for one of those instead of hammering it.

The endpoints' side of this (choice, circuits, SERVER_BUSY pauses) is ``voxbeam.client.endpoints``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

from voxbeam import protocol
from voxbeam.client._stats import Stats
from voxbeam.client.config import ClientConfig
from voxbeam.client.connector import Connector
from voxbeam.client.endpoints import Circuit, Endpoints, EndpointState
from voxbeam.client.retry import RetryClock
from voxbeam.client.session import InitMessage, Session, SessionState
from voxbeam.errors import (
    ClientClosedError,
    PoolTimeoutError,
    ServiceUnavailableError,
    VoxBeamError,
)
from voxbeam.protocol import Service

logger = logging.getLogger("voxbeam.client")

PoolKey = tuple[Service, str]


class SessionPool:
    """Hands out ready sessions; see the module docstring for the policy."""

    def __init__(self, config: ClientConfig, connector: Connector, stats: Stats) -> None:
        self._config = config
        self._connector = connector
        self._stats = stats
        self._endpoints = Endpoints(config, connector, stats, self._notify)
        self._idle: dict[PoolKey, list[Session]] = {}
        self._sessions: set[Session] = set()
        self._leased: set[Session] = set()
        self._opening = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- introspection ---------------------------------------------------------------------

    @property
    def max_size(self) -> int:
        return self._config.pool_size

    def counts(self) -> dict[str, int]:
        idle = sum(len(v) for v in self._idle.values())
        open_ = len(self._sessions) + self._opening
        return {
            "open": open_,
            "idle": idle,
            "in_use": len(self._leased),
            "opening": self._opening,
            "waiting": sum(1 for w in self._waiters if not w.done()),
            "endpoints_down": sum(1 for ep in self._endpoints if ep.circuit is not Circuit.CLOSED),
        }

    def circuits(self) -> dict[str, str]:
        """Each endpoint's circuit state (redacted URL -> closed | open | half_open)."""
        return {self._connector.redact(ep.url): ep.circuit.value for ep in self._endpoints}

    def unavailable_since(self) -> float | None:
        """Monotonic time every endpoint's circuit has been open since, or None while one is closed."""
        if any(ep.circuit is Circuit.CLOSED for ep in self._endpoints):
            return None
        return max(ep.opened_at for ep in self._endpoints)

    def retry_in(self) -> float | None:
        """While the whole service is unavailable, seconds until the next probe (0: one is under way).

        Reads a few attributes only, so a progress thread may call it without the loop.
        """
        if any(ep.circuit is Circuit.CLOSED for ep in self._endpoints):
            return None
        now = time.monotonic()
        if any(ep.circuit is Circuit.HALF_OPEN for ep in self._endpoints):
            return 0.0
        return max(0.0, min(ep.retry_at for ep in self._endpoints) - now)

    def __repr__(self) -> str:
        c = self.counts()
        down = f" down={c['endpoints_down']}" if c["endpoints_down"] else ""
        return (
            f"<SessionPool endpoints={len(self._endpoints)} open={c['open']} idle={c['idle']} "
            f"in_use={c['in_use']} max={self.max_size}{down}>"
        )

    # -- acquire / release -----------------------------------------------------------------

    async def acquire(
        self,
        kind: Service,
        init: InitMessage,
        *,
        timeout: float | None,
        retry: bool = False,
        clock: RetryClock | None = None,
    ) -> Session:
        """A ready session for ``init``: an idle one, a new one, or the next one freed.

        ``timeout`` bounds the wait for a free session while the service is up; ``clock`` (the
        record's retry budget) bounds the wait while every endpoint is unavailable.
        """
        key: PoolKey = (kind, protocol.serialize(init))
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._closed:
                raise ClientClosedError("the client is closed")
            session = self._take_idle(key)
            if session is not None:
                return session
            now = time.monotonic()
            room = self._open_count() < self.max_size
            endpoint = self._endpoints.pick(now)
            if endpoint is not None and not room and self._evict_idle():
                continue  # an idle session of another configuration made room
            if endpoint is not None and room:
                probe = endpoint.circuit is not Circuit.CLOSED
                try:
                    return await self._open(endpoint, kind, init, retry=retry, probe=probe)
                except VoxBeamError as exc:
                    # A failed probe is the pool's, not the record's: wait for the next one.
                    if probe and endpoint.circuit is not Circuit.CLOSED:
                        continue
                    # Refused here while another endpoint is up: go there now, not after a backoff.
                    if endpoint.last_error is exc and self._endpoints.usable(time.monotonic(), besides=endpoint):
                        self._stats.incr("failovers")
                        continue
                    raise
            since = self.unavailable_since()
            if since is not None:
                await self._wait_unavailable(since, clock, deadline)
            else:
                await self._wait(now, deadline)

    def release(self, session: Session, *, healthy: bool) -> None:
        """Return ``session``: back to the idle list when healthy, otherwise closed."""
        if session not in self._leased:
            return
        self._leased.discard(session)
        ep = self._endpoints.by_url[session.endpoint]
        ep.in_use = max(0, ep.in_use - 1)
        if healthy and session.state is SessionState.IDLE and not self._closed:
            self._idle.setdefault(session.key, []).append(session)
        else:
            if session in self._sessions:
                self._stats.incr("sessions_retired")
            self._forget(session)
            self._spawn(session.close())
        self._notify()

    async def aclose(self) -> None:
        """Close every session, idle or in use; waiting and later requests get ClientClosedError."""
        self._closed = True
        sessions = list(self._sessions)
        self._idle.clear()
        self._notify()
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
        for s in sessions:
            self._forget(s)
        self._leased.clear()
        if self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    # -- internals -------------------------------------------------------------------------

    def _open_count(self) -> int:
        return len(self._sessions) + self._opening

    def _take_idle(self, key: PoolKey) -> Session | None:
        idle = self._idle.get(key)
        while idle:
            # Prefer the least-loaded endpoint with a closed circuit, most recently used first (warm).
            candidates = [s for s in idle if self._endpoints.by_url[s.endpoint].circuit is Circuit.CLOSED] or idle
            best = min(
                reversed(candidates),
                key=lambda s: self._endpoints.by_url[s.endpoint].in_use,
            )
            idle.remove(best)
            if best.state is not SessionState.IDLE:  # closed while idle; its callback may be pending
                self._forget(best)
                continue
            self._leased.add(best)
            self._endpoints.by_url[best.endpoint].in_use += 1
            if not idle:
                self._idle.pop(key, None)
            return best
        self._idle.pop(key, None)
        return None

    def _evict_idle(self) -> bool:
        """Close the least recently used idle session (of any configuration) to make room."""
        oldest: Session | None = None
        for sessions in self._idle.values():
            for s in sessions:
                if oldest is None or s.last_used < oldest.last_used:
                    oldest = s
        if oldest is None:
            return False
        key = oldest.key
        self._idle[key].remove(oldest)
        if not self._idle[key]:
            del self._idle[key]
        self._stats.incr("sessions_evicted")
        self._forget(oldest)
        self._spawn(oldest.close())
        return True

    async def _wait(self, now: float, deadline: float | None) -> None:
        """Wait for a session to be freed (or a busy endpoint's pause to end), up to ``deadline``."""
        timeout = None if deadline is None else deadline - now
        if timeout is not None and timeout <= 0:
            self._stats.incr("timeouts")
            raise PoolTimeoutError(f"no session became free within {self._config.timeouts.pool}s")
        wake = [t - now for t in self._endpoints.wake_times() if t > now]
        if wake:
            timeout = min(wake) if timeout is None else min(timeout, min(wake))
        await self._sleep_until_notified(timeout)

    async def _wait_unavailable(self, since: float, clock: RetryClock | None, deadline: float | None) -> None:
        """Every circuit is open: wait for the next probe or its outcome, within the retry budget
        (without one, e.g. a caller of ``acquire`` alone, within the acquire timeout)."""
        now = time.monotonic()
        if clock is not None:
            clock.wait_out(since)
            timeout: float | None = clock.remaining()
        else:
            timeout = None if deadline is None else deadline - now
        if timeout is not None and timeout <= 0:
            last = max(self._endpoints, key=lambda ep: ep.opened_at).last_error
            raise ServiceUnavailableError(last, now - since)
        due = [ep.retry_at - now for ep in self._endpoints if ep.circuit is Circuit.OPEN]
        if due:
            wake = max(0.0, min(due))
            timeout = wake if timeout is None else min(timeout, wake)
        self._stats.incr("waits_unavailable")
        await self._sleep_until_notified(timeout)

    async def _sleep_until_notified(self, timeout: float | None) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            pass
        finally:
            if fut in self._waiters:
                self._waiters.remove(fut)

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def _open(self, ep: EndpointState, kind: Service, init: InitMessage, *, retry: bool, probe: bool) -> Session:
        self._opening += 1
        ep.open += 1
        if probe:
            ep.circuit = Circuit.HALF_OPEN
            self._stats.incr("probes")
            logger.info("probing %s", self._connector.redact(ep.url))
        session = Session(ep.url, kind, init, self._connector, self._stats, on_closed=self._on_session_closed)
        try:
            await session.open()
        except BaseException as exc:
            self._opening -= 1
            ep.open -= 1
            if isinstance(exc, VoxBeamError):
                self._endpoints.note_open_failure(ep, session, exc)
            elif ep.circuit is Circuit.HALF_OPEN:
                ep.circuit = Circuit.OPEN  # the probe was cancelled: let another record make it
            self._notify()
            raise
        self._opening -= 1
        self._endpoints.note_reachable(ep)
        if self._closed or session.state is not SessionState.IDLE:
            ep.open -= 1
            self._spawn(session.close())
            self._notify()
            if self._closed:
                raise ClientClosedError("the client is closed")
            raise session.failure()  # the service closed it straight after ready
        self._sessions.add(session)
        self._leased.add(session)
        ep.in_use += 1
        if retry:
            self._stats.incr("reconnects")
        return session

    def _on_session_closed(self, session: Session) -> None:
        """Called by a session whose connection ended (server close, failed ping, our close)."""
        if session in self._sessions:
            idle = self._idle.get(session.key)
            if idle is not None and session in idle:
                self._stats.incr("sessions_retired")
                idle.remove(session)
                if not idle:
                    self._idle.pop(session.key, None)
                self._forget(session)
                self._notify()

    def _forget(self, session: Session) -> None:
        if session in self._sessions:
            self._sessions.discard(session)
            ep = self._endpoints.by_url[session.endpoint]
            ep.open = max(0, ep.open - 1)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
