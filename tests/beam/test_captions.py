"""SRT and WebVTT cues from word timings."""

import re

from voxbeam.beam.captions import build_cues, to_srt, to_vtt


def words(spec):
    """[(word, start_ms, end_ms)] -> rows as the transcript schema has them."""
    return [{"word": w, "offset_ms": s, "duration_ms": e - s, "confidence": 0.9} for w, s, e in spec]


def test_short_sentence_is_one_cue():
    cues = build_cues(words([("hello", 100, 400), ("world", 450, 900)]))
    assert len(cues) == 1
    assert cues[0].start_ms == 100 and cues[0].end_ms == 900 and cues[0].lines == ("hello world",)


def test_lines_and_durations_are_bounded():
    spec = [(f"word{i:02d}", i * 300, i * 300 + 250) for i in range(80)]
    cues = build_cues(words(spec), max_chars=20, max_lines=2, max_duration_ms=4000)
    assert len(cues) > 1
    for cue in cues:
        assert len(cue.lines) <= 2
        assert all(len(line) <= 20 for line in cue.lines)
        assert cue.end_ms - cue.start_ms <= 4000
    joined = " ".join(" ".join(c.lines) for c in cues).split()
    assert joined == [w for w, _, _ in spec]


def test_pause_starts_a_new_cue():
    cues = build_cues(words([("one", 0, 300), ("two", 400, 700), ("three", 3000, 3400)]), max_gap_ms=1000)
    assert [c.lines for c in cues] == [("one two",), ("three",)]


def test_srt_and_vtt_formats():
    cues = build_cues(words([("hello", 61_000, 61_500), ("again", 3_600_000, 3_600_400)]))
    srt = to_srt(cues)
    assert srt.startswith("1\n00:01:01,000 --> 00:01:01,500\nhello\n\n2\n01:00:00,000 --> 01:00:00,400\nagain")
    vtt = to_vtt(cues)
    assert vtt.startswith("WEBVTT\n\n00:01:01.000 --> 00:01:01.500\nhello")
    assert len(re.findall(r"-->", vtt)) == 2
    assert to_srt([]) == "" and to_vtt([]) == "WEBVTT\n\n"


def test_a_new_cue_at_each_change_of_speaker_labelled_in_both_formats():
    spec = [("Yes,", 0, 300, "S1"), ("indeed.", 300, 700, "S1"), ("No.", 800, 1000, "S2"), ("Why?", 1100, 1400, "S1")]
    ws = [{**w, "speaker": s} for w, (*_, s) in zip(words([x[:3] for x in spec]), spec, strict=True)]
    cues = build_cues(ws)
    assert [(c.speaker, c.lines) for c in cues] == [
        ("Speaker 1", ("Yes, indeed.",)),
        ("Speaker 2", ("No.",)),
        ("Speaker 1", ("Why?",)),
    ]
    assert "<v Speaker 2>No." in to_vtt(cues) and "[Speaker 1] Why?" in to_srt(cues)
    # Not diarized: no label, as before.
    assert "Speaker" not in to_vtt(build_cues(words([x[:3] for x in spec])))
