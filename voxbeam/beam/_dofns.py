"""Private DoFns behind the public transforms.

Each worker process shares one speech client and one thread pool (``_workers.py``). A DoFn
keeps many records in flight across ``process`` calls and drains them in ``finish_bundle``, so
the pool's sessions stream concurrently instead of one record at a time. Nothing that holds a
socket is pickled.
"""

from __future__ import annotations

import collections
import concurrent.futures
import json
import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any, Final, Literal, TypeAlias

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.utils.windowed_value import WindowedValue

from voxbeam import audio
from voxbeam.beam import _channels, _workers, progress, storage
from voxbeam.beam.audio_records import AudioRecord, audio_record
from voxbeam.beam.options import ServiceSettings
from voxbeam.beam.rows import dead_letter, manifest_row, object_name, text_sha256, transcript_row
from voxbeam.errors import AudioError, InputError, RetriesExhaustedError, VoxBeamError
from voxbeam.protocol import TtsParams, redact
from voxbeam.protocol_controls import SttControls
from voxbeam.redaction import Policy

_LOG = logging.getLogger(__name__)
NAMESPACE = "voxbeam"
DEAD_LETTERS: Final = "dead_letters"
INTERRUPTED: Final = "INTERRUPTED"
STT_RATE = 16000
# What the DoFns declare to Beam (it checks them when a pipeline is built, and at run time with
# runtime_type_check): rows are dicts, dead letters go to their own tagged output.
Row: TypeAlias = dict[str, Any]
DeadLetter: TypeAlias = TaggedOutput[Literal["dead_letters"], Row]
# A finished record: (True, its output row) or (False, its dead-letter row).
Outcome: TypeAlias = tuple[bool, Row]
# A transcription's input: a file, or a record with the file and its own controls (audio_records.py).
AudioSource: TypeAlias = str | fileio.ReadableFile | storage.SourceFile | AudioRecord | dict[str, Any]


class _InFlightDoFn(beam.DoFn):
    """Runs ``work(element)`` on the shared thread pool, many records at a time.

    ``work`` returns an ``Outcome``, ``(ok, row)``, which this DoFn emits as it is; ``RouteFn``
    (fused after it) sends ok rows to the main output and the rest to the dead letters. Records
    finished in ``finish_bundle`` must be emitted as WindowedValues, and Beam's runtime type
    check cannot see a row inside a tagged WindowedValue: so the tagging happens one step on.
    Once the run's tracker is stopping (Ctrl-C on a local run), records are no longer handed
    out and ``work`` may return None for one it did not finish. In a batch run such records go
    nowhere, and a rerun with ``--skip_existing`` picks them up; in a stream (whose messages were
    acknowledged when pulled) each becomes an ``INTERRUPTED`` dead letter, which a replay runs again.
    """

    stage = "record"

    def __init__(self, settings: ServiceSettings, progress_id: str | None = None) -> None:
        self._settings = settings
        self._progress_id = progress_id
        self._max_in_flight = max(1, 2 * settings.sessions_per_worker)

    def failed(self, element: Any, exc: Exception, tracker: progress.Progress | None) -> Outcome:
        """A record's dead letter (its progress counted as failed)."""
        attempts = exc.attempts if isinstance(exc, RetriesExhaustedError) else None
        if tracker:
            tracker.add(ok=False)
        return False, dead_letter(self.stage, element, exc, attempts)

    def setup(self) -> None:
        storage.configure_beam_for_emulator()
        self._handle = _workers.acquire(self._settings)
        tracker = progress.lookup(self._progress_id)
        if tracker is not None:  # a local run: its progress line says when the service is down
            tracker.watch_service(self._handle.client.retry_in)
        self._records = Metrics.counter(NAMESPACE, f"{self.stage}_records")
        self._failed = Metrics.counter(NAMESPACE, f"{self.stage}_failures")
        self._retries = Metrics.counter(NAMESPACE, "retries")
        self._sessions = Metrics.counter(NAMESPACE, "sessions_opened")
        self._latency = Metrics.distribution(NAMESPACE, f"{self.stage}_latency_ms")

    def start_bundle(self) -> None:
        self._settle()
        self._pending: collections.deque[
            tuple[concurrent.futures.Future[tuple[bool, dict[str, Any]] | None], Any, Any, Any]
        ] = collections.deque()

    def teardown(self) -> None:
        self._settle()

    def _settle(self) -> None:
        """Cancel what a failed bundle left queued and wait for what it left running.

        The runner retries that bundle's records; leftovers must not write beside the retry.
        """
        pending = getattr(self, "_pending", None)
        if not pending:
            return
        futures = [f for f, _, _, _ in pending if not f.cancel()]
        pending.clear()
        concurrent.futures.wait(futures)

    def work(self, element: Any) -> tuple[bool, dict[str, Any]] | None:
        raise NotImplementedError

    def _stopping(self) -> bool:
        tracker = progress.lookup(self._progress_id)
        return tracker is not None and tracker.stopping.is_set()

    def _interrupted(self, element: Any) -> tuple[bool, dict[str, Any]] | None:
        """What a record a stop left undone becomes: in a stream, an INTERRUPTED dead letter; else nothing."""
        tracker = progress.lookup(self._progress_id)
        if tracker is None or tracker.stream is None:
            return None
        tracker.add(ok=False)
        why = VoxBeamError("the run was stopped before this record was done; replay it", code=INTERRUPTED)
        return False, dead_letter(self.stage, _describe(element), why)

    def _timed(self, element: Any) -> tuple[bool, dict[str, Any]] | None:
        if self._stopping():  # queued before the stop: never started
            return None
        started = time.monotonic()
        try:
            done = self.work(element)
        except Exception as exc:  # every record ends somewhere: never lose one to a bug
            _LOG.warning("%s failed unexpectedly: %s", self.stage, redact(repr(exc)))
            done = False, dead_letter(self.stage, _describe(element), exc)
        self._latency.update(int((time.monotonic() - started) * 1000))
        return done

    def _await(self, future: concurrent.futures.Future[Any]) -> Any:
        """The client's result; CancelledError when a stop's grace period ends first."""
        tracker = progress.lookup(self._progress_id)
        if tracker is None:
            return future.result()
        with tracker.in_flight(future):
            return future.result()

    def process(
        self, element: Any, window: Any = beam.DoFn.WindowParam, timestamp: Any = beam.DoFn.TimestampParam
    ) -> Iterator[Outcome]:
        if self._stopping():
            interrupted = self._interrupted(element)
            if interrupted is not None:
                yield interrupted
            return
        self._pending.append((self._handle.executor.submit(self._timed, element), element, window, timestamp))
        yield from self._drain(block=len(self._pending) >= self._max_in_flight)

    def finish_bundle(self) -> Iterator[Any]:
        yield from self._drain(block=True, everything=True)
        delta = self._handle.stats_delta()
        self._retries.inc(max(0, delta.get("retries", 0)))
        self._sessions.inc(max(0, delta.get("sessions_opened", 0)))

    def _drain(self, *, block: bool, everything: bool = False) -> Iterator[Any]:
        """Emit finished records (WindowedValues of Outcomes); wait for the oldest (block) or all (everything)."""
        while self._pending:
            future, element, window, timestamp = self._pending[0]
            if not future.done():
                if not block:
                    return
                concurrent.futures.wait([future])
                block = everything
            self._pending.popleft()
            done = future.result()
            if done is None:
                done = self._interrupted(element)
                if done is None:
                    continue
            ok, row = done
            self._records.inc()
            if not ok:
                self._failed.inc()
                Metrics.counter(NAMESPACE, f"failures_{row['error_code']}").inc()
            yield WindowedValue(done, timestamp, (window,))


