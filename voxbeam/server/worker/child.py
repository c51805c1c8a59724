"""The worker's end of the pipe: a spawned process hosting the engines, serving calls in order.

A worker handles one call at a time, in the order they arrive, so a session's calls never
reorder; deferred decoding (``stt_decode``, no session's) runs beside them in a thread of its
own, so the streams pinned here keep cutting their audio while a batch decodes. Calls cancelled
before they start (a CANCEL for their number) are skipped.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import pickle
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from threadpoolctl import threadpool_limits

from voxbeam import audio
from voxbeam.protocol import ErrorCode
from voxbeam.protocol_controls import SttControls
from voxbeam.server.engines import speaker_encoder, stt_engine, tts_engine
from voxbeam.server.engines.base import (
    Deferred,
    Prosody,
    Recognized,
    Results,
    SttEngine,
    SttStream,
    TtsEngine,
    Voice,
)
from voxbeam.server.engines.diarization import SpeakerTrack, Turn
from voxbeam.server.engines.speaker import Embedder
from voxbeam.server.errors import EngineError
from voxbeam.server.heap import give_back, keep_large_buffers_out_of_the_heap
from voxbeam.server.worker import CANCEL, DONE, ERROR, FAILED, READY, SKIPPED, WorkerSpec
from voxbeam.server.worker.rendering import Rendering

log = logging.getLogger("voxbeam.server.worker")

# Above this a worker's buffers are mmapped (and go back to the OS when freed); see worker_main.
# The most glibc takes (64-bit). At 8 MiB a batch of Whisper windows mmapped its beam search's
# buffers afresh at every call: 1.8x the page faults and ~15 % more CPU per window (measured here).
WORKER_MMAP_THRESHOLD = 32 * 1024 * 1024
# Free memory the heap keeps for the next call instead of returning it (and faulting it in again).
WORKER_TRIM_THRESHOLD = 64 * 1024 * 1024
# A live session's audio that waited longer than this for the worker is only buffered (no
# partials, no endpointing until the worker has caught up): extra work would make it fall further behind.
LIVE_MAX_LAG_S = 1.0

# What a worker renders with its default voice and transcribes to measure its speed (about 8 s of speech).
CALIBRATION_TEXT = (
    "The weather is nice today, and the children are playing in the park. "
    "Please send the report by Friday, because our team meets on Monday morning."
)
# A worker that rendered gives its renders' memory back once no call has come for this long: after
# every render it cost ~12 % of synthesis speed, and a busy worker's memory is bounded by its largest call.
IDLE_GIVE_BACK_S = 0.5
# Utterances open at once in one worker (each session has at most one); beyond, the oldest go.
MAX_RENDERINGS = 256


@dataclass
class _Open:
    """An STT stream, its model's name, and the odd byte a push may leave over (PCM is whole 2-byte samples)."""

    stream: SttStream
    model: str
    carry: bytes = b""
    odd: bool = False
    speakers: SpeakerTrack | None = None  # a diarizing session's


