"""The one place rows become Parquet files: transcripts, manifests and dead letters, batch and streaming.

Batch: a run's rows of one kind go under ``<output>/<kind>/run=<run_id>/`` (Beam's
``WriteToParquet``, sharded): a run is one partition. Streaming: under
``<output>/stream/<kind>/date=YYYY-MM-DD/hour=HH/window=HHMMSS/``, one file per window and pane,
named after the run (``part-<run_id>-<pane>.parquet``), so no file is ever rewritten. The two
layouts live under different prefixes because a BigQuery external table with hive partitioning
wants one partition-key layout under its prefix.

Streaming rows are windowed by their element timestamp (the notification's publish time) in fixed
windows. A window is written when the watermark passes its end. Late rows (published before the
watermark) are never dropped: the allowed lateness is unbounded, and each late row is written at
once as a pane of its own (a file in its window's partition). Late rows are rare, since work in
flight holds the watermark back: a notification published long after its object was written is
not late (its timestamp is the publish time). A processing-time delay would batch them, but it
leaves a timer that a drained pipeline or a TestStream clock never reaches.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import time
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.parquetio import WriteToParquet
from apache_beam.metrics import Metrics
from apache_beam.transforms import trigger, window
from apache_beam.utils.timestamp import Duration

from voxbeam.beam import progress, storage
from voxbeam.beam._dofns import NAMESPACE, Row
from voxbeam.beam.captions import CAPTION_FORMATS, build_cues
from voxbeam.beam.rows import caption_basename

STREAM = "stream"
DEFAULT_WINDOW_S = 60.0
# "Unbounded": ten years. A window's trigger state is a few bytes, kept per window.
ALLOWED_LATENESS_S = 10 * 365 * 24 * 3600
PARQUET_TYPE = "application/vnd.apache.parquet"


def partition(timestamp: float, window_s: float) -> str:
    """The hive partition path of the fixed window holding ``timestamp`` (seconds since the epoch, UTC)."""
    start = dt.datetime.fromtimestamp(timestamp - timestamp % window_s, dt.UTC)
    return f"date={start:%Y-%m-%d}/hour={start:%H}/window={start:%H%M%S}"


def stream_prefix(output: str, kind: str) -> str:
    return storage.join(output, STREAM, kind)


class WriteRows(beam.PTransform):
    """Rows of one ``kind`` (``transcripts``, ``manifest``, ``dead_letters``) to Parquet in ``schema``.

    ``window_s`` None: a batch run's partition (``run=<run_id>``). Otherwise: fixed windows of that
    many seconds, written as they close (see the module's docstring); a local run's tracker
    (``progress_id``) gets each file's publish-to-row latencies.
    """

    def __init__(
        self,
        output: str,
        kind: str,
        schema: pa.Schema,
        run_id: str,
        *,
        window_s: float | None = None,
        num_shards: int = 0,
        progress_id: str | None = None,
    ) -> None:
        super().__init__()
        self._output = output
        self._kind = kind
        self._schema = schema
        self._run_id = run_id
        self._window_s = window_s
        self._num_shards = num_shards
        self._progress_id = progress_id

    def expand(self, rows: Any) -> Any:
        if self._window_s is None:
            return rows | "WriteParquet" >> WriteToParquet(
                storage.join(self._output, self._kind, f"run={self._run_id}", "part"),
                self._schema,
                file_name_suffix=".parquet",
                num_shards=self._num_shards,
                record_batch_size=256,
            )
        return (
            rows
            | "Stamp" >> beam.Map(_stamped, self._kind)
            | "Window"
            >> beam.WindowInto(
                window.FixedWindows(self._window_s),
                trigger=trigger.AfterWatermark(late=trigger.AfterCount(1)),
                accumulation_mode=trigger.AccumulationMode.DISCARDING,
                allowed_lateness=Duration(seconds=ALLOWED_LATENESS_S),
            )
            | "Group" >> beam.GroupByKey()
            | "WriteParquet"
            >> beam.ParDo(
                WriteWindowFn(stream_prefix(self._output, self._kind), self._schema, self._run_id, self._progress_id)
            )
        )


def _stamped(row: dict[str, Any], kind: str, timestamp: Any = beam.DoFn.TimestampParam) -> tuple[str, Any]:
    """(kind, (publish time, row)): one key per kind, and each row's time kept through the grouping."""
    return kind, (float(timestamp), row)


class WriteWindowFn(beam.DoFn):
    """One window's pane of rows to one Parquet file in the window's partition; yields its URI."""

    def __init__(self, prefix: str, schema: pa.Schema, run_id: str, progress_id: str | None) -> None:
        self._prefix = prefix
        self._schema = schema
        self._run_id = run_id
        self._progress_id = progress_id

    def setup(self) -> None:
        storage.configure_beam_for_emulator()
        self._latency = Metrics.distribution(NAMESPACE, "publish_to_row_ms")
        self._files = Metrics.counter(NAMESPACE, "stream_files_written")

    def process(
        self,
        keyed: tuple[str, Iterable[tuple[float, dict[str, Any]]]],
        win: Any = beam.DoFn.WindowParam,
        pane: Any = beam.DoFn.PaneInfoParam,
    ) -> Iterator[str]:
        stamped = sorted(keyed[1], key=lambda item: json.dumps(item[1], sort_keys=True, default=str))
        if not stamped:
            return
        start = float(win.start)
        folder = storage.join(self._prefix, partition(start, float(win.end) - start))
        uri = storage.join(folder, f"part-{self._run_id}-{pane.index}.parquet")
        table = pa.Table.from_pylist([row for _, row in stamped], schema=self._schema)
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        storage.write_object(uri, buffer.getvalue(), content_type=PARQUET_TYPE)
        now = time.time()
        latencies = [max(0.0, now - published) for published, _ in stamped]
        for seconds in latencies:
            self._latency.update(int(seconds * 1000))
        self._files.inc()
        tracker = progress.lookup(self._progress_id)
        if tracker is not None and tracker.stream is not None:
            tracker.stream.add_written(latencies)
        yield uri


class WriteTextFilesFn(beam.DoFn):
    """Writes captions (or any small text object) beside the transcripts: under ``prefix``, or with
    ``window_s``, under the partition of the row's window below it (``sink.partition``)."""

    def __init__(self, prefix: str, formats: tuple[str, ...], window_s: float | None = None) -> None:
        self._prefix = prefix
        self._formats = formats
        self._window_s = window_s

    def setup(self) -> None:
        storage.configure_beam_for_emulator()

    def process(self, row: Row, timestamp: Any = beam.DoFn.TimestampParam) -> Iterator[str]:
        cues = build_cues(row["words"])
        name = caption_basename(row["source_uri"])
        prefix = self._prefix
        if self._window_s is not None:
            prefix = storage.join(prefix, partition(float(timestamp), self._window_s))
        for fmt in self._formats:
            render, content_type = CAPTION_FORMATS[fmt]
            uri = storage.join(prefix, f"{name}.{fmt}")
            storage.write_object(uri, render(cues).encode("utf-8"), content_type=content_type)
            yield uri
