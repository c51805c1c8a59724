"""Row and name builders of beam/rows.py."""

from __future__ import annotations

import random
import re

from voxbeam.beam.rows import object_name

_PATH_SAFE = re.compile(r"[A-Za-z0-9._~-]+")


def _random_id(rng: random.Random) -> str:
    alphabets = ["ab_-.", "ab/_-", "aé中 /\\:", "AaBb09", "._~-", "\ud800a"]
    alphabet = rng.choice(alphabets)
    return "".join(rng.choice(alphabet) for _ in range(rng.choice([1, 2, 3, 8, 99, 100, 101, 300])))


def test_ten_thousand_random_ids_get_ten_thousand_distinct_safe_names():
    rng = random.Random(17)
    # Neighbours of the old scheme's collisions: an id and the name the old scheme gave another.
    ids = {"a/b", "a_b-c14cddc033", "a_b", "a_b~" + "0" * 16}
    while len(ids) < 10_000:
        ids.add(_random_id(rng))
    assert len(ids) == 10_000
    names = {object_name(i) for i in ids}
    assert len(names) == len(ids)
    for name in names:
        assert _PATH_SAFE.fullmatch(name) and name not in (".", "..") and len(name) <= 100, name


def test_short_safe_ids_are_their_own_names():
    assert object_name("line-001") == "line-001"
    assert object_name("a.b") == "a.b"
    assert object_name("x" * 100) == "x" * 100
    assert object_name("x" * 101) != "x" * 101


def test_talk_summary_counts_each_speakers_talk_the_silence_and_the_overlap():
    from voxbeam.beam.rows import talk_summary
    from voxbeam.client.results import Segment, Word

    segments = [
        Segment("a", 0, 1000, 1.0, (), "S1"),
        Segment("b", 800, 1000, 1.0, (), "S2"),
        Segment("c", 900, 200, 1.0, (), "S3"),
        Segment("d", 3000, 500, 1.0, (), "S1"),
    ]
    words = [Word("a", 0, 10, 1.0, "S1"), Word("b", 800, 10, 1.0, "S2"), Word("d", 3000, 10, 1.0, "S1")]
    summary = talk_summary(segments, words, 5000)
    assert summary["speakers"] == [
        {"speaker": "S1", "channel": None, "talk_ms": 1500, "words": 2},
        {"speaker": "S2", "channel": None, "talk_ms": 1000, "words": 1},
        {"speaker": "S3", "channel": None, "talk_ms": 200, "words": 0},
    ]
    # Speech spans 0-1800 and 3000-3500; two or more speak at once over 800-1100.
    assert (summary["silence_ms"], summary["overlap_ms"]) == (5000 - 2300, 300)
    plain = talk_summary([Segment("a", 0, 1000, 1.0)], [Word("a", 0, 10, 1.0)], 2000)
    assert plain == {
        "speakers": [{"speaker": None, "channel": None, "talk_ms": 1000, "words": 1}],
        "silence_ms": 1000,
        "overlap_ms": 0,
    }
