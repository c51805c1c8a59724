"""Pub/Sub messages to the records the jobs take, once per object version or text record.

Audio: Cloud Storage notifications (``eventType`` ``OBJECT_FINALIZE``; other events are counted
and ignored), a plain ``gs://`` URI (or a local path), or JSON ``{"uri": ...}`` (optionally with
``"generation"``; a record's own controls, as a batch job reads them, are refused). Text: one JSON
record per message (``id``, ``text``, overrides), as the batch job reads from JSON lines. Anything
else becomes an ``INVALID_INPUT`` dead letter that carries the raw message.

Pub/Sub delivers at least once and Cloud Storage may notify an object twice, so records are
deduplicated by a stateful DoFn keyed by (URI, generation), or (id, text) for text, whose state
expires ``dedup_window_s`` after the first delivery's publish time (an event-time timer): a
redelivery within that window is dropped and counted, never a dead letter.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.coders import BooleanCoder
from apache_beam.io.filesystem import FileSystem
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Duration

from voxbeam.beam import progress, storage
from voxbeam.beam._dofns import DEAD_LETTERS, NAMESPACE
from voxbeam.beam.audio_records import FIELDS
from voxbeam.beam.rows import dead_letter, text_sha256
from voxbeam.beam.text_records import json_record, record_problem
from voxbeam.errors import InputError

FINALIZE = "OBJECT_FINALIZE"
DEFAULT_DEDUP_WINDOW_S = 3600.0
RECORDS = "records"
STAGE = "read"
_RAW_CHARS = 10_000  # of a message's body kept in its dead letter


@dataclass(frozen=True)
class Notice:
    """An object a message names: its URI and, when the message said, its generation and size."""

    uri: str
    generation: str | None = None
    size: int | None = None


def message_parts(message: Any) -> tuple[bytes, dict[str, str]]:
    """(body, attributes) of a ``PubsubMessage`` or a bare body (bytes or str)."""
    if isinstance(message, bytes):
        return message, {}
    if isinstance(message, str):
        return message.encode(), {}
    return bytes(message.data or b""), dict(message.attributes or {})


def raw(message: Any) -> dict[str, Any]:
    """The message as a dead letter's ``input`` carries it (text when it is UTF-8, else base64)."""
    data, attributes = message_parts(message)
    try:
        body: dict[str, str] = {"data": data.decode("utf-8")[:_RAW_CHARS]}
    except UnicodeDecodeError:
        body = {"data_base64": base64.b64encode(data[:_RAW_CHARS]).decode()}
    return {"message": {**body, "attributes": attributes}}


def parse_audio(message: Any) -> Notice | str:
    """The object ``message`` names, or the event type of a notification to ignore; ``InputError`` when neither."""
    data, attributes = message_parts(message)
    if "eventType" in attributes:  # a Cloud Storage notification
        event = attributes["eventType"]
        if event != FINALIZE:
            return event
        payload = _json(data) if data else None
        payload = payload if isinstance(payload, dict) else {}
        bucket = attributes.get("bucketId") or payload.get("bucket")
        name = attributes.get("objectId") or payload.get("name")
        if not bucket or not name:
            raise InputError("a Cloud Storage notification without bucketId and objectId")
        generation = attributes.get("objectGeneration") or payload.get("generation")
        return Notice(f"gs://{bucket}/{name}", str(generation) if generation else None, _size(payload.get("size")))
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise InputError("the message is not UTF-8 text") from None
    if text.startswith("gs://") or text.startswith("/"):
        return Notice(text)
    body = _json(text)
    controls = sorted(k for k in (body if isinstance(body, dict) else {}) if k in FIELDS and k != "uri")
    if controls:
        # Never transcribed without what it asks for: a stream does not take a record's own controls (yet).
        raise InputError(
            f"a stream's message cannot set {', '.join(map(repr, controls))} for its file: give them to "
            "the job (its flags), or transcribe a file of such records in a batch job"
        )
    if isinstance(body, dict) and isinstance(body.get("uri"), str) and body["uri"].strip():
        generation = body.get("generation")
        return Notice(body["uri"].strip(), str(generation) if generation else None, _size(body.get("size")))
    raise InputError('the message is neither a Cloud Storage notification, a gs:// URI nor JSON with a "uri"')


def parse_text_record(message: Any) -> dict[str, Any]:
    """A synthesis record from a message of one JSON object; ``InputError`` saying what is wrong."""
    data, _ = message_parts(message)
    try:
        line = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("the message is not UTF-8 text") from None
    record = json_record(line)
    if isinstance(record, str):
        raise InputError(record.replace("the line", "the message"))
    problem = record_problem(record)
    if problem is not None:
        raise InputError(problem)
    return record


