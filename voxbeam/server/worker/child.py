"""The worker's end of the pipe: a spawned process hosting the engines, serving calls in order.

A worker handles one call at a time, in the order they arrive, so a session's calls never
reorder. While a streamed call renders, the pipe is read between sentences: a CANCEL for that
call stops it there, and calls that were cancelled before they started are skipped.
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from voxbeam import audio
from voxbeam.protocol import ErrorCode
from voxbeam.server.engines import stt_engine, tts_engine
from voxbeam.server.engines.base import Prosody, Recognized, SttStream, TtsEngine, Voice
from voxbeam.server.errors import EngineError
from voxbeam.server.heap import keep_large_buffers_out_of_the_heap
from voxbeam.server.worker import CANCEL, DONE, ERROR, FAILED, PART, READY, WorkerSpec
from voxbeam.text import sentences

log = logging.getLogger("voxbeam.server.worker")

# A live session's audio that waited longer than this for the worker is only buffered (no
# partials, no endpointing until the worker has caught up): extra work would make it fall further behind.
LIVE_MAX_LAG_S = 1.0

Emit = Callable[[Any], bool]


@dataclass
class _Open:
    """An STT stream and the odd byte a push may leave over (PCM is whole 2-byte samples)."""

    stream: SttStream
    carry: bytes = b""
    odd: bool = False


class Cancelled(Exception):
    """The call was cancelled while it ran."""


class EngineHost:
    """The engines of one worker process and the STT streams pinned to it."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.stt = stt_engine(spec.stt.model.engine)(spec.stt)
        self._tts: dict[str, TtsEngine] = {}
        self.streams: dict[str, _Open] = {}
        self.lag = 0.0  # how long the call being handled waited for the worker
        for voice in spec.preload_voices:
            assert isinstance(voice, Voice)
            for _ in self.tts(voice.engine).render("Ready.", voice, Prosody()):
                pass

    def tts(self, engine: str) -> TtsEngine:
        loaded = self._tts.get(engine)
        if loaded is None:
            loaded = self._tts[engine] = tts_engine(engine)(self.spec.tts_threads)
        return loaded

    def handle(self, op: str, args: tuple[Any, ...], emit: Emit) -> Any:
        method = getattr(self, "op_" + op, None)
        if method is None:
            raise ValueError(f"unknown worker op {op!r}")
        if op in STREAMED:
            return method(*args, emit=emit)
        return method(*args)

    # -- speech to text ---------------------------------------------------------------------

    def op_stt_open(self, sid: str, language: str | None, sample_rate: int, words: bool, detect: bool) -> None:
        old = self.streams.pop(sid, None)
        if old is not None:
            old.stream.close()
        stream = self.stt.open(language=language, sample_rate=sample_rate, words=words, detect=detect)
        self.streams[sid] = _Open(stream)

    def op_stt_audio(self, sid: str, data: bytes, live: bool) -> list[Recognized]:
        s = self.streams[sid]
        if s.carry:
            data, s.carry = s.carry + data, b""
        if len(data) % 2:
            data, s.carry = data[:-1], data[-1:]
        return s.stream.push(data, live and self.lag < LIVE_MAX_LAG_S)

    def op_stt_flush(self, sid: str, live: bool) -> tuple[list[Recognized], bool]:
        """Every remaining final, and whether a stray byte was dropped (odd byte count)."""
        s = self.streams[sid]
        odd, s.carry = bool(s.carry), b""
        return s.stream.finish(live), odd

    def op_stt_close(self, sid: str) -> None:
        s = self.streams.pop(sid, None)
        if s is not None:
            s.stream.close()

    # -- text to speech ---------------------------------------------------------------------

    def op_tts_render(
        self, text: str, voice: Voice, prosody: Prosody, rate: int, fmt: str, max_seconds: float, *, emit: Emit
    ) -> int:
        """Render an utterance into one file of ``fmt``, emitting its bytes as each sentence is done.

        Returns the samples rendered. A one-sentence utterance is emitted whole (a WAV with exact
        sizes); longer ones stream (a WAV then declares an unknown length, see audio.StreamEncoder).
        """
        engine = self.tts(voice.engine)
        pieces = sentences(text)
        resampler = audio.PcmResampler(voice.sample_rate, rate)
        budget = int(max_seconds * voice.sample_rate) * audio.BYTES_PER_SAMPLE
        rendered = 0

        def blocks() -> Any:
            nonlocal rendered
            for piece in pieces:
                for pcm in engine.render(piece, voice, prosody):
                    rendered += len(pcm)
                    if rendered > budget:
                        raise EngineError(
                            ErrorCode.TEXT_TOO_LONG,
                            f"the utterance would be over {max_seconds:g} s of audio; send shorter text",
                        )
                    yield resampler.push(pcm)
            yield resampler.flush()

        if len(pieces) <= 1:
            emit(audio.encode(b"".join(blocks()), rate, fmt))
            return rendered // audio.BYTES_PER_SAMPLE
        encoder = audio.StreamEncoder(fmt, rate)
        for pcm in blocks():
            if not emit(encoder.write(pcm)):
                raise Cancelled()
        emit(encoder.close())
        return rendered // audio.BYTES_PER_SAMPLE

    def op_stats(self) -> dict[str, int]:
        return {"pid": os.getpid(), "streams": len(self.streams)}


