"""A background event loop any thread can submit to, and a blocking facade over SpeechClient.

Beam DoFns are synchronous and run on many threads; the pool and its sockets live on one
asyncio loop in a daemon thread per process (``BackgroundLoop.shared()``), and each DoFn thread
hands it coroutines. Audio factories are iterated in their own threads (``ThreadedSource``)
so that decoding and file reads never block the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Callable, Coroutine, Iterable, Sequence
from types import TracebackType
from typing import Any, ClassVar, TypeVar, Unpack

from voxbeam.channels import Levels
from voxbeam.client._sources import AudioSource, ThreadedSource
from voxbeam.client.config import ClientConfig
from voxbeam.client.results import SynthesisResult, TranscriptResult
from voxbeam.client.speech import SpeechClient, TranscribeOptions
from voxbeam.protocol import TtsParams

T = TypeVar("T")


class BackgroundLoop:
    """An asyncio loop running in a daemon thread; ``submit`` works from any thread."""

    _shared: ClassVar[BackgroundLoop | None] = None
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, name: str = "voxbeam-loop") -> None:
        self._pid = os.getpid()
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._started.wait()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "running"
        return f"<BackgroundLoop {self._thread.name} {state} pid={self._pid}>"

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    @property
    def closed(self) -> bool:
        # A loop inherited through fork has no thread in this process: it is as good as closed.
        return self._closed or self._pid != os.getpid() or not self._thread.is_alive()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(self._started.set)
        try:
            self._loop.run_forever()
        finally:
            try:
                tasks = asyncio.all_tasks(self._loop)
                for task in tasks:
                    task.cancel()
                if tasks:
                    self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            finally:
                self._loop.close()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop; the returned future can be waited on from any thread."""
        if self.closed:
            coro.close()
            raise RuntimeError("the background loop is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Submit and wait (never call from the loop's own thread: it would deadlock)."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("BackgroundLoop.run called from its own thread")
        return self.submit(coro).result(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the loop (pending tasks are cancelled) and join its thread."""
        if self._closed:
            return
        self._closed = True
        if self._pid != os.getpid() or not self._thread.is_alive():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    @classmethod
    def shared(cls) -> BackgroundLoop:
        """The process-wide loop, created on first use and again in a forked child."""
        with cls._shared_lock:
            current = cls._shared
            if current is None or current.closed:
                current = cls._shared = cls(name="voxbeam-shared-loop")
            return current

    @classmethod
    def _after_fork_in_child(cls) -> None:
        # The parent's loop thread does not exist here; forget it (and a lock held mid-fork).
        cls._shared = None
        cls._shared_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=BackgroundLoop._after_fork_in_child)


AudioFactory = Callable[[], Iterable[bytes]]


class SyncSpeechClient:
    """Blocking and future-returning facade over a ``SpeechClient`` living on a ``BackgroundLoop``.

    Thread-safe: any number of threads may call it at once; the pool bounds the sessions.
    """

    def __init__(self, config: ClientConfig | None = None, loop: BackgroundLoop | None = None) -> None:
        self.config = config or ClientConfig()
        self._loop = loop or BackgroundLoop.shared()
        self._client: SpeechClient = self._loop.run(_make_client(self.config))
        self._closed = False

    def __repr__(self) -> str:
        return f"<SyncSpeechClient {self._client.pool!r}>"

    def __enter__(self) -> SyncSpeechClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def loop(self) -> BackgroundLoop:
        return self._loop

    @property
    def async_client(self) -> SpeechClient:
        return self._client

    def transcribe_async(
        self, audio_factory: AudioFactory | AudioSource, **options: Unpack[TranscribeOptions]
    ) -> concurrent.futures.Future[TranscriptResult]:
        """Start a transcription (``SpeechClient.transcribe``, which takes the same ``options``);
        ``audio_factory()`` is called and iterated in a worker thread.

        A factory (not an iterator) so that nothing is opened until a session is ready for it.
        In-memory bytes and async iterables are accepted as they are.
        """
        return self._loop.submit(self._transcribe(audio_factory, options))

    async def _transcribe(
        self, audio_factory: AudioFactory | AudioSource, options: TranscribeOptions
    ) -> TranscriptResult:
        if callable(audio_factory):  # iterated in its own thread, from here on the loop
            audio_factory = ThreadedSource(audio_factory, self.config.max_in_flight_chunks)
        return await self._client.transcribe(audio_factory, **options)

    def transcribe_channels_async(
        self,
        audio_factories: Sequence[AudioFactory],
        levels: Levels | None = None,
        **options: Unpack[TranscribeOptions],
    ) -> concurrent.futures.Future[TranscriptResult]:
        """Start a transcription of a file's channels (``SpeechClient.transcribe_channels``), one factory each,
        each iterated in its own worker thread."""
        return self._loop.submit(self._transcribe_channels(audio_factories, levels, options))

    async def _transcribe_channels(
        self, audio_factories: Sequence[AudioFactory], levels: Levels | None, options: TranscribeOptions
    ) -> TranscriptResult:
        sources = [ThreadedSource(f, self.config.max_in_flight_chunks) for f in audio_factories]
        return await self._client.transcribe_channels(sources, levels=levels, **options)

    def synthesize_async(
        self, text: str, params: TtsParams | None = None
    ) -> concurrent.futures.Future[SynthesisResult]:
        """Start a synthesis (``SpeechClient.synthesize``)."""
        return self._loop.submit(self._client.synthesize(text, params))

    def transcribe(
        self, audio_factory: AudioFactory | AudioSource, **options: Unpack[TranscribeOptions]
    ) -> TranscriptResult:
        return self.transcribe_async(audio_factory, **options).result()

    def synthesize(self, text: str, params: TtsParams | None = None) -> SynthesisResult:
        return self.synthesize_async(text, params).result()

    def retry_in(self) -> float | None:
        """While every endpoint is unavailable, seconds until the next probe; else None (any thread)."""
        return self._client.retry_in()

    def stats(self) -> dict[str, int]:
        # Read on the loop thread so the counters and gauges form one consistent snapshot.
        if self._loop.closed:
            return self._client.stats()
        return self._loop.run(_stats(self._client), timeout=10)

    def close(self) -> None:
        """Close every session; the shared loop keeps running for other clients."""
        if self._closed:
            return
        self._closed = True
        if not self._loop.closed:
            self._loop.run(self._client.aclose(), timeout=30)


async def _make_client(config: ClientConfig) -> SpeechClient:
    return SpeechClient(config)


async def _stats(client: SpeechClient) -> dict[str, int]:
    return client.stats()
