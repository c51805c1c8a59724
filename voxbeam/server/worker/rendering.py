"""A TTS utterance being rendered in a worker: its engine, voice, resampler and audio budget."""

from __future__ import annotations

from voxbeam import audio
from voxbeam.protocol import ErrorCode
from voxbeam.server.engines.base import Prosody, TtsEngine, Voice, max_render_seconds
from voxbeam.server.errors import EngineError

# An engine's estimate of an utterance's audio must exceed what is left of its budget by this much
# before it is refused unrendered (the render itself is still held to the budget).
EXPECTED_SLACK = 1.25


class Rendering:
    """An utterance being rendered: engine, voice, resampler to the asked rate, and its audio budget."""

    def __init__(self, engine: TtsEngine, voice: Voice, prosody: Prosody, rate: int, limit_s: float) -> None:
        self.engine, self.voice, self.prosody = engine, voice, prosody
        self.resampler = audio.PcmResampler(voice.sample_rate, rate)
        self.encoder: audio.StreamEncoder | None = None
        self.limit_s = limit_s
        self.left = int(limit_s * voice.sample_rate) * audio.BYTES_PER_SAMPLE

    def pcm(self, text: str) -> bytes:
        # Refused before rendering when the engine can tell it would not fit (by a clear margin: its
        # estimate is rough): in what is left of the utterance's budget, or in this piece's own (a voice
        # spelling out a page it cannot read is refused at its first piece, not after minutes of it).
        expected = self.engine.audio_seconds(text, self.voice, self.prosody)
        left_s = self.left / audio.BYTES_PER_SAMPLE / self.voice.sample_rate
        allowed = min(left_s, max_render_seconds(text, self.prosody))
        if expected is not None and expected > EXPECTED_SLACK * allowed:
            raise self._too_long()
        out = []
        for pcm in self.engine.render(text, self.voice, self.prosody):
            self.left -= len(pcm)
            if self.left < 0:
                raise self._too_long()
            out.append(self.resampler.push(pcm))
        return b"".join(out)

    def _too_long(self) -> EngineError:
        return EngineError(
            ErrorCode.TEXT_TOO_LONG,
            f"the utterance would be over {self.limit_s:.0f} s of audio (a voice spells out text it cannot read, "
            f"letter by letter: is it in {self.voice.language}?); send shorter text or choose a voice for its language",
        )
