"""A bounded pool of ready sessions, keyed by endpoint + kind + init configuration.

At most ``pool_size`` sessions are open at once (all endpoints, kinds and configurations
together). Sessions open lazily, go back to the pool after a clean exchange, and are closed after
any error or when the service closes them. New sessions go to the endpoint with the fewest
sessions in use; an endpoint that refused a connection is avoided for a cool-off period, and an
endpoint that answered SERVER_BUSY is treated as full at the number of sessions already open on
it, so requests wait for one of those instead of hammering it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from voxbeam import protocol
from voxbeam.client._stats import Stats
from voxbeam.client.config import ClientConfig
from voxbeam.client.connector import Connector, Kind
from voxbeam.client.session import InitMessage, Session, SessionState
from voxbeam.errors import (
    ClientClosedError,
    ConnectionLostError,
    PoolTimeoutError,
    RequestTimeoutError,
    ServerBusyError,
    VoxBeamError,
)

logger = logging.getLogger("voxbeam.client")

MAX_COOLOFF = 60.0


@dataclass
class EndpointState:
    url: str
    index: int
    open: int = 0  # sessions open or opening on this endpoint
    in_use: int = 0
    failures: int = 0  # consecutive connect failures
    down_until: float = 0.0
    last_failure: float = 0.0
    busy_until: float = 0.0
    busy_cap: int = 0  # sessions the endpoint accepted from us when it last said SERVER_BUSY

    def is_down(self, now: float) -> bool:
        return now < self.down_until

    def is_full(self, now: float) -> bool:
        return now < self.busy_until and self.open >= self.busy_cap


PoolKey = tuple[Kind, str]


class SessionPool:
    """Hands out ready sessions; see the module docstring for the policy."""

    def __init__(self, config: ClientConfig, connector: Connector, stats: Stats) -> None:
        self._config = config
        self._connector = connector
        self._stats = stats
        self._endpoints = [EndpointState(url, i) for i, url in enumerate(config.endpoints)]
        self._by_url = {ep.url: ep for ep in self._endpoints}
        self._idle: dict[PoolKey, list[Session]] = {}
        self._sessions: set[Session] = set()
        self._leased: set[Session] = set()
        self._opening = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False
        self._rr = 0

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
            "endpoints_down": sum(1 for ep in self._endpoints if ep.is_down(time.monotonic())),
        }

    def __repr__(self) -> str:
        c = self.counts()
        return (
            f"<SessionPool endpoints={len(self._endpoints)} open={c['open']} idle={c['idle']} "
            f"in_use={c['in_use']} max={self.max_size}>"
        )

    # -- acquire / release -----------------------------------------------------------------

    async def acquire(self, kind: Kind, init: InitMessage, *, timeout: float | None, retry: bool = False) -> Session:
        """A ready session for ``init``: an idle one, a new one, or the next one freed."""
        key: PoolKey = (kind, protocol.serialize(init))
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._closed:
                raise ClientClosedError("the client is closed")
            session = self._take_idle(key)
            if session is not None:
                return session
            now = time.monotonic()
            endpoint = self._pick_endpoint(now)
            if (endpoint is None or self._open_count() >= self.max_size) and self._evict_idle():
                continue  # an idle session of another configuration made room
            if endpoint is not None and self._open_count() < self.max_size:
                return await self._open(endpoint, kind, init, retry=retry)
            await self._wait(now, deadline)

    def release(self, session: Session, *, healthy: bool) -> None:
        """Return ``session``: back to the idle list when healthy, otherwise closed."""
        if session not in self._leased:
            return
        self._leased.discard(session)
        ep = self._by_url[session.endpoint]
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
        now = time.monotonic()
        while idle:
            # Prefer the least-loaded endpoint that is not down, most recently used first (warm).
            candidates = [s for s in idle if not self._by_url[s.endpoint].is_down(now)] or idle
            best = min(
                reversed(candidates),
                key=lambda s: self._by_url[s.endpoint].in_use,
            )
            idle.remove(best)
            if best.state is not SessionState.IDLE:  # closed while idle; its callback may be pending
                self._forget(best)
                continue
            self._leased.add(best)
            self._by_url[best.endpoint].in_use += 1
            if not idle:
                self._idle.pop(key, None)
            return best
        self._idle.pop(key, None)
        return None

    def _pick_endpoint(self, now: float) -> EndpointState | None:
        usable = [ep for ep in self._endpoints if not ep.is_full(now)]
        if not usable:
            return None
        up = [ep for ep in usable if not ep.is_down(now)]
        if up:
            self._rr += 1
            n = len(self._endpoints)
            return min(up, key=lambda ep: (ep.in_use, ep.open, (ep.index - self._rr) % n))
        # Everything is cooling off: try the one that comes back first rather than fail outright;
        # the caller's backoff paces these attempts.
        return min(usable, key=lambda ep: ep.down_until)

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
        timeout = None if deadline is None else deadline - now
        if timeout is not None and timeout <= 0:
            self._stats.incr("timeouts")
            raise PoolTimeoutError(f"no session became free within {self._config.timeouts.pool}s")
        # Wake up when a full endpoint's SERVER_BUSY cool-off ends, to probe it again.
        wake = [ep.busy_until - now for ep in self._endpoints if ep.busy_until > now]
        if wake:
            timeout = min(wake) if timeout is None else min(timeout, min(wake))
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

    async def _open(self, ep: EndpointState, kind: Kind, init: InitMessage, *, retry: bool) -> Session:
        self._opening += 1
        ep.open += 1
        session = Session(ep.url, kind, init, self._connector, self._stats, on_closed=self._on_session_closed)
        started = time.monotonic()
        try:
            await session.open()
        except BaseException as exc:
            self._opening -= 1
            ep.open -= 1
            if isinstance(exc, VoxBeamError):
                self._note_open_failure(ep, session, exc, started)
            self._notify()
            raise
        self._opening -= 1
        ep.failures = 0
        ep.down_until = 0.0
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

    def _note_open_failure(self, ep: EndpointState, session: Session, exc: VoxBeamError, started: float) -> None:
        now = time.monotonic()
        if isinstance(exc, ServerBusyError):
            self._stats.incr("server_busy")
            # The endpoint holds as many of our sessions as it will take: wait for one of those.
            ep.busy_cap = ep.open
            ep.busy_until = now + max(1.0, self._config.endpoint_cooloff)
            logger.info("%s is at capacity with %d of our sessions", self._connector.redact(ep.url), ep.open)
        elif not session.connected and isinstance(exc, (ConnectionLostError, RequestTimeoutError)):
            if ep.last_failure >= started:
                return  # a concurrent attempt already reported this outage
            ep.last_failure = now
            ep.failures += 1
            cooloff = min(MAX_COOLOFF, self._config.endpoint_cooloff * 2 ** (ep.failures - 1))
            ep.down_until = now + cooloff
            if len(self._endpoints) > 1:
                logger.warning(
                    "endpoint %s is down (%s); avoiding it for %.1fs", self._connector.redact(ep.url), exc, cooloff
                )

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
            ep = self._by_url[session.endpoint]
            ep.open = max(0, ep.open - 1)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
