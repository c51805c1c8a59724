"""Live progress of a local run, shared between the DoFns and the CLI in the same process.

Beam metrics are only visible when a pipeline ends; a local (in-process) run can do better.
On a remote runner no tracker is registered on the workers and updates are dropped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

_REGISTRY: dict[str, Progress] = {}
_LOCK = threading.Lock()


@dataclass
class Progress:
    total: int
    done: int = 0
    failed: int = 0
    audio_ms: int = 0
    characters: int = 0
    started: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # Clients' ``retry_in``: seconds to the next probe while the service is unavailable, else None.
    _service: set[Callable[[], float | None]] = field(default_factory=set, repr=False)

    def watch_service(self, retry_in: Callable[[], float | None]) -> None:
        """Show "service unavailable, retrying in N s" while ``retry_in()`` says so (bound methods of one
        client compare equal, so DoFn instances sharing a client add it once)."""
        with self.lock:
            self._service.add(retry_in)

    def service_retry_in(self) -> float | None:
        """Seconds until the next probe while every watched client finds the service unavailable."""
        with self.lock:
            watched = list(self._service)
        waits = [fn() for fn in watched]
        if not waits or any(w is None for w in waits):
            return None
        return min(w for w in waits if w is not None)

    def add(self, *, ok: bool, audio_ms: int = 0, characters: int = 0) -> None:
        with self.lock:
            self.done += 1
            self.failed += 0 if ok else 1
            self.audio_ms += audio_ms
            self.characters += characters

    def line(self) -> str:
        """One status line: files done of total, audio hours, speed, ETA."""
        with self.lock:
            done, total, failed, audio_ms, chars = self.done, self.total, self.failed, self.audio_ms, self.characters
        elapsed = max(1e-6, time.monotonic() - self.started)
        parts = [f"{done}/{total} done"]
        if failed:
            parts.append(f"{failed} failed")
        if audio_ms:
            parts.append(f"{audio_ms / 3_600_000:.3f} h audio")
            parts.append(f"{audio_ms / 1000 / elapsed:.1f}x real time")
        if chars:
            parts.append(f"{chars / elapsed:.0f} chars/s")
        retry_in = self.service_retry_in()
        if retry_in is not None:
            parts.append(f"service unavailable, retrying in {retry_in:.0f} s")
        elif 0 < done < total:
            parts.append(f"ETA {_fmt((total - done) * elapsed / done)}")
        parts.append(f"elapsed {_fmt(elapsed)}")
        return ", ".join(parts)


def _fmt(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def register(key: str, total: int) -> Progress:
    with _LOCK:
        _REGISTRY[key] = Progress(total=total)
        return _REGISTRY[key]


def unregister(key: str) -> None:
    with _LOCK:
        _REGISTRY.pop(key, None)


def lookup(key: str | None) -> Progress | None:
    if key is None:
        return None
    with _LOCK:
        return _REGISTRY.get(key)
