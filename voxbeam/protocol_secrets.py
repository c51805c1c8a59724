"""Secrets out of text: what the client, server and jobs log or raise must not carry a key.

Part of the wire modules; ``voxbeam.protocol.redact`` is the name callers use.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

# A query parameter (or a key=value word): its name, as sent (maybe percent-encoded), and value.
# The value stops before a colon that ends it ("?token=abc: connection refused" keeps its colon).
_PARAM_RE = re.compile(r"((?:^|[?&;\s])([^=&;\s\"'?]+)=)([^&;\s\"']*[^&;\s\"':])")
_SECRET_PARAMS = frozenset({"token", "api_key", "key"})
# The password of ``scheme://user:password@host`` (websockets sends it as HTTP Basic auth).
# Greedy up to the last "@" of the authority: a password may itself contain "@".
_USERINFO_RE = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s/@:\"']*:)[^\s/\"']*(@)", re.IGNORECASE)
# Credential headers as HTTP libraries log them ("> Authorization: Basic ..."); some clients put a
# token in the WebSocket subprotocol.
_HEADER_RE = re.compile(
    r"((?:x-api-key|authorization|proxy-authorization|sec-websocket-protocol)\s*:\s*)[^\r\n]+", re.IGNORECASE
)


def _mask_param(match: re.Match[str]) -> str:
    # The name is compared decoded: a server decodes "%74oken" to "token" and takes it as the key.
    return match.group(1) + "***" if unquote_plus(match.group(2)).lower() in _SECRET_PARAMS else match.group(0)


def redact(text: str) -> str:
    """Hide ``token=`` (and similar, however encoded) query values, URL passwords and credential headers."""
    text = _PARAM_RE.sub(_mask_param, text)
    text = _USERINFO_RE.sub(r"\1***\2", text)
    return _HEADER_RE.sub(r"\1***", text)