def _json(text: bytes | str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _size(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def name_matcher(pattern: str | None) -> re.Pattern[str] | None:
    """``--input_pattern``'s glob over object names (``*`` within a segment, ``**`` across), as Beam matches."""
    return re.compile(FileSystem.translate_pattern(pattern)) if pattern else None


def object_name(uri: str) -> str:
    return storage.split_gcs(uri)[1] if storage.is_gcs(uri) else uri


class _Counted(beam.DoFn):
    """A DoFn that counts messages it drops on purpose (Beam metrics, and a local run's status line)."""

    def __init__(self, progress_id: str | None) -> None:
        self._progress_id = progress_id

    def _stats(self) -> Any:
        tracker = progress.lookup(self._progress_id)
        return tracker.stream if tracker is not None else None

    def _failed(self) -> None:
        tracker = progress.lookup(self._progress_id)
        if tracker is not None:
            tracker.add(ok=False)


class ParseAudioFn(_Counted):
    """Messages to ``storage.SourceFile`` records, after the pattern and a look at the object itself."""

    def __init__(self, pattern: str | None, progress_id: str | None) -> None:
        super().__init__(progress_id)
        self._pattern = pattern

    def setup(self) -> None:
        storage.configure_beam_for_emulator()
        self._matcher = name_matcher(self._pattern)

    def process(self, message: Any) -> Iterator[Any]:
        try:
            found = parse_audio(message)
        except InputError as exc:
            self._failed()
            yield TaggedOutput(DEAD_LETTERS, dead_letter(STAGE, raw(message), exc))
            return
        if isinstance(found, str):
            yield from self._ignore(found)
            return
        if self._matcher is not None and not self._matcher.match(object_name(found.uri)):
            yield from self._ignore("pattern")
            return
        described = {"uri": found.uri, **({"generation": found.generation} if found.generation else {})}
        try:
            # The object as it stands: its generation (or mtime) and size, for plain URIs too.
            source = storage.stat(found.uri)
        except (OSError, ValueError) as exc:
            self._failed()
            yield TaggedOutput(DEAD_LETTERS, dead_letter(STAGE, described, exc))
            return
        if found.generation and storage.is_gcs(found.uri) and source.version != found.generation:
            # Overwritten or deleted and recreated since: its newer generation has a notification of its own.
            Metrics.counter(NAMESPACE, "notifications_superseded").inc()
            stats = self._stats()
            if stats is not None:
                stats.add_superseded()
            return
        yield source

    def _ignore(self, why: str) -> Iterator[Any]:
        Metrics.counter(NAMESPACE, f"notifications_ignored_{why.lower()}").inc()
        stats = self._stats()
        if stats is not None:
            stats.add_ignored(why)
        return iter(())


class ParseTextFn(_Counted):
    """Messages to synthesis records; a message that is not one becomes a dead letter."""

    def process(self, message: Any) -> Iterator[Any]:
        try:
            yield parse_text_record(message)
        except InputError as exc:
            self._failed()
            yield TaggedOutput(DEAD_LETTERS, dead_letter(STAGE, raw(message), exc))


_SEEN = ReadModifyWriteStateSpec("seen", BooleanCoder())
_EXPIRY = TimerSpec("expiry", TimeDomain.WATERMARK)
_SEEN_STATE = beam.DoFn.StateParam(_SEEN)
_EXPIRY_TIMER = beam.DoFn.TimerParam(_EXPIRY)


class DeduplicateFn(_Counted):
    """(key, record) to record, once per key within the dedup window (state per key, expired by a timer)."""

    def __init__(self, window_s: float, progress_id: str | None) -> None:
        super().__init__(progress_id)
        self._window_s = window_s

    def process(
        self,
        keyed: tuple[str, Any],
        timestamp: Any = beam.DoFn.TimestampParam,
        seen: Any = _SEEN_STATE,
        expiry: Any = _EXPIRY_TIMER,
    ) -> Iterator[Any]:
        if seen.read():
            Metrics.counter(NAMESPACE, "redeliveries_dropped").inc()
            stats = self._stats()
            if stats is not None:
                stats.add_redelivered()
            return
        seen.write(True)
        expiry.set(timestamp + Duration(seconds=self._window_s))
        yield keyed[1]

    @on_timer(_EXPIRY)
    def expire(self, seen: Any = _SEEN_STATE) -> None:
        seen.clear()


def _source_key(source: storage.SourceFile) -> tuple[str, storage.SourceFile]:
    return f"{source.uri}\n{source.version}", source


def _record_key(record: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    return f"{record['id']}\n{text_sha256(record['text'])}", record


class AudioNotifications(beam.PTransform):
    """Pub/Sub messages (``PubsubMessage`` or bodies) to the records ``Transcribe`` takes, once per object version.

    Output: a dict with ``records`` (``storage.SourceFile``) and ``dead_letters`` (rows in
    ``DEAD_LETTER_SCHEMA``). ``pattern`` keeps objects whose names match a glob.
    """

    def __init__(
        self,
        pattern: str | None = None,
        *,
        dedup_window_s: float = DEFAULT_DEDUP_WINDOW_S,
        progress_id: str | None = None,
    ) -> None:
        super().__init__()
        self._pattern = pattern
        self._window_s = dedup_window_s
        self._progress_id = progress_id

    def expand(self, messages: Any) -> Any:
        parsed = messages | "Parse" >> beam.ParDo(ParseAudioFn(self._pattern, self._progress_id)).with_outputs(
            DEAD_LETTERS, main=RECORDS
        )
        unique = (
            parsed[RECORDS]
            | "KeyByVersion" >> beam.Map(_source_key)
            | "Deduplicate" >> beam.ParDo(DeduplicateFn(self._window_s, self._progress_id))
        )
        return {RECORDS: unique, DEAD_LETTERS: parsed[DEAD_LETTERS]}


class TextRecordMessages(beam.PTransform):
    """Pub/Sub messages of one JSON record each to the records ``Synthesize`` takes, once per (id, text)."""

    def __init__(self, *, dedup_window_s: float = DEFAULT_DEDUP_WINDOW_S, progress_id: str | None = None) -> None:
        super().__init__()
        self._window_s = dedup_window_s
        self._progress_id = progress_id

    def expand(self, messages: Any) -> Any:
        parsed = messages | "Parse" >> beam.ParDo(ParseTextFn(self._progress_id)).with_outputs(
            DEAD_LETTERS, main=RECORDS
        )
        unique = (
            parsed[RECORDS]
            | "KeyByIdAndText" >> beam.Map(_record_key)
            | "Deduplicate" >> beam.ParDo(DeduplicateFn(self._window_s, self._progress_id))
        )
        return {RECORDS: unique, DEAD_LETTERS: parsed[DEAD_LETTERS]}
