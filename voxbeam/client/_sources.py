"""Audio sources as async iterators; blocking iterators are drained by a thread, never on the loop."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable

AudioSource = bytes | bytearray | memoryview | Iterable[bytes] | AsyncIterable[bytes]

_EOF = object()
_thread_ids = itertools.count(1)


class _Raised:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class ThreadedSource:
    """Pulls a blocking iterator (PyAV decode, file or network reads) in a worker thread.

    The thread starts on the first ``__anext__`` (so records queued for a session hold no
    thread and no open file) and runs at most ``maxsize`` items ahead of the consumer.
    While the consumer is behind, consecutive items are joined up to ``batch_bytes``: every
    hand-over wakes a thread, and per-chunk wake-ups would cost more CPU than the sending.
    ``aclose`` stops it and closes the iterator (a generator's ``finally`` runs in the thread).
    """

    def __init__(self, factory: Callable[[], Iterable[bytes]], maxsize: int, batch_bytes: int = 32 * 1024) -> None:
        self._factory = factory
        self._batch_bytes = batch_bytes
        self._slots = threading.Semaphore(maxsize)
        self._stop = threading.Event()
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._thread: threading.Thread | None = None
        self._done = False

    def __aiter__(self) -> ThreadedSource:
        return self

    async def __anext__(self) -> bytes:
        if self._done:
            raise StopAsyncIteration
        if self._thread is None:
            loop = asyncio.get_running_loop()
            self._thread = threading.Thread(
                target=self._work, args=(loop,), name=f"voxbeam-audio-{next(_thread_ids)}", daemon=True
            )
            self._thread.start()
        item = await self._queue.get()
        self._slots.release()
        if item is _EOF:
            self._done = True
            raise StopAsyncIteration
        if isinstance(item, _Raised):
            self._done = True
            raise item.exc
        assert isinstance(item, (bytes, bytearray, memoryview))
        return bytes(item)

    async def aclose(self) -> None:
        self._done = True
        self._stop.set()
        self._slots.release()  # unblock a producer waiting for room so it sees the stop flag

    def _work(self, loop: asyncio.AbstractEventLoop) -> None:
        def put(item: object) -> bool:
            while not self._slots.acquire(timeout=0.2):
                if self._stop.is_set():
                    return False
            if self._stop.is_set():
                return False
            try:
                loop.call_soon_threadsafe(self._queue.put_nowait, item)
            except RuntimeError:  # the loop is gone; nobody is listening any more
                self._stop.set()
                return False
            return True

        iterator = None
        try:
            iterator = iter(self._factory())
            batch = bytearray()
            for chunk in iterator:
                batch += chunk
                # Hand over at once when the consumer is waiting (no added latency), else batch up.
                if len(batch) >= self._batch_bytes or self._queue.empty():
                    if not put(bytes(batch)):
                        return
                    batch.clear()
            if batch and not put(bytes(batch)):
                return
            put(_EOF)
        except BaseException as exc:  # hand every failure (AudioError, OSError ...) to the consumer
            put(_Raised(exc))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # closing a half-read decoder is best effort
                    pass


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _inline(items: Iterable[bytes]) -> AsyncIterator[bytes]:
    for item in items:
        yield item


def as_async_chunks(audio: AudioSource, maxsize: int) -> AsyncIterator[bytes]:
    """Any accepted audio source as an async iterator of PCM byte strings.

    bytes-like: one blob. list/tuple: in memory, iterated inline. Async iterables: used as they
    are. Any other iterable (a generator decoding a file) is drained by a ``ThreadedSource``.
    """
    if isinstance(audio, (bytes, bytearray, memoryview)):
        return _once(bytes(audio))
    if isinstance(audio, AsyncIterable):
        return aiter(audio)
    if isinstance(audio, (list, tuple)):
        return _inline(audio)
    if isinstance(audio, Iterable):
        return ThreadedSource(lambda: audio, maxsize)
    raise TypeError(f"audio must be bytes or an (async) iterable of bytes, not {type(audio).__name__}")
