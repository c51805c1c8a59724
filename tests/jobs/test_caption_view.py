"""What `voxbeam caption` prints: the partial rewritten in place on a terminal, never wider than it; lines elsewhere."""

from __future__ import annotations

import io
import json

from voxbeam.client.live import LiveEvent
from voxbeam.jobs.caption_view import EventLines, LiveLine, clock, fit


def _event(text: str, final: bool = False, start: int = 0, end: int = 1200) -> LiveEvent:
    return LiveEvent(final, text, start, end, 250, "req_1", 0.9 if final else None, "en" if final else None)


def _screen(raw: str) -> list[str]:
    """The lines a terminal shows for ``raw``: carriage return, erase to the end of the line, newline."""
    lines, row, col = [""], 0, 0
    i = 0
    while i < len(raw):
        if raw.startswith("\x1b[K", i):
            lines[row] = lines[row][:col]
            i += 3
            continue
        ch = raw[i]
        if ch == "\r":
            col = 0
        elif ch == "\n":
            lines.append("")
            row, col = row + 1, 0
        else:
            lines[row] = lines[row][:col] + ch + lines[row][col + 1 :]
            col += 1
        i += 1
    return lines


def test_the_partial_is_rewritten_in_place_and_each_final_gets_its_own_line():
    out = io.StringIO()
    line = LiveLine(out, width=lambda: 80)
    line(_event("he might"))
    line(_event("he might even have"))
    line(_event("He might even have been made amiable himself.", final=True, start=258, end=3038))
    line(_event("and then"))
    raw = out.getvalue()
    assert raw.count("\n") == 1  # partials never end a line
    assert _screen(raw) == ["[0:00.2-0:03.0] He might even have been made amiable himself.", "and then"]
    line.close()  # the stream ended in mid-utterance: its partial is cleared
    assert _screen(out.getvalue()) == ["[0:00.2-0:03.0] He might even have been made amiable himself.", ""]


def test_a_partial_wider_than_the_terminal_keeps_its_newest_words_on_one_line():
    out = io.StringIO()
    line = LiveLine(out, width=lambda: 21)
    line(_event("one two three four five six seven"))
    assert line.showing.startswith("…") and line.showing.endswith("six seven") and len(line.showing) == 20
    assert fit("short", 20) == "short" and fit("abcdef", 1) == "f" and fit("abcdef", 4) == "…def"


def test_elsewhere_one_line_per_event_as_text_or_json():
    text = io.StringIO()
    view = EventLines(text)
    view(_event("he might"))
    view(_event("He might.", final=True, start=61_500, end=3_725_000))
    assert text.getvalue() == "partial: he might\nfinal: [1:01.5-1:02:05.0] He might.\n"
    lines = io.StringIO()
    view = EventLines(lines, "jsonl")
    view(_event("he might"))
    view(_event("He might.", final=True))
    partial, final = map(json.loads, lines.getvalue().splitlines())
    assert partial == {
        "type": "partial",
        "text": "he might",
        "start_ms": 0,
        "end_ms": 1200,
        "latency_ms": 250,
        "request_id": "req_1",
    }
    assert final["type"] == "final" and final["confidence"] == 0.9 and final["language"] == "en"
    assert clock(0) == "0:00.0" and clock(59_999) == "0:59.9"
