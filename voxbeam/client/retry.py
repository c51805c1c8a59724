"""One record's retry budget: how long it has been failing or waiting for the service."""

from __future__ import annotations

import time

from voxbeam.client.config import RetryPolicy


class RetryClock:
    """Runs from a record's first failure since its last progress, or from the outage it waits out.

    ``start`` is called on a transient failure, ``wait_out(since)`` while every endpoint is
    unavailable (the clock then counts from the outage's start if that is earlier), and
    ``reset`` when the record makes progress (an exchange succeeded).
    """

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.started: float | None = None

    def __repr__(self) -> str:
        state = "idle" if self.started is None else f"{self.elapsed():.1f}s of {self.policy.budget:g}s"
        return f"<RetryClock {state}>"

    @property
    def running(self) -> bool:
        return self.started is not None

    def start(self) -> None:
        if self.started is None:
            self.started = time.monotonic()

    def wait_out(self, since: float) -> None:
        """The record waits for an outage that began at ``since`` (monotonic)."""
        if self.started is None or since < self.started:
            self.started = since

    def reset(self) -> None:
        self.started = None

    def elapsed(self) -> float:
        return 0.0 if self.started is None else time.monotonic() - self.started

    def remaining(self) -> float:
        return self.policy.budget - self.elapsed()

    @property
    def deadline(self) -> float | None:
        """Monotonic time the budget runs out, if the clock is running."""
        return None if self.started is None else self.started + self.policy.budget

    def expired(self) -> bool:
        return self.started is not None and self.remaining() <= 0
