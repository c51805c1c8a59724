"""Who may come in, before anything is read past the request's headers: the key, the client's address,
and whether one more connection of that key is one too many. Knows headers and counts, no socket library."""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus

from voxbeam.server.config import ServerConfig

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class Gate:
    config: ServerConfig

    def __post_init__(self) -> None:
        self._proxies = tuple(ipaddress.ip_network(n, strict=False) for n in self.config.trusted_proxies)

    def authenticate(self, headers: Mapping[str, str], tokens: Sequence[str] = ()) -> str | None:
        """A label for the key the client presented ("key1", ...), or None. Never the key itself.

        Keys come as ``X-Api-Key``, ``Authorization: Bearer`` or ``?token=`` (``tokens``)."""
        if self.config.no_auth:
            return "anonymous"
        offered = [headers.get("X-Api-Key")]
        bearer = headers.get("Authorization") or ""
        if bearer[:7].lower() == "bearer ":
            offered.append(bearer[7:].strip())
        offered += tokens
        label = None
        for candidate in offered:
            if not candidate:
                continue
            for i, key in enumerate(self.config.api_keys):
                # Compare against every key (no early exit): timing says nothing about which matched.
                if hmac.compare_digest(candidate.encode(), key.encode()) and label is None:
                    label = f"key{i + 1}"
        return label

    def client_address(self, peer: str | None, headers: Mapping[str, str]) -> str | None:
        """The client's address: the peer's, or the one a trusted proxy puts in X-Forwarded-For."""
        if peer is None or not self._proxies or not _within(peer, self._proxies):
            return peer
        hops = [h.strip() for h in (headers.get("X-Forwarded-For") or "").split(",") if h.strip()]
        # The rightmost address no trusted proxy owns is the client (anything left of it could be forged).
        for hop in reversed(hops):
            if not _within(hop, self._proxies):
                return hop
        return peer

    def crowded(
        self, label: str, address: str | None, mine: Iterable[tuple[str | None, bool]], connections: int
    ) -> tuple[HTTPStatus, str] | None:
        """Why a connection of key ``label`` is one too many, and the status that says so; None when it is not.

        ``mine``: (address, initialized) of each WebSocket connection of this key already let in;
        ``connections``: every connection the server holds, this one included. Key by key first:
        connections that never send their init cost their own key its pre-init slots (429), never
        another key's; per client address (the one a trusted proxy names) and key next; the whole
        server's cap last.
        """
        cfg = self.config
        held = list(mine)
        if sum(not initialized for _, initialized in held) >= cfg.pre_init_per_key:
            why = f"this API key has {cfg.pre_init_per_key} connections that have not sent their init"
            return HTTPStatus.TOO_MANY_REQUESTS, why
        if sum(a == address for a, _ in held) >= cfg.max_connections_per_address:
            why = f"{cfg.max_connections_per_address} connections of this key from one address are open"
            return HTTPStatus.TOO_MANY_REQUESTS, why
        if connections > cfg.max_connections:
            return HTTPStatus.SERVICE_UNAVAILABLE, f"the server holds its {cfg.max_connections} connections"
        return None


def _within(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)
