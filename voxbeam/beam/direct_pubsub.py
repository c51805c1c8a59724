"""Local streaming runs (Beam's DirectRunner): pulling waits for room, and Ctrl-C drains the read.

The DirectRunner reads Pub/Sub itself (``_PubSubReadEvaluator``): up to 10 messages a bundle,
acknowledged at once, never ending. So a burst of notifications would sit in memory, and Ctrl-C
could only cancel the pipeline with its windows unwritten. While a ``PullControl`` is active, its
reads instead pull only what the run has ``room()`` for, wait at most ``PULL_WAIT_S``, hold the
watermark at the newest publish time pulled while a backlog waits (so a backlog's rows are not late),
and once ``stop`` is set pull nothing more and report the read finished: the pipeline then drains
as a bounded one does. Each behaviour, and why: docs/streaming.md.

A message pulled and not done at a stop becomes an ``INTERRUPTED`` dead letter (``_dofns``); a
process killed outright loses what it had pulled. The patch touches a private class of the
DirectRunner, which only runs locally; if a Beam release changes it, ``install`` says so and local
streams run unpatched (no flow control, and a stop cancels the pipeline instead of draining it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_LOG = logging.getLogger(__name__)
PULL_WAIT_S = 2.0
MAX_PULL = 100
_IDLE_S = 0.2  # between looks while there is no room
_active: PullControl | None = None
_lock = threading.Lock()
_installed: bool | None = None


@dataclass
class PullControl:
    """How a local stream's reads behave: ``room()`` messages may be pulled now; ``stop`` ends the read."""

    room: Callable[[], int]
    stop: threading.Event
    on_pulled: Callable[[int], None] = lambda n: None
    watermark: float = 0.0  # seconds since the epoch; never goes back

    def advance(self, pulled: list[float], asked: int) -> float:
        """The read's watermark after a pull of ``asked`` that got messages published at ``pulled``."""
        if asked > 0 and len(pulled) < asked:  # the subscription had no more: nothing older waits
            candidate = time.time()
        elif pulled:  # a full pull: more may wait, published after these
            candidate = max(pulled)
        else:  # no room to pull: what waits is held back
            candidate = self.watermark or time.time()
        self.watermark = max(self.watermark, candidate)
        return self.watermark


def activate(control: PullControl | None) -> bool:
    """Make ``control`` govern this process's Pub/Sub reads (None: back to Beam's own); whether it can."""
    global _active
    with _lock:
        _active = control
    return control is None or install()


def install() -> bool:
    """Patch the DirectRunner's Pub/Sub read (once); False when this Beam has no such evaluator."""
    global _installed
    with _lock:
        if _installed is not None:
            return _installed
        try:
            from apache_beam.runners.direct import transform_evaluator as te

            evaluator = te._PubSubReadEvaluator
            original = evaluator.finish_bundle
            te.TransformResult  # noqa: B018 - needed below; fail here if it moved
        except (ImportError, AttributeError) as exc:
            _LOG.warning("local streams run without flow control or drain: %s", exc)
            _installed = False
            return False

        def finish_bundle(self: Any) -> Any:
            control = _active
            if control is None:
                return original(self)
            return _finish_bundle(self, control, te)

        setattr(evaluator, "finish_bundle", finish_bundle)  # noqa: B010 - a method, patched
        _installed = True
        return True


def _finish_bundle(evaluator: Any, control: PullControl, te: Any) -> Any:
    from apache_beam import pvalue
    from apache_beam.transforms.window import GlobalWindows
    from apache_beam.utils.timestamp import MAX_TIMESTAMP, Timestamp

    transform = evaluator._applied_ptransform
    if control.stop.is_set():  # finished: no unprocessed bundle, the watermark at the end of time
        return te.TransformResult(evaluator, [], [], None, {None: MAX_TIMESTAMP})
    room = min(MAX_PULL, control.room())
    messages = _pull(evaluator, room) if room > 0 else []
    if room <= 0:
        time.sleep(_IDLE_S)
    watermark = control.advance([float(t) for t, _ in messages], room if room > 0 else 0)
    bundles = []
    if messages:
        control.on_pulled(len(messages))
        bundle = evaluator._evaluation_context.create_bundle(list(evaluator._outputs)[0])
        for timestamp, message in messages:
            element = message if transform.transform._source.with_attributes else message.data
            bundle.output(GlobalWindows.windowed_value(element, timestamp=timestamp))
        bundles = [bundle]
    inputs = transform.inputs[0] if transform.inputs else pvalue.PBegin(transform.transform.pipeline)
    unprocessed = evaluator._evaluation_context.create_bundle(inputs)
    return te.TransformResult(evaluator, bundles, [unprocessed], None, {None: Timestamp.of(watermark)})


def _pull(evaluator: Any, n: int) -> list[tuple[Any, Any]]:
    """Up to ``n`` messages (publish time, PubsubMessage), acknowledged; waits at most PULL_WAIT_S."""
    from apache_beam.io.gcp.pubsub import PubsubMessage
    from apache_beam.utils.timestamp import Timestamp
    from google.api_core import exceptions

    client = evaluator._get_subscriber_client(evaluator._applied_ptransform)
    try:
        response = client.pull(subscription=evaluator._sub_name, max_messages=n, timeout=PULL_WAIT_S)
    except (exceptions.DeadlineExceeded, exceptions.RetryError):
        return []
    received = list(response.received_messages)
    if received:
        client.acknowledge(subscription=evaluator._sub_name, ack_ids=[r.ack_id for r in received])
    return [
        (Timestamp.from_utc_datetime(r.message.publish_time), PubsubMessage._from_message(r.message)) for r in received
    ]
