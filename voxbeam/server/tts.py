"""The text-to-speech session: text in, one audio file per utterance out.

Text with ``is_final: false`` is synthesized sentence by sentence as it arrives (on any
worker: synthesis is stateless), so little work is left when ``is_final: true`` ends the
utterance. The utterance's audio is then encoded into one file and sent in chunks; their
concatenation is the file and the last chunk has ``is_final: true``.
"""

from __future__ import annotations

import asyncio
import functools
import re
from typing import Any

from voxbeam import protocol as p
from voxbeam.protocol import ErrorCode
from voxbeam.server.session import Session
from voxbeam.server.voices import Prosody, Voice, prosody_for, resolve_voice
from voxbeam.server.workers import WorkerCallError, WorkerDied, WorkerUnavailable

CHUNK_BYTES = 32 * 1024
# A sentence ends at ., !, ? or ; followed by space, or at CJK end punctuation.
_SENTENCE_END = re.compile(r"[.!?;][\"')\]]*\s+|[。！？；]")
# Text without any sentence end is still cut (at a space) past this many characters.
_MAX_PIECE = 600


def split_ready(text: str) -> tuple[str, str]:
    """(complete sentences to synthesize now, rest to keep buffering)."""
    cut = 0
    for match in _SENTENCE_END.finditer(text):
        cut = match.end()
    if not cut and len(text) > _MAX_PIECE:
        cut = text.rfind(" ", 0, _MAX_PIECE) + 1 or _MAX_PIECE
    return text[:cut], text[cut:]


def _consume(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()  # abandoned work: do not log "exception was never retrieved"


class TtsSession(Session):
    service = "tts"
    KNOWN = ("init", "text", "ping")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.voice: Voice | None = None
        self.prosody: Prosody | None = None
        self.format = "wav"
        self.sample_rate = 16000
        self._text = ""  # received, not yet sent to synthesis
        self._chars = 0  # characters in the open utterance
        self._parts: list[asyncio.Future[Any]] = []
        self.utterances = 0
        self.characters = 0

    async def on_init(self, msg: p.SttInit | p.TtsInit) -> None:
        assert isinstance(msg, p.TtsInit)
        try:
            voice = resolve_voice(msg.voice_id, msg.language)
            prosody = prosody_for(msg, voice)
        except p.ProtocolError as exc:
            await self.report(exc.code, exc.message)
            return
        self.voice, self.prosody = voice, prosody
        self.format, self.sample_rate = msg.format, msg.sample_rate
        self.initialized = True
        self.request_id = p.new_request_id()
        self.request_ids.append(self.request_id)
        await self.emit(p.TtsReady(self.request_id, voice.id, voice.language, msg.format, msg.sample_rate))

    async def on_message(self, msg: p.ClientMessage) -> None:
        if not isinstance(msg, p.Text):
            await self.report(ErrorCode.INVALID_MESSAGE, f"unexpected {msg.type!r} message")
            return
        limit = self.config.max_text_chars
        if self._chars + len(msg.text) > limit:
            over = self._chars + len(msg.text)
            self._abandon()
            await self.report(
                ErrorCode.TEXT_TOO_LONG,
                f"an utterance may have at most {limit} characters; this one reached {over} (utterance dropped)",
            )
            return
        self._chars += len(msg.text)
        self._text += msg.text
        if not msg.is_final:
            ready, self._text = split_ready(self._text)
            if ready.strip():
                self._parts.append(self._synthesize(ready))
            return
        rest, self._text = self._text, ""
        # A whole utterance in this one message (the common case) is rendered and encoded in one call.
        encoded = bool(rest.strip()) and not self._parts and self.format != "pcm"
        if rest.strip():
            self._parts.append(self._synthesize(rest, self.format if encoded else None))
        parts, chars = self._parts, self._chars
        self._parts, self._chars = [], 0
        if not parts:
            await self.report(ErrorCode.INVALID_MESSAGE, "nothing to synthesize: the utterance has no text")
            return
        self.utterances += 1
        self.characters += chars
        self.server.metrics.characters(chars)  # [metrics]
        await self.emit(functools.partial(self._finish, parts, encoded))

    def _abandon(self) -> None:
        for fut in self._parts:
            fut.add_done_callback(_consume)
        self._parts, self._text, self._chars = [], "", 0

    def _synthesize(self, text: str, encode_as: str | None = None) -> asyncio.Future[Any]:
        """PCM for ``text``, or, with ``encode_as``, the whole utterance's file."""
        try:
            worker = self.server.pool.pick()
        except WorkerUnavailable as exc:
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            fut.set_exception(exc)
            return fut
        if encode_as is not None:
            fut = worker.call("tts_render", text, self.prosody, self.sample_rate, encode_as)
            return self.server.metrics.engine_call("tts_render", fut, worker)  # [metrics]
        fut = worker.call("tts_synth", text, self.prosody, self.sample_rate)
        return self.server.metrics.engine_call("tts_synth", fut, worker)  # [metrics]

    async def _finish(self, parts: list[asyncio.Future[Any]], encoded: bool) -> list[p.ServerMessage]:
        try:
            if encoded:
                data = await parts[0]
            else:
                pcm = b"".join([await fut for fut in parts])
                data = pcm if self.format == "pcm" else await self._encode(pcm)
        except (WorkerDied, WorkerUnavailable):
            return [
                p.error(
                    ErrorCode.INTERNAL_ERROR, "the speech engine stopped; send the utterance again", self.request_id
                )
            ]
        except WorkerCallError as exc:
            return [p.error(ErrorCode(exc.code), exc.message, self.request_id)]
        finally:
            for fut in parts:  # after a failure the rest are never awaited
                fut.add_done_callback(_consume)
        if not data:
            return [p.Audio(b"", is_final=True)]
        last = (len(data) - 1) // CHUNK_BYTES * CHUNK_BYTES
        return [p.Audio(data[i : i + CHUNK_BYTES], is_final=i == last) for i in range(0, len(data), CHUNK_BYTES)]

    async def _encode(self, pcm: bytes) -> bytes:
        worker = self.server.pool.pick()
        fut = worker.call("encode", pcm, self.sample_rate, self.format)
        result: bytes = await self.server.metrics.engine_call("encode", fut, worker)  # [metrics]
        return result

    async def cleanup(self) -> None:
        self._abandon()

    def mid_request(self) -> bool:
        # Text of an utterance not yet ended, or its audio still to come.
        return bool(self._parts or self._text) or super().mid_request()

    def summary(self) -> str:
        voice = self.voice.id if self.voice else "-"
        return f"voice={voice} format={self.format} utterances={self.utterances} chars={self.characters}"
