"""Logging that cannot leak API keys.

websockets logs request lines and headers at DEBUG ("< GET /v1/stt/realtime?token=..." and
"< X-Api-Key: ..."). Rather than trusting every call site, the handler's formatter redacts
the finished line (message, arguments and traceback): ``token=`` query values (however
percent-encoded), key headers (``protocol.redact``), and any configured key verbatim.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

from voxbeam.protocol import redact


class RedactingFormatter(logging.Formatter):
    def __init__(self, fmt: str, secrets: Iterable[str] = ()) -> None:
        super().__init__(fmt)
        # Longest first, so a key that contains another is hidden whole. Everywhere, not only as a whole
        # token (a key inside a longer string would show): the server refuses keys of under 16
        # characters, so a key is never a common string that this would mangle lines at.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        text = redact(text)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def format(self, record: logging.LogRecord) -> str:
        return self.scrub(super().format(record))


def setup_logging(level: str, secrets: Iterable[str] = ()) -> None:
    """Log to stderr (stdout carries only the READY line)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(name)s %(levelname)s %(message)s", secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # websockets (the clients in this process, e.g. the jobs' embedded use) logs every connection at INFO;
    # our one line per session says more. aiohttp's access log is off (app.py).
    logging.getLogger("websockets").setLevel(logging.DEBUG if root.level <= logging.DEBUG else logging.WARNING)
