"""Issue 33: the order in which sessions' work reaches the engines (voxbeam/server/worker/fair.py)."""

from __future__ import annotations

from voxbeam.server.worker.fair import FairQueue, Lane


def drain(q: FairQueue[str]) -> list[str]:
    out = []
    while (item := q.take()) is not None:
        out.append(item)
    return out


def test_a_key_with_forty_sessions_gets_its_turn_as_often_as_a_key_with_one():
    q: FairQueue[str] = FairQueue()
    for s in range(40):
        for n in range(3):
            q.put(f"a{s}.{n}", Lane(f"a{s}", "heavy"))
    q.put("b0.0", Lane("b0", "light"))
    q.put("b0.1", Lane("b0", "light"))
    order = drain(q)
    # The light key's two items come second and fourth, not after the heavy key's 120.
    assert order.index("b0.0") == 1 and order.index("b0.1") == 3, order[:6]
    assert len(order) == 122


def test_live_work_comes_first_and_each_sessions_items_keep_their_order():
    q: FairQueue[str] = FairQueue()
    for n in range(5):
        q.put(f"bulk{n}", Lane("s1", "k1"))
    q.put("live0", Lane("s2", "k2", live=True))
    q.put("live1", Lane("s2", "k2", live=True))
    q.put("bulk5", Lane("s1", "k1", live=True))  # s1 turns live with items still queued: it keeps its class
    order = drain(q)
    assert order[:2] == ["live0", "live1"]
    assert order[2:] == [f"bulk{n}" for n in range(6)]


def test_sessions_of_one_key_take_turns():
    q: FairQueue[str] = FairQueue()
    for s in "xyz":
        for n in range(2):
            q.put(f"{s}{n}", Lane(s, "k"))
    assert drain(q) == ["x0", "y0", "z0", "x1", "y1", "z1"]


def test_stale_items_are_skipped_and_pruned():
    q: FairQueue[str] = FairQueue()
    for n in range(6):
        q.put(f"i{n}", Lane(f"s{n % 2}", "k"))
    q.prune(lambda item: item in ("i0", "i2"))
    assert len(q) == 4
    assert q.take(skip=lambda item: item == "i4") == "i1"  # s0's turn: i4, skipped; then s1's: i1
    assert drain(q) == ["i3", "i5"]
    assert len(q) == 0 and q.take() is None
