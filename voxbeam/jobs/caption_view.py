"""What ``voxbeam caption`` prints: on a terminal, the current partial rewritten in place on one line and each
final on a line of its own; elsewhere one line per event, as text or JSON lines."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from typing import TextIO

from voxbeam.client.live import LiveEvent

FORMATS = ("text", "jsonl")
# Back to the start of the line, and clear it to its end (ANSI; every terminal emulator in use knows it).
_REWRITE = "\r\x1b[K"


def clock(ms: int) -> str:
    """``ms`` as m:ss.s (h:mm:ss.s from an hour)."""
    tenths = max(0, ms) // 100
    s, t = divmod(tenths, 10)
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}.{t}" if h else f"{m}:{s:02d}.{t}"


def span(event: LiveEvent) -> str:
    return f"[{clock(event.start_ms)}-{clock(event.end_ms)}]"


def fit(text: str, width: int) -> str:
    """``text`` on one line of at most ``width`` characters: the newest words kept, the start cut to '…'."""
    width = max(1, width)
    if len(text) <= width:
        return text
    return "…" + text[len(text) - width + 1 :] if width > 1 else text[-1:]


class LiveLine:
    """On a terminal: the partial rewritten in place, never wider than the terminal (a wrapped line could
    not be rewritten), and each final printed on its own line, with its times."""

    def __init__(self, out: TextIO, width: Callable[[], int] | None = None) -> None:
        self._out = out
        self._width = width or (lambda: shutil.get_terminal_size().columns)
        self.showing = ""  # the partial on screen now

    def __call__(self, event: LiveEvent) -> None:
        if event.final:
            self._out.write(f"{_REWRITE}{span(event)} {event.text}\n")
            self.showing = ""
        else:
            # One column spare: a line that fills the terminal wraps the cursor on some of them.
            self.showing = fit(event.text, self._width() - 1)
            self._out.write(_REWRITE + self.showing)
        self._out.flush()

    def close(self) -> None:
        """Clear a partial no final replaced (the stream was stopped in mid-utterance)."""
        if self.showing:
            self._out.write(_REWRITE)
            self._out.flush()
            self.showing = ""


class EventLines:
    """Not a terminal: one line per event, ``partial: TEXT`` or ``final: [m:ss.s-m:ss.s] TEXT``, or (jsonl)
    ``{"type", "text", "start_ms", "end_ms", "latency_ms", ...}``."""

    def __init__(self, out: TextIO, format: str = "text") -> None:
        if format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, not {format!r}")
        self._out = out
        self._jsonl = format == "jsonl"

    def __call__(self, event: LiveEvent) -> None:
        if self._jsonl:
            record: dict[str, object] = {
                "type": "final" if event.final else "partial",
                "text": event.text,
                "start_ms": event.start_ms,
                "end_ms": event.end_ms,
                "latency_ms": event.latency_ms,
                "request_id": event.request_id,
            }
            if event.final:
                record.update(confidence=event.confidence, language=event.language)
            self._out.write(json.dumps(record, ensure_ascii=False) + "\n")
        elif event.final:
            self._out.write(f"final: {span(event)} {event.text}\n")
        else:
            self._out.write(f"partial: {event.text}\n")
        self._out.flush()

    def close(self) -> None:
        pass
