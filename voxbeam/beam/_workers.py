"""The speech client and threads each worker process shares between DoFn instances.

One ``WorkerHandle`` per process and service configuration, through
``apache_beam.utils.shared.Shared``: a session pool on a background event loop and the thread
pool that runs records. ``close_worker_clients`` closes them when a local run ends (the server
then sees clean closes instead of waiting for idle sessions at shutdown).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import threading
import weakref

from apache_beam.utils import shared

from voxbeam.beam.options import ServiceSettings

_SHARED = shared.Shared()
# Live handles of this process, so that a local run can close them when its pipeline ends.
_HANDLES: weakref.WeakSet[WorkerHandle] = weakref.WeakSet()
_generation = 0


class WorkerHandle:
    """Per-process speech client and threads; weak-referenceable for Shared."""

    def __init__(self, settings: ServiceSettings) -> None:
        from voxbeam.client import SyncSpeechClient

        self.client = SyncSpeechClient(settings.client_config())
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=settings.sessions_per_worker, thread_name_prefix="voxbeam-record"
        )
        self._lock = threading.Lock()
        self._reported: dict[str, int] = {}
        _HANDLES.add(self)

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        self.client.close()

    def stats_delta(self) -> dict[str, int]:
        """Client counters since the last call (by any DoFn instance in this process)."""
        with self._lock:
            current = dict(self.client.stats())
            delta = {k: v - self._reported.get(k, 0) for k, v in current.items()}
            self._reported = current
            return delta


def close_worker_clients() -> None:
    """Close every speech client this process holds; later DoFns get fresh ones."""
    global _generation
    _generation += 1
    for handle in list(_HANDLES):
        handle.close()
        _HANDLES.discard(handle)


def _settings_tag(settings: ServiceSettings) -> str:
    """The Shared cache key: every field of the client config, the key (as a digest) and its source."""
    key = settings.api_key.reveal() if settings.api_key else ""
    parts = [settings.config.cache_key(), settings.api_key_secret or "", hashlib.sha256(key.encode()).hexdigest()]
    return f"voxbeam-client-{_generation}:" + hashlib.sha256("|".join(parts).encode()).hexdigest()


def acquire(settings: ServiceSettings) -> WorkerHandle:
    """This process's handle for ``settings`` (created on first use, and again after close_worker_clients)."""
    return _SHARED.acquire(lambda: WorkerHandle(settings), tag=_settings_tag(settings))
