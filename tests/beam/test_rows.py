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