class RouteFn(beam.DoFn):
    """An ``Outcome`` to the main output (ok) or the dead letters."""

    def process(self, outcome: Outcome) -> Iterator[Row | DeadLetter]:
        ok, row = outcome
        yield row if ok else TaggedOutput(DEAD_LETTERS, row)


def _describe(element: Any) -> Any:
    if isinstance(element, fileio.ReadableFile):
        return {"uri": element.metadata.path}
    if isinstance(element, storage.SourceFile):
        return {"uri": element.uri}
    if isinstance(element, AudioRecord):
        return element.as_input()
    return element


def _source_of(element: Any) -> storage.SourceFile:
    if isinstance(element, storage.SourceFile):
        return element
    if isinstance(element, fileio.ReadableFile):
        m = element.metadata
        return storage.SourceFile(m.path, int(m.size_in_bytes), f"{float(m.last_updated_in_seconds or 0.0):.6f}")
    if isinstance(element, str) and element.strip():
        return storage.stat(element.strip())
    raise InputError(f"not a file path or URI: {element!r}")


@beam.typehints.with_input_types(AudioSource)
class TranscribeFn(_InFlightDoFn):
    stage = "transcribe"

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        language: str = "auto",
        timestamps: bool = True,
        controls: SttControls | None = None,
        progress_id: str | None = None,
        redaction: Policy | None = None,
        speakers: tuple[int | None, int | None] | None = None,
        channels: str = "auto",
    ) -> None:
        super().__init__(settings, progress_id)
        self._channels = channels  # mix, split or auto (beam/_channels.py)
        self._language = language
        self._timestamps = timestamps
        self._controls = controls
        self._redaction = redaction  # the service redacts (--redact_on server)
        self._speakers = speakers  # the service diarizes: (min_speakers, max_speakers)

    def setup(self) -> None:
        super().setup()
        self._audio_ms = Metrics.counter(NAMESPACE, "audio_ms")
        self._words = Metrics.counter(NAMESPACE, "words")
        self._rtf = Metrics.distribution(NAMESPACE, "real_time_factor_x1000")

    def work(self, element: Any) -> tuple[bool, dict[str, Any]] | None:
        tracker = progress.lookup(self._progress_id)
        started = time.monotonic()
        language, controls, file = self._language, self._controls, element
        try:
            if isinstance(element, dict | AudioRecord):
                # The record's own controls: the pool keys sessions by their init, so records asking the
                # same share sessions, and the job's own sessions are not re-initialised for them.
                record = audio_record(element)
                language, controls = record.applied_to(language, controls)
                file = record.uri
            source = _source_of(file)
            if source.size == 0:
                raise AudioError("the file is empty", code=audio.EMPTY_AUDIO)
            result = self._await(
                _channels.start(
                    self._handle.client,
                    source.uri,
                    self._channels,
                    STT_RATE,
                    language=language,
                    timestamps=self._timestamps,
                    controls=controls,
                    redaction=self._redaction,
                    speakers=self._speakers,
                )
            )
        except concurrent.futures.CancelledError:
            return None
        except (VoxBeamError, OSError, ValueError) as exc:
            return self.failed(_describe(element), exc, tracker)
        elapsed_ms = (time.monotonic() - started) * 1000
        self._audio_ms.inc(result.audio_duration_ms)
        self._words.inc(len(result.words))
        if result.audio_duration_ms:
            self._rtf.update(int(1000 * elapsed_ms / result.audio_duration_ms))
        if tracker:
            tracker.add(ok=True, audio_ms=result.audio_duration_ms)
        return True, transcript_row(source, result)


