"""A file's channels as streams of their own (issue 28, ``--channels``): whether ``auto`` splits a file, and each
channel's PCM with the other side's bleed (crosstalk) gated out, plus the levels that words heard on two channels
at once are checked against after recognition (``voxbeam.client.channels`` merges the transcripts).

Everything works on 20 ms frames of the decoded audio at the recognition rate, each channel's level in dBFS:

- ``auto`` reads at most the first ``AUTO_SECONDS`` of the file. A frame is voiced when its loudest channel is
  above ``VOICED_DBFS``; a channel *leads* a voiced frame when it is at least ``LEAD_DB`` louder than every other
  channel. The file is split when at least two channels each lead at least ``LEAD_SHARE`` of the voiced frames
  and at least ``LEAD_MIN_S`` of them. Duplicated mono (every frame the same level on both sides), a near
  duplicate (two mics in one room, a codec's difference), panned mono (one side always louder) and a silent
  side all have at most one leading channel: they are mixed, one stream, ``channel`` null.
- Crosstalk: a channel's frame is silenced (a 20 ms ramp at each edge) where another channel is voiced and at
  least ``GATE_DB`` louder; the other side's voice at -20 dB on a line then never reaches recognition. Of a
  silenced run longer than twice ``KEEP_MS`` only that much is sent at each end: the rest is left out of the
  stream (and put back into the words' times after recognition), so the other side's turns cost nothing.
  Where both speak at once neither is gated, so a word can be heard on both: after recognition, of two same
  words overlapping in time on two channels, the one on the channel at least ``DEDUP_DB`` quieter over the
  word's span is dropped.

Decoding stays streamed: each channel's stream decodes the file on its own (decoding costs little next to
recognition), and only the levels are kept (two bytes per channel per 20 ms), and where time was left out.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO

import av
import numpy as np

FRAME_MS = 20
AUTO_SECONDS = 120
VOICED_DBFS = -50.0
LEAD_DB = 6.0
LEAD_SHARE = 0.05
LEAD_MIN_S = 1.0
GATE_DB = 12.0
KEEP_MS = 300
DEDUP_DB = 10.0
_FLOOR_DB = -100.0


def count(source: IO[bytes]) -> int:
    """The channels of the first audio stream (1 when there is none or FFmpeg cannot tell: the mono path then
    reports what is wrong with the file)."""
    try:
        with av.open(source, mode="r", metadata_errors="ignore") as container:
            streams = container.streams.audio
            return max(1, int(streams[0].channels)) if streams else 1
    except (av.FFmpegError, ValueError, OSError):
        return 1


def frame_levels(block: np.ndarray, rate: int) -> np.ndarray:
    """dBFS per 20 ms frame and channel of ``block`` (samples x channels, int16); a last partial frame counts."""
    step = rate * FRAME_MS // 1000
    n = -(-len(block) // step)
    padded = np.zeros((n * step, block.shape[1]), dtype=np.float32)
    padded[: len(block)] = block
    frames = padded.reshape(n, step, block.shape[1])
    power = np.einsum("fsc,fsc->fc", frames, frames) / step / 32768.0**2
    return np.maximum(10 * np.log10(power + 1e-12), _FLOOR_DB).astype(np.float32)


def _blocks(chunks: Iterable[bytes], channels: int) -> Iterator[np.ndarray]:
    for chunk in chunks:
        yield np.frombuffer(chunk, dtype="<i2").reshape(-1, channels)


@dataclass(frozen=True)
class Survey:
    """What ``auto`` saw: voiced seconds, and the seconds each channel led; ``split`` is its decision."""

    channels: int
    voiced_s: float
    led_s: tuple[float, ...]

    @property
    def split(self) -> bool:
        enough = max(LEAD_MIN_S, LEAD_SHARE * self.voiced_s)
        return sum(s >= enough for s in self.led_s) >= 2


def survey(chunks: Iterable[bytes], channels: int, rate: int, seconds: float = AUTO_SECONDS) -> Survey:
    """``auto``'s look at the first ``seconds`` of ``chunks`` (interleaved s16le of ``channels``)."""
    voiced = 0
    led = np.zeros(channels, dtype=np.int64)
    frames_left = int(seconds * 1000 // FRAME_MS)
    for block in _blocks(chunks, channels):
        levels = frame_levels(block, rate)[:frames_left]
        frames_left -= len(levels)
        loud = levels.max(axis=1) > VOICED_DBFS
        voiced += int(loud.sum())
        if channels > 1:
            top = np.sort(levels, axis=1)
            leads = loud & (top[:, -1] - top[:, -2] >= LEAD_DB)
            np.add.at(led, levels.argmax(axis=1)[leads], 1)
        if frames_left <= 0:
            break
    to_s = FRAME_MS / 1000
    return Survey(channels, voiced * to_s, tuple(float(n) * to_s for n in led))


@dataclass
class Skips:
    """Where a channel's stream left out silenced time: marks of (ms into the stream, ms left out up to there)."""

    marks: list[tuple[int, int]] = field(default_factory=list)
    total_ms: int = 0

    def add(self, at_ms: int, left_out_ms: int) -> None:
        if left_out_ms > 0:
            self.total_ms += left_out_ms
            self.marks.append((at_ms, self.total_ms))

    def original(self, ms: int) -> int:
        """A time of the stream (ms) as a time of the file."""
        i = bisect.bisect_right(self.marks, (ms, self.total_ms)) - 1
        return ms + (self.marks[i][1] if i >= 0 else 0)


@dataclass
class Levels:
    """What the channels' streams measured: every frame's level per channel (channel 0's stream measures them;
    whole dB, int16), and the time each stream left out (``skips``)."""

    rate: int
    skips: dict[int, Skips] = field(default_factory=dict)
    _parts: list[np.ndarray] = field(default_factory=list)
    _all: np.ndarray | None = None

    def add(self, levels: np.ndarray) -> None:
        self._parts.append(np.rint(levels).astype(np.int16))
        self._all = None

    def table(self) -> np.ndarray:
        if self._all is None:
            self._all = np.concatenate(self._parts) if self._parts else np.zeros((0, 1), dtype=np.int16)
            self._parts = [self._all]
        return self._all

    def quieter_by(self, channel: int, other: int, start_ms: int, end_ms: int) -> float:
        """How much quieter ``channel`` is than ``other`` over a span, in dB (mean of frame levels; 0 unknown)."""
        table = self.table()
        first = max(0, start_ms // FRAME_MS)
        last = min(len(table), max(first + 1, -(-end_ms // FRAME_MS)))
        if first >= last or max(channel, other) >= table.shape[1]:
            return 0.0
        span = table[first:last].astype(np.float32)
        return float(span[:, other].mean() - span[:, channel].mean())


def gated(
    chunks: Iterable[bytes], channels: int, channel: int, rate: int, levels: Levels | None = None
) -> Iterator[bytes]:
    """``channel`` of ``chunks`` (interleaved s16le of ``channels``; whole 20 ms frames but the last) as mono
    PCM, silenced where another channel is voiced and ``GATE_DB`` louder; of a silenced run longer than twice
    ``KEEP_MS``, only that much at each end is sent, and ``levels.skips[channel]`` records the time left out.
    ``levels`` also gets every frame's levels (when the stream is channel 0's: one stream measures them)."""
    step = rate * FRAME_MS // 1000
    last_gain = 1.0
    keep = KEEP_MS // FRAME_MS
    skips = levels.skips.setdefault(channel, Skips()) if levels is not None else None
    sent = run = dropped = drop_at = 0  # samples sent; frames in the silenced run, and left out of it
    for block in _blocks(chunks, channels):
        lv = frame_levels(block, rate)
        if levels is not None and channel == 0:
            levels.add(lv)
        mine = block[:, channel].astype(np.float32)
        silenced = np.zeros(len(lv), dtype=bool)
        if channels > 1:
            others = np.delete(lv, channel, axis=1).max(axis=1)
            silenced = (others > VOICED_DBFS) & (others - lv[:, channel] >= GATE_DB)
            gain = np.where(silenced, 0.0, 1.0)
            if last_gain != 1.0 or not gain.all():
                # Within each frame, a ramp from the previous frame's gain (the last block's, first) to its own.
                before = np.repeat(np.concatenate(([last_gain], gain[:-1])), step)[: len(mine)]
                after = np.repeat(gain, step)[: len(mine)]
                ramp = (np.arange(len(mine)) % step + 1) / step
                mine *= before + (after - before) * ramp
            last_gain = float(gain[-1])
        pcm = np.clip(mine, -32768, 32767).astype("<i2")
        if skips is None or not (silenced.any() or run):
            sent += len(pcm)
            yield pcm.tobytes()
            continue
        pieces = []
        for f, quiet in enumerate(silenced):
            frame = pcm[f * step : (f + 1) * step]
            if quiet:
                run += 1
                if run > keep:
                    drop_at = sent if not dropped else drop_at
                    dropped += 1
                    continue
            else:
                if dropped:  # the run's end, as silence, then the time left out
                    pad = min(dropped, keep)
                    pieces.append(np.zeros(pad * step, dtype="<i2"))
                    sent += pad * step
                    skips.add(drop_at * 1000 // rate, (dropped - pad) * FRAME_MS)
                    dropped = 0
                run = 0
            pieces.append(frame)
            sent += len(frame)
        if pieces:
            yield np.concatenate(pieces).tobytes()
    if skips is not None and dropped:
        skips.add(drop_at * 1000 // rate, dropped * FRAME_MS)
