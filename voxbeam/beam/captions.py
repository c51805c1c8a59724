"""SRT and WebVTT captions from word timings.

Cues follow common broadcast guidance: at most two lines of ``max_chars`` characters, at most
``max_duration_ms`` on screen, and a new cue after a pause or at a segment boundary. With speakers
(words diarized) or channels (transcribed apart), a new cue at each change of speaker or channel, labelled
``Speaker 1`` for ``S1``, ``Channel 0`` (``Channel 0 Speaker 1`` diarized): WebVTT's voice span ``<v Speaker 1>``,
SRT's ``[Speaker 1]`` before the first line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Cue:
    start_ms: int
    end_ms: int
    lines: tuple[str, ...]
    # Who speaks in the cue ("Speaker 1"), when the words were diarized.
    speaker: str | None = None


def speaker_name(label: str | None, channel: int | None = None) -> str | None:
    """Who speaks as captions show it: "S1" is "Speaker 1", a channel's "C0-S1" "Channel 0 Speaker 1"; a
    channel's words without a speaker "Channel 0" (others as they are; None: nobody to name)."""
    if channel is not None and label is not None and label.startswith(f"C{channel}-"):
        return f"Channel {channel} {speaker_name(label[len(f'C{channel}-') :])}"
    if label is None:
        return None if channel is None else f"Channel {channel}"
    return f"Speaker {label[1:]}" if label[:1] == "S" and label[1:].isdigit() else label


def build_cues(
    words: Iterable[Mapping[str, Any]],
    *,
    max_chars: int = 42,
    max_lines: int = 2,
    max_duration_ms: int = 6000,
    max_gap_ms: int = 1000,
) -> list[Cue]:
    """Group words (dicts with word, offset_ms, duration_ms) into caption cues."""
    cues: list[Cue] = []
    lines: list[list[str]] = [[]]
    start = end = 0
    speaker: tuple[str | None, int | None] = (None, None)

    def line_len(line: Sequence[str]) -> int:
        return sum(len(w) for w in line) + max(0, len(line) - 1)

    def close() -> None:
        if any(lines):
            name = speaker_name(*speaker)
            cues.append(Cue(start, end, tuple(" ".join(line) for line in lines if line), name))

    for w in words:
        text = str(w["word"]).strip()
        if not text:
            continue
        w_start = int(w["offset_ms"])
        w_end = w_start + int(w["duration_ms"])
        who = (w.get("speaker"), w.get("channel"))
        if any(lines):
            too_long_on_screen = w_end - start > max_duration_ms
            paused = w_start - end > max_gap_ms
            fits = line_len(lines[-1] + [text]) <= max_chars
            if who != speaker or too_long_on_screen or paused or (not fits and len(lines) >= max_lines):
                close()
                lines = [[]]
            elif not fits:
                lines.append([])
        if not any(lines):
            start, speaker = w_start, who
        lines[-1].append(text)
        end = max(end, w_end)
    close()
    return cues


def _stamp(ms: int, sep: str) -> str:
    h, rem = divmod(max(0, ms), 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, milli = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{milli:03d}"


def to_srt(cues: Sequence[Cue]) -> str:
    blocks = [
        f"{i}\n{_stamp(c.start_ms, ',')} --> {_stamp(c.end_ms, ',')}\n"
        + (f"[{c.speaker}] " if c.speaker else "")
        + "\n".join(c.lines)
        for i, c in enumerate(cues, start=1)
    ]
    return "\n\n".join(blocks) + ("\n" if blocks else "")


def to_vtt(cues: Sequence[Cue]) -> str:
    blocks = [
        f"{_stamp(c.start_ms, '.')} --> {_stamp(c.end_ms, '.')}\n"
        + (f"<v {c.speaker}>" if c.speaker else "")
        + "\n".join(c.lines)
        for c in cues
    ]
    return "WEBVTT\n\n" + "\n\n".join(blocks) + ("\n" if blocks else "")


CAPTION_FORMATS = {"srt": (to_srt, "application/x-subrip"), "vtt": (to_vtt, "text/vtt")}