class SynthesizeFn(_InFlightDoFn):
    stage = "synthesize"

    def __init__(
        self,
        settings: ServiceSettings,
        output_prefix: str,
        params: TtsParams,
        *,
        progress_id: str | None = None,
    ) -> None:
        super().__init__(settings, progress_id)
        self._prefix = output_prefix
        self._params = params  # a record may set any of them for itself

    def setup(self) -> None:
        super().setup()
        self._chars = Metrics.counter(NAMESPACE, "characters")
        self._bytes = Metrics.counter(NAMESPACE, "audio_bytes_written")

    def work(self, record: Any) -> tuple[bool, dict[str, Any]] | None:
        tracker = progress.lookup(self._progress_id)
        try:
            row = self._render(record)
        except concurrent.futures.CancelledError:
            return None
        except (VoxBeamError, OSError, ValueError) as exc:
            return self.failed(record, exc, tracker)
        if tracker:
            tracker.add(ok=True, characters=len(record["text"]))
        return True, row

    def _render(self, record: Any) -> dict[str, Any]:
        if not isinstance(record, dict):
            raise InputError("a synthesis record must be a mapping with 'id' and 'text'")
        record_id, text = record.get("id"), record.get("text")
        if not isinstance(record_id, str) or not record_id:
            raise InputError("the record has no 'id'")
        if not isinstance(text, str) or not text.strip():
            raise InputError("the record has no 'text'")
        params = self._params.overridden_by(record)
        result = self._await(self._handle.client.synthesize_async(text, params))
        text_sha = text_sha256(text)
        uri = storage.join(self._prefix, f"{object_name(record_id)}.{audio.FILE_EXTENSIONS[result.format]}")
        storage.write_object(
            uri,
            result.audio,
            content_type=audio.CONTENT_TYPES[result.format],
            metadata={
                "voice_id": result.voice_id,
                "language": result.language,
                "sample_rate": str(result.sample_rate),
                "text_sha256": text_sha,
                "record_id": record_id,
            },
        )
        self._chars.inc(len(text))
        self._bytes.inc(len(result.audio))
        duration = (
            audio.ms(len(result.audio) // audio.BYTES_PER_SAMPLE, result.sample_rate)
            if result.format == "pcm"
            else audio.duration_ms(result.audio)
        )
        return manifest_row(record_id, uri, result, duration, text_sha)


@beam.typehints.with_output_types(Any, dead_letters=Row)  # Any | TaggedOutput[...] would collapse to Any
class FirstPerKeyFn(beam.DoFn):
    """After grouping by id: one record goes on, the other copies become dead letters.

    A PCollection has no order, so "first" is the smallest record as JSON: the same one on
    every run. (The jobs keep the first occurrence in the input file before the pipeline.)
    """

    def __init__(self, progress_id: str | None = None) -> None:
        self._progress_id = progress_id

    def process(self, keyed: tuple[str, Iterable[Any]]) -> Iterator[Any]:
        key, records = keyed
        records = sorted(records, key=lambda r: json.dumps(r, sort_keys=True, default=str))
        yield records[0]
        tracker = progress.lookup(self._progress_id)
        for dup in records[1:]:
            if tracker:
                tracker.add(ok=False)
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTERS,
                dead_letter("synthesize", dup, InputError(f"duplicate id {key!r}", code="DUPLICATE_ID")),
            )
