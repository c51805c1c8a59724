"""The text-to-speech session: text in, one audio file per utterance out, streamed by sentence.

Text with ``is_final: false`` is collected (chunks joined as the spec's batch example intends);
``is_final: true`` ends the utterance, which is rendered on a worker when the session's writer
gets to it. A one-sentence utterance is one worker call; a longer one is rendered one sentence
per call, each asked for when the one before it is back, so the first audio follows the first
sentence, a client that stops reading stops the rendering, and other sessions' work runs
between the sentences. Audio goes out as ``audio`` messages; their concatenation is the file and
the last one has ``is_final: true``. Nothing is rendered before the text is final, so a dropped
or abandoned utterance costs no engine time.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from voxbeam import audio
from voxbeam import protocol as p
from voxbeam.protocol import ErrorCode
from voxbeam.server.engines.base import Prosody, Voice, max_render_seconds
from voxbeam.server.errors import EngineError, WorkerDied, WorkerUnavailable
from voxbeam.server.session import Session
from voxbeam.server.voices import prosody_for
from voxbeam.server.worker.fair import Lane
from voxbeam.server.worker.process import Worker
from voxbeam.text import check_text, join_chunk, sentences, speakable, unreadable_script

CHUNK_BYTES = 32 * 1024
# Which language's voices read a script, for the hint when a voice cannot.
SCRIPT_LANGUAGES = {"Han": "zh", "Hiragana": "ja", "Katakana": "ja", "Hangul": "ko", "Cyrillic": "ru", "Greek": "el"}
# Utterances of one session waiting for their audio to go out; past it the session is not read
# (TCP backpressure) until one is done.
MAX_QUEUED_UTTERANCES = 4


class TtsSession(Session):
    service = "tts"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.voice: Voice | None = None
        self.prosody: Prosody | None = None
        self.format = "wav"
        self.sample_rate = 16000
        self._text = ""  # the open utterance's text so far
        self._calls: set[asyncio.Future[Any]] = set()  # worker calls whose replies are still owed
        self._queued = asyncio.Semaphore(MAX_QUEUED_UTTERANCES)
        self.utterances = 0
        self.characters = 0
        # Its calls' turn in the workers' fair queues (fair.py): its own lane under its key; bulk class.
        self.lane = Lane(uuid.uuid4().hex, self.key_label)

    async def on_init(self, msg: p.SttInit | p.TtsInit) -> None:
        assert isinstance(msg, p.TtsInit)
        try:
            voice = self.ctx.voices.resolve(msg.voice_id, msg.language)
            prosody = prosody_for(msg, voice)
        except p.ProtocolError as exc:
            await self.report(exc.code, exc.message)
            return
        self.voice, self.prosody = voice, prosody
        # The rate the files will really have (Opus is always 48 kHz, MP3 has nine rates).
        self.format, self.sample_rate = msg.format, audio.delivered_rate(msg.format, msg.sample_rate)
        self.request_id = p.new_request_id()
        self.request_ids.append(self.request_id)
        await self.emit(p.TtsReady(self.request_id, voice.id, voice.language, msg.format, self.sample_rate))

    async def on_message(self, msg: p.ClientMessage) -> None:
        if not isinstance(msg, p.Text):
            await self.report(ErrorCode.INVALID_MESSAGE, f"unexpected {msg.type!r} message")
            return
        try:
            check_text(msg.text)
        except p.ProtocolError as exc:
            self._text = ""
            await self.report(exc.code, exc.message + " (utterance dropped)")
            return
        text = join_chunk(self._text, speakable(msg.text))
        limit = self.config.max_text_chars
        if len(text) > limit:
            self._text = ""
            await self.report(
                ErrorCode.TEXT_TOO_LONG,
                f"an utterance may have at most {limit} characters; this one reached {len(text)} (utterance dropped)",
            )
            return
        if not msg.is_final:
            self._text = text
            return
        self._text = ""
        if not text.strip():
            await self.report(ErrorCode.INVALID_MESSAGE, "nothing to synthesize: the utterance has no text")
            return
        assert self.voice is not None
        script = unreadable_script(text, self.voice.language)
        if script is not None:
            await self.report(ErrorCode.UNSUPPORTED_LANGUAGE, self._cannot_read(script))
            return
        self.utterances += 1
        self.characters += len(text)
        self.ctx.metrics.characters(len(text))
        await self._queued.acquire()
        # The utterance's calls take their turn in the worker's fair queue (fair.py): however long the
        # queue, this session's next call goes after one call of each other session waiting there.
        try:
            worker = self.ctx.pool.pick()
        except WorkerUnavailable:
            self._queued.release()
            await self.report(ErrorCode.INTERNAL_ERROR, "no speech engine is running; send the utterance again")
            return
        # Rendering starts when the writer gets to this utterance: work for a client that has gone
        # meanwhile is never started.
        await self.emit(lambda: self._audio(self._rendered(worker, text, sentences(text))))

    def _cannot_read(self, script: str) -> str:
        assert self.voice is not None
        prefix = SCRIPT_LANGUAGES.get(script)
        readers = [v.id for v in self.ctx.voices.voices if prefix and v.language.lower().startswith(prefix)]
        hint = f", such as {readers[0]}" if readers else ""
        return (
            f"the text is written mostly in {script} script, which voice {self.voice.id} ({self.voice.language}) "
            f"would spell out letter by letter; choose a voice for its language{hint} (utterance dropped)"
        )

    def _call(self, worker: Worker, op: str, *args: Any) -> asyncio.Future[Any]:
        fut = worker.call(op, *args, lane=self.lane)
        self._calls.add(fut)
        fut.add_done_callback(self._calls.discard)
        return fut

    async def _rendered(
        self, worker: Worker, text: str, pieces: list[str]
    ) -> AsyncGenerator[asyncio.Future[Any], None]:
        """The worker calls that render the utterance, each made when the one before is collected."""
        assert self.voice is not None and self.prosody is not None
        args = (self.voice, self.prosody, self.sample_rate, self.format, max_render_seconds(text, self.prosody))
        if len(pieces) <= 1:
            yield self._call(worker, "tts_render", text, *args)
            return
        uid = uuid.uuid4().hex
        worker.cast("tts_open", uid, *args, lane=self.lane)
        try:
            with worker.rendering():
                for piece in pieces:
                    yield self._call(worker, "tts_piece", uid, piece)
                yield self._call(worker, "tts_close", uid)
        finally:
            worker.cast("tts_drop", uid, lane=self.lane)  # a no-op once closed; frees it after a failure or a cancel

    async def _audio(self, rendered: AsyncGenerator[asyncio.Future[Any], None]) -> AsyncIterator[p.ServerMessage]:
        """The utterance's file as audio messages, sentence by sentence; the last one is final."""
        held: bytes | None = None  # one chunk is held back: only the end says which one is last
        current: asyncio.Future[Any] | None = None
        try:
            current = await anext(rendered)
            while current is not None:
                data: bytes = await current
                # The next sentence is asked for as soon as this one is here, before it goes out:
                # the worker stays busy while the client reads, and a client that has gone by the
                # end of a sentence costs no further one.
                current = await anext(rendered, None)
                for i in range(0, len(data), CHUNK_BYTES):
                    if held is not None:
                        yield p.Audio(held)
                    held = data[i : i + CHUNK_BYTES]
        except (WorkerDied, WorkerUnavailable):
            yield p.error(
                ErrorCode.INTERNAL_ERROR, "the speech engine stopped; send the utterance again", self.request_id
            )
            return
        except EngineError as exc:
            yield p.error(exc.code, exc.message, self.request_id)
            return
        finally:
            if current is not None:
                current.cancel()
            await rendered.aclose()
            self._queued.release()
        yield p.Audio(held or b"", is_final=True)

    async def cleanup(self) -> None:
        for fut in list(self._calls):
            fut.cancel()  # the worker skips what it has not started
        self._calls.clear()

    def mid_request(self) -> bool:
        # Text of an utterance not yet ended, or its audio still to come.
        return bool(self._calls or self._text) or super().mid_request()

    def summary(self) -> str:
        voice = self.voice.id if self.voice else "-"
        return f"voice={voice} format={self.format} utterances={self.utterances} chars={self.characters}"
