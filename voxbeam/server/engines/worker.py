"""The engine worker process: pocketsphinx streams and one eSpeak NG, driven over a Pipe.

Requests are ``(request_no, op, args)`` tuples; replies are ``(request_no, ok, payload)``
(payload is ``(code, message)`` when not ok). ``request_no`` None means no reply is wanted.
A worker handles one request at a time, in order, so a session's requests never reorder.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Any

from voxbeam import audio
from voxbeam.protocol import ErrorCode
from voxbeam.server.engines.recognizer import DecoderPool, NoiseFloor, RecognitionStream, RecognizerSettings
from voxbeam.server.engines.synthesizer import SynthesisError, get_synthesizer
from voxbeam.server.voices import Prosody

log = logging.getLogger("voxbeam.server.worker")


class EngineInputError(Exception):
    """The request's input is unusable; ``code`` goes back to the client."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class WorkerEngine:
    """The engines of one worker process and the STT streams pinned to it."""

    def __init__(self, settings: RecognizerSettings) -> None:
        self.settings = settings
        self.pool = DecoderPool(settings.decoders)
        self.pool.reserved()  # loaded before READY: the first session must not pay the 0.6 s load
        self.noise = NoiseFloor(settings.noise_floor, settings.max_utterance_s + 5)
        self.synth = get_synthesizer()
        self.streams: dict[str, RecognitionStream] = {}

    def handle(self, op: str, args: tuple[Any, ...]) -> Any:
        method = getattr(self, "op_" + op, None)
        if method is None:
            raise ValueError(f"unknown worker op {op!r}")
        return method(*args)

    def op_stt_open(self, sid: str, sample_rate: int, with_words: bool) -> None:
        old = self.streams.pop(sid, None)
        if old is not None:
            old.close()
        self.streams[sid] = RecognitionStream(
            self.pool, sample_rate, self.settings, with_words=with_words, noise=self.noise
        )

    def op_stt_audio(self, sid: str, data: bytes, live: bool = False) -> list[Any]:
        return self.streams[sid].push(data, live)

    def op_stt_flush(self, sid: str, live: bool = False) -> tuple[list[Any], bool]:
        return self.streams[sid].flush(live)

    def op_stt_close(self, sid: str) -> None:
        stream = self.streams.pop(sid, None)
        if stream is not None:
            stream.close()

    def op_tts_synth(self, text: str, prosody: Prosody, rate: int) -> bytes:
        try:
            pcm = self.synth.synthesize(text, prosody)
        except SynthesisError as exc:
            raise EngineInputError(ErrorCode.INTERNAL_ERROR, str(exc)) from None
        if rate != self.synth.sample_rate and pcm:
            pcm = audio.resample(pcm, self.synth.sample_rate, rate)
        return pcm

    def op_encode(self, pcm: bytes, rate: int, fmt: str) -> bytes:
        return audio.encode(pcm, rate, fmt)

    def op_tts_render(self, text: str, prosody: Prosody, rate: int, fmt: str) -> bytes:
        """A whole utterance in one call: synthesis and encoding, with no PCM round trip."""
        return self.op_encode(self.op_tts_synth(text, prosody, rate), rate, fmt)

    def op_stats(self) -> dict[str, int]:
        return {
            "pid": os.getpid(),
            "streams": len(self.streams),
            "decoders_created": self.pool.created,
            "decoders_lent": self.pool.lent,
        }


def worker_main(conn: Any, slot: int, settings: RecognizerSettings, log_level: int) -> None:
    """Entry point of a worker process (spawned, so it shares nothing with the server's threads)."""
    # Ctrl-C reaches the whole process group; the server decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=log_level, stream=sys.stderr, format=f"%(asctime)s worker-{slot} %(levelname)s %(message)s"
    )
    try:
        engine = WorkerEngine(settings)
    except Exception as exc:  # report, so the server says why instead of seeing a bare EOF
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            break  # the server is gone
        if msg is None:
            break
        request_no, op, args = msg
        try:
            reply: tuple[Any, bool, Any] = (request_no, True, engine.handle(op, args))
        except EngineInputError as exc:
            reply = (request_no, False, (exc.code.value, exc.message))
        except Exception as exc:
            log.exception("worker op %s failed", op)
            reply = (request_no, False, (ErrorCode.INTERNAL_ERROR.value, f"{type(exc).__name__}: {exc}"))
        if request_no is not None:
            try:
                conn.send(reply)
            except (BrokenPipeError, OSError):
                break
