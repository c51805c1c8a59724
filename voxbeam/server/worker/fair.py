"""The order in which sessions' work reaches the engines: live first, then API key by key, then session by session.

One client must not starve the others: a key that uploads 40 files at once gets its turn as often
as a key that sends one short request, not 40 times as often, and a request's work never waits
behind another session's whole backlog. Each session's own items keep their order.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Lane:
    """Whose work an item is: its session (order kept within it), its API key, whether it is live."""

    session: str
    key: str = ""
    live: bool = False


class FairQueue(Generic[T]):
    """Items taken in turn: the live class before the bulk one; within a class key by key; within a key
    session by session; within a session in the order they came.

    A session's items stay in the class they were queued in until its queue empties, so a session
    that turns from live to bulk (or back) never has its items reordered.
    """

    def __init__(self) -> None:
        # class (live?) -> key -> session -> items, each level in its turn order.
        self._classes: dict[bool, collections.OrderedDict[str, collections.OrderedDict[str, collections.deque[T]]]]
        self._classes = {True: collections.OrderedDict(), False: collections.OrderedDict()}
        self._where: dict[str, tuple[bool, str]] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[T]:
        """Every item held (in no particular order)."""
        for keys in self._classes.values():
            for sessions in keys.values():
                for items in sessions.values():
                    yield from items

    def put(self, item: T, lane: Lane) -> None:
        live, key = self._where.setdefault(lane.session, (lane.live, lane.key))
        sessions = self._classes[live].setdefault(key, collections.OrderedDict())
        sessions.setdefault(lane.session, collections.deque()).append(item)
        self._size += 1

    def take(self, skip: Callable[[T], bool] | None = None) -> T | None:
        """The next item in turn (None when there is none); items ``skip`` says are stale are dropped."""
        while self._size:
            item = self._pop()
            if skip is None or not skip(item):
                return item
        return None

    def take_many(self, n: int) -> list[T]:
        """Up to ``n`` items, in turn."""
        return [self._pop() for _ in range(min(n, self._size))]

    def _pop(self) -> T:
        for live in (True, False):
            keys = self._classes[live]
            if not keys:
                continue
            key, sessions = next(iter(keys.items()))
            session, items = next(iter(sessions.items()))
            item = items.popleft()
            self._size -= 1
            if items:
                sessions.move_to_end(session)
            else:
                del sessions[session]
                del self._where[session]
            if sessions:
                keys.move_to_end(key)
            else:
                del keys[key]
            return item
        raise IndexError("take from an empty FairQueue")

    def prune(self, stale: Callable[[T], bool]) -> None:
        """Drop every item ``stale`` says is no longer wanted, keeping the turn order of the rest."""
        for live in (True, False):
            keys = self._classes[live]
            for key in list(keys):
                sessions = keys[key]
                for session in list(sessions):
                    kept = collections.deque(item for item in sessions[session] if not stale(item))
                    self._size -= len(sessions[session]) - len(kept)
                    if kept:
                        sessions[session] = kept
                    else:
                        del sessions[session]
                        del self._where[session]
                if not sessions:
                    del keys[key]

    def clear(self) -> list[T]:
        """Empty the queue; returns what it held."""
        held = [item for keys in self._classes.values() for s in keys.values() for q in s.values() for item in q]
        for keys in self._classes.values():
            keys.clear()
        self._where.clear()
        self._size = 0
        return held