STREAMED = frozenset({"tts_render"})


class _Pipe:
    """The child's side: an inbox that can be read ahead while a call runs (to see cancellations)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.inbox: collections.deque[Any] = collections.deque()
        self.cancelled: set[int] = set()

    def _take(self, msg: Any) -> None:
        if isinstance(msg, tuple) and len(msg) == 2 and msg[0] == CANCEL:
            self.cancelled.add(msg[1])
        else:
            self.inbox.append(msg)

    def read_ahead(self) -> None:
        while self.conn.poll(0):
            self._take(self.conn.recv())

    def next(self) -> Any:
        while not self.inbox:
            self._take(self.conn.recv())
        return self.inbox.popleft()

    def send(self, msg: Any) -> None:
        self.conn.send(msg)


def worker_main(conn: Any, slot: int, spec: WorkerSpec, log_level: int) -> None:
    """Entry point of a worker process (spawned, so it shares nothing with the server's threads)."""
    # Ctrl-C reaches the whole process group; the server decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    keep_large_buffers_out_of_the_heap()  # decoding long audio must not leave the heap grown
    logging.basicConfig(
        level=log_level, stream=sys.stderr, format=f"%(asctime)s worker-{slot} %(levelname)s %(message)s"
    )
    try:
        host = EngineHost(spec)
    except Exception as exc:  # report, so the server says why instead of seeing a bare EOF
        conn.send((FAILED, f"{type(exc).__name__}: {exc}"))
        return
    pipe = _Pipe(conn)
    pipe.send((READY, os.getpid()))
    try:
        _serve(host, pipe)
    except (EOFError, OSError):
        pass  # the server is gone


def _serve(host: EngineHost, pipe: _Pipe) -> None:
    while True:
        msg = pipe.next()
        if msg is None:
            return
        number, op, args, sent_at = msg
        host.lag = time.monotonic() - sent_at
        if number is not None and number in pipe.cancelled:
            pipe.cancelled.discard(number)
            continue  # nobody waits for it any more

        def emit(payload: Any, number: int | None = number) -> bool:
            pipe.send((PART, number, payload))
            pipe.read_ahead()
            return number not in pipe.cancelled

        try:
            reply: tuple[Any, ...] = (DONE, number, host.handle(op, args, emit))
        except Cancelled:
            pipe.cancelled.discard(number)
            continue
        except EngineError as exc:
            reply = (ERROR, number, exc.code.value, exc.message)
        except Exception as exc:
            log.exception("worker op %s failed", op)
            reply = (ERROR, number, ErrorCode.INTERNAL_ERROR.value, f"the engine failed ({type(exc).__name__})")
        if number is not None:
            pipe.cancelled.discard(number)
            pipe.send(reply)