class EngineHost:
    """The engines of one worker process and the STT streams pinned to it."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.stt = stt_engine(spec.stt.model.engine)(spec.stt)
        # Loaded models by name: the default now, the other tiers on first use (``stt_for``).
        self._stt: dict[str, SttEngine] = {spec.stt.model.name: self.stt}
        self._loading = threading.Lock()  # the decoding thread may need a tier while a call loads it
        self._tts: dict[str, TtsEngine] = {}
        self.streams: dict[str, _Open] = {}
        self._encoder: Embedder | None = None  # diarization's speaker model, loaded on first use
        self.renderings: dict[str, Rendering] = {}
        self.lag = 0.0  # how long the call being handled waited for the worker
        self.owes_memory = False  # rendered since the last give_back
        for voice in spec.preload_voices:
            assert isinstance(voice, Voice)
            for _ in self.tts(voice.engine).render("Ready.", voice, Prosody()):
                pass

    def stt_for(self, model: str | None) -> SttEngine:
        """The engine of the served model named ``model`` (None: the default), loaded on first use."""
        if model is None:
            return self.stt
        loaded = self._stt.get(model)
        if loaded is not None:
            return loaded
        with self._loading:
            loaded = self._stt.get(model)
            if loaded is None:
                tier = next((m for m in self.spec.stt_tiers if m.name == model), None)
                if tier is None:  # the server admits served models only
                    raise ValueError(f"model {model!r} is not served")
                started = time.monotonic()
                loaded = stt_engine(tier.engine)(dataclasses.replace(self.spec.stt, model=tier))
                self._stt[model] = loaded
                log.info("loaded model %s on first use in %.1f s", tier.label, time.monotonic() - started)
        return loaded

    def tts(self, engine: str) -> TtsEngine:
        loaded = self._tts.get(engine)
        if loaded is None:
            loaded = self._tts[engine] = tts_engine(engine)(self.spec.tts_threads)
        return loaded

    def give_back(self) -> None:
        """Return what renders left behind (the engines' arenas, the heap's free pages) to the OS."""
        self.owes_memory = False
        try:
            for engine in self._tts.values():
                engine.give_back()
            give_back()
        except Exception:  # housekeeping: it must never take the worker and its sessions down
            log.exception("giving memory back failed")

    def handle(self, op: str, args: tuple[Any, ...]) -> Any:
        method = getattr(self, "op_" + op, None)
        if method is None:
            raise ValueError(f"unknown worker op {op!r}")
        return method(*args)

    # -- speech to text ---------------------------------------------------------------------

    def op_stt_open(
        self,
        sid: str,
        language: str | None,
        sample_rate: int,
        words: bool,
        detect: bool,
        controls: SttControls,
        speakers: tuple[int | None, int | None] | None = None,
    ) -> None:
        """``speakers``: a diarizing session's (min_speakers, max_speakers); None: not diarizing."""
        old = self.streams.pop(sid, None)
        if old is not None:
            old.stream.close()
        engine = self.stt_for(controls.model)
        stream = engine.open(language=language, sample_rate=sample_rate, words=words, detect=detect, controls=controls)
        track = None
        if speakers is not None:
            if not self.spec.diarization:  # the server admits diarizing sessions only when it may
                raise ValueError("this server does not diarize")
            if self._encoder is None:
                self._encoder = speaker_encoder(self.spec.diarization)
            track = SpeakerTrack(self._encoder, sample_rate, min_speakers=speakers[0], max_speakers=speakers[1])
        self.streams[sid] = _Open(stream, controls.model or self.spec.stt.model.name, speakers=track)

    def op_stt_audio(self, sid: str, data: bytes, live: bool) -> Results:
        s = self.streams[sid]
        if s.carry:
            data, s.carry = s.carry + data, b""
        if len(data) % 2:
            data, s.carry = data[:-1], data[-1:]
        if s.speakers is not None:
            s.speakers.push(data)
        return _opaque(s.stream.push(data, live and self.lag < LIVE_MAX_LAG_S), s.model)

    def op_stt_flush(self, sid: str, live: bool) -> tuple[Results, bool, list[Turn] | None]:
        """Every remaining final, whether a stray byte was dropped (odd byte count), and a diarizing session's
        speaker turns (ms from the recognition session's start; None when it does not diarize)."""
        s = self.streams[sid]
        odd, s.carry = bool(s.carry), b""
        results = _opaque(s.stream.finish(live), s.model)
        return results, odd, None if s.speakers is None else s.speakers.finish()

    def op_stt_decode(self, works: list[tuple[str, bytes]]) -> list[list[Recognized]]:
        """Finals for what streams deferred (``Deferred.work``: its model and the work, pickled by ``_opaque``),
        decoded together, model by model."""
        by_model: dict[str, list[int]] = {}
        for i, (model, _) in enumerate(works):
            by_model.setdefault(model, []).append(i)
        out: list[list[Recognized]] = [[] for _ in works]
        for model, indexes in by_model.items():
            found = self.stt_for(model).decode([pickle.loads(works[i][1]) for i in indexes])
            for i, finals in zip(indexes, found, strict=True):
                out[i] = finals
        return out

    def op_calibrate(self) -> float:
        """This worker's bulk speed: audio seconds it transcribes per second, measured on speech its own
        default voice renders (the server's capacity, for admitting sessions by load)."""
        voice = self.spec.preload_voices[0]
        assert isinstance(voice, Voice)
        self.owes_memory = True
        pcm = audio.resample(
            b"".join(self.tts(voice.engine).render(CALIBRATION_TEXT, voice, Prosody())), voice.sample_rate, 16000
        )
        languages = self.spec.stt.model.languages
        started = time.monotonic()
        stream = self.stt.open(
            language="en" if "en" in languages else languages[0], sample_rate=16000, words=True, detect=False
        )
        try:
            results = [*stream.push(pcm, False), *stream.finish(False)]
            works = [r.work for r in results if isinstance(r, Deferred)]
            if works:
                self.stt.decode(works)
        finally:
            stream.close()
        return len(pcm) / audio.BYTES_PER_SAMPLE / 16000 / max(1e-3, time.monotonic() - started)

    def op_stt_close(self, sid: str) -> None:
        s = self.streams.pop(sid, None)
        if s is not None:
            s.stream.close()

    # -- text to speech ---------------------------------------------------------------------
    #
    # An utterance of one sentence is one call (a file with exact sizes). A longer one is opened,
    # rendered one sentence per call as the session asks (so a client that does not read stops
    # the rendering, and other sessions' calls run in between), and closed.

    def op_tts_render(self, text: str, voice: Voice, prosody: Prosody, rate: int, fmt: str, limit_s: float) -> bytes:
        """A whole one-sentence utterance as one file of ``fmt``."""
        rendering = Rendering(self.tts(voice.engine), voice, prosody, rate, limit_s)
        self.owes_memory = True
        pcm = rendering.pcm(text) + rendering.resampler.flush()
        return audio.encode(pcm, rate, fmt)

    def op_tts_open(self, uid: str, voice: Voice, prosody: Prosody, rate: int, fmt: str, limit_s: float) -> None:
        rendering = Rendering(self.tts(voice.engine), voice, prosody, rate, limit_s)
        rendering.encoder = audio.StreamEncoder(fmt, rate)
        self.renderings[uid] = rendering
        while len(self.renderings) > MAX_RENDERINGS:  # left open by sessions that went away
            self.renderings.pop(next(iter(self.renderings)))

    def op_tts_piece(self, uid: str, text: str) -> bytes:
        """The file's next bytes: ``text`` (one sentence) rendered and encoded."""
        rendering = self.renderings[uid]
        assert rendering.encoder is not None
        self.owes_memory = True
        try:
            return rendering.encoder.write(rendering.pcm(text))
        except EngineError:
            self.renderings.pop(uid, None)
            raise

    def op_tts_close(self, uid: str) -> bytes:
        """The file's last bytes."""
        rendering = self.renderings.pop(uid)
        assert rendering.encoder is not None
        return rendering.encoder.write(rendering.resampler.flush()) + rendering.encoder.close()

    def op_tts_drop(self, uid: str) -> None:
        self.renderings.pop(uid, None)


