"""Keep the API key out of log lines and exception text.

websockets logs the handshake at DEBUG, header by header (``> X-Api-Key: ...``) and with the
request path (``?token=...``); its exceptions can quote the URL. Everything the client logs or
raises passes through a ``Redactor``, and websockets gets a logger adapter that redacts too.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

from voxbeam import protocol

MASK = "***"


class Redactor:
    """Replaces every form of the secrets (raw and URL-encoded) and any ``token=`` value."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if secret:
                forms.update({secret, quote(secret, safe=""), quote_plus(secret)})
        # Longest first so that an encoded form is not half-replaced by a shorter raw one.
        self._forms = sorted(forms, key=len, reverse=True)

    def __call__(self, text: object) -> str:
        out = str(text)
        for form in self._forms:
            if form in out:
                out = out.replace(form, MASK)
        return protocol.redact(out)


class RedactingLogger(logging.LoggerAdapter):
    """Formats each record itself, redacts it, and logs the result (tracebacks included)."""

    def __init__(self, logger: logging.Logger, redactor: Redactor) -> None:
        super().__init__(logger, {})
        self._redact = redactor

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            text = f"{msg} {args!r}"
        exc_info = kwargs.pop("exc_info", None)
        if exc_info:
            if exc_info is True:
                text += "\n" + traceback.format_exc()
            elif isinstance(exc_info, BaseException):
                text += "\n" + "".join(traceback.format_exception(exc_info))
            elif isinstance(exc_info, tuple):
                text += "\n" + "".join(traceback.format_exception(*exc_info))
        kwargs.pop("stack_info", None)
        extra = kwargs.pop("extra", None)
        self.logger.log(
            level,
            self._redact(text),
            extra=extra if isinstance(extra, Mapping) else None,
            stacklevel=kwargs.pop("stacklevel", 1) + 1,
        )