def _opaque(results: Results, model: str) -> Results:
    """Deferred work pickled here, with the name of the model whose engine decodes it: the server passes it
    on unread, without importing the engine, to whichever worker is free."""
    return [Deferred((model, pickle.dumps(r.work)), r.audio_s) if isinstance(r, Deferred) else r for r in results]


class _Pipe:
    """The child's side: an inbox that can be read ahead while a call runs (to see cancellations)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.inbox: collections.deque[Any] = collections.deque()
        self.cancelled: set[int] = set()
        self._sending = threading.Lock()  # the decoding thread replies too

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
        with self._sending:
            self.conn.send(msg)


def worker_main(conn: Any, slot: int, spec: WorkerSpec, log_level: int) -> None:
    """Entry point of a worker process (spawned, so it shares nothing with the server's threads)."""
    # Ctrl-C reaches the whole process group; the server decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Long audio (minutes of float32) must not leave the heap grown, but the engines' per-call
    # temporaries (a batch's features, encoder outputs, beam state: up to tens of MiB) must stay in it: at
    # the front process's 128 KiB, every decode mmapped and page-faulted them afresh and Whisper
    # used ~45 % more CPU per file than when called directly.
    keep_large_buffers_out_of_the_heap(WORKER_MMAP_THRESHOLD, WORKER_TRIM_THRESHOLD)
    # numpy's BLAS would start a thread per core in every worker, on top of the engines' own pools that the
    # server's layout already sizes to the cores; its matrices here (mel filterbanks, the speaker LSTM's
    # steps) are too small to gain from threads, whose spinning cost diarization 3 to 5 times its CPU.
    threadpool_limits(limits=1, user_api="blas")
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
    decoding: queue.SimpleQueue[Any] = queue.SimpleQueue()
    threading.Thread(target=_decode, args=(host, pipe, decoding), name="stt-decode", daemon=True).start()
    while True:
        while host.owes_memory and not pipe.inbox:  # a CANCEL alone (a client gone mid-render) is no call
            if pipe.conn.poll(IDLE_GIVE_BACK_S):
                pipe.read_ahead()
            else:
                host.give_back()
        msg = pipe.next()
        if msg is None:
            return
        if msg[1] == "stt_decode":
            decoding.put(msg)
            continue
        host.lag = time.monotonic() - msg[3]
        pipe.read_ahead()
        _call(host, pipe, msg)


def _decode(host: EngineHost, pipe: _Pipe, decoding: queue.SimpleQueue[Any]) -> None:
    try:
        while True:
            _call(host, pipe, decoding.get())
    except (EOFError, OSError):
        pass  # the server is gone


def _call(host: EngineHost, pipe: _Pipe, msg: Any) -> None:
    number, op, args, _ = msg
    if number is not None and number in pipe.cancelled:
        pipe.cancelled.discard(number)
        pipe.send((SKIPPED, number))  # nobody waits for it any more; the server stops counting it
        return
    try:
        reply: tuple[Any, ...] = (DONE, number, host.handle(op, args))
    except EngineError as exc:
        reply = (ERROR, number, exc.code.value, exc.message)
    except Exception as exc:
        log.exception("worker op %s failed", op)
        reply = (ERROR, number, ErrorCode.INTERNAL_ERROR.value, f"the engine failed ({type(exc).__name__})")
    if number is not None:
        pipe.cancelled.discard(number)
        pipe.send(reply)
