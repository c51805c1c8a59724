"""Public PTransforms: Transcribe, WriteTranscripts, Synthesize, WriteManifest, WriteDeadLetters."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import apache_beam as beam
from apache_beam.transforms.display import DisplayDataItem

from voxbeam.beam import _dofns, storage
from voxbeam.beam._dofns import DEAD_LETTERS, AudioSource, Row
from voxbeam.beam.captions import CAPTION_FORMATS
from voxbeam.beam.options import ServiceSettings
from voxbeam.beam.redacted_audio import REDACTED_AUDIO, REDACTED_AUDIO_MANIFEST, AudioRedaction, RedactAudioFn
from voxbeam.beam.redacting import UNREDACTED, RedactFn, Redaction
from voxbeam.beam.schema import (
    DEAD_LETTER_SCHEMA,
    MANIFEST_SCHEMA,
    REDACTED_AUDIO_SCHEMA,
    TRANSCRIPT_SCHEMA,
    UNREDACTED_SCHEMA,
)
from voxbeam.beam.sink import WriteRows, WriteTextFilesFn, stream_prefix
from voxbeam.flags import CHANNELS, REDACT_ON
from voxbeam.protocol import AUTO_LANGUAGE, TtsParams
from voxbeam.protocol_controls import ControlError, SttControls, check_speaker_bounds
from voxbeam.redaction import Policy

TRANSCRIPTS = "transcripts"
MANIFEST = "manifest"
CAPTIONS = "captions"
AUDIO = "audio"


def _service_display(settings: ServiceSettings) -> dict[str, Any]:
    # The key never goes into display data: only whether one is set and where it comes from.
    return {
        "endpoints": DisplayDataItem(",".join(settings.endpoints), label="Endpoints"),
        "sessions_per_worker": DisplayDataItem(settings.sessions_per_worker, label="Sessions per worker"),
        "api_key_source": DisplayDataItem(
            "secret manager" if settings.api_key_secret else ("given" if settings.api_key else "environment"),
            label="API key source",
        ),
    }


@beam.typehints.with_input_types(AudioSource)
class Transcribe(beam.PTransform):
    """Audio files to transcript rows, with dead letters for files that fail.

    Input: file paths or URIs (``str``), ``fileio.ReadableFile`` from MatchFiles/ReadMatches,
    ``voxbeam.beam.storage.SourceFile``, or records with controls of their own: ``AudioRecord`` or a dict
    with ``uri`` and any of ``language``, ``prompt``, ``hotwords``, ``task``, ``languages``, ``stt_model``
    (``voxbeam.beam.audio_records``), which override this transform's for that record; a record with an
    unknown field or a bad value becomes an ``INVALID_INPUT`` dead letter naming it. Output: a dict with
    ``transcripts`` (rows in ``TRANSCRIPT_SCHEMA``) and ``dead_letters`` (rows in ``DEAD_LETTER_SCHEMA``).

    Recognition controls (extensions the service must offer; docs/protocol.md): ``prompt`` (text the
    audio follows or resembles), ``hotwords`` (words and names to favour), ``task`` ("transcribe", or
    "translate" into English) and ``languages`` (with ``language="auto"``: the candidates detection
    chooses from). ``stt_model`` picks one of the models the service serves (its ``/healthz``
    ``models``; ``voxbeam serve --stt_model tiny.en,base``): None is its default; the rows' ``model``
    names the one used. A value no service would take raises ``ValueError`` here.

    ``redact`` (``"all"`` or entity types, see ``voxbeam.redaction``) and ``profanity`` (``mask``,
    ``remove``, ``tag``) mask the rows' text, words and segments in place and fill ``entities``;
    ``phone_region`` (default: each row's language's region, else US) is where phone numbers are
    looked for. With ``keep_original``, the output also has ``unredacted`` (``UNREDACTED_SCHEMA``):
    the text as recognised, for ``WriteUnredacted``; it is in no other output. ``redact_on``:
    ``"client"`` (here, after recognition: any spec-compatible service) or ``"server"`` (the service
    masks finals itself, the ``redact`` extension it must advertise; the text as recognised never
    leaves it, so ``keep_original`` cannot be had).

    ``redact_audio`` (``"tone"`` or ``"silence"``, with ``redact``) writes a copy of every input under
    ``redacted_audio_prefix`` with each entity's span replaced (``voxbeam.beam.redacted_audio``); the output
    then has ``redacted_audio``, a ``REDACTED_AUDIO_SCHEMA`` row per copy, for ``WriteRedactedAudioManifest``.
    An input whose copy fails becomes a dead letter, its transcript withheld.

    ``diarize`` asks the service to label speakers (the ``enable_diarization`` extension it must advertise),
    within ``min_speakers`` and ``max_speakers`` when given: words and segments then carry ``speaker``
    (labels per recognition session; see ``SpeechClient.transcribe``).

    ``channels``: ``"mix"`` (one stream, ``channel`` null), ``"split"`` (each channel of a file with two or more
    its own stream and session, merged on one timeline: ``channel`` 0, 1, ... on words, segments and
    ``speakers``; diarized speakers labelled per channel, ``C0-S1``) or ``"auto"`` (split when the channels carry
    different speech, not duplicated mono; ``voxbeam.channels`` has the rule and the crosstalk gate).
    """

    def __init__(
        self,
        service: ServiceSettings | None = None,
        *,
        language: str = "auto",
        timestamps: bool = True,
        prompt: str | None = None,
        hotwords: str | None = None,
        task: str | None = None,
        languages: Sequence[str] | None = None,
        stt_model: str | None = None,
        progress_id: str | None = None,
        redact: str | tuple[str, ...] | None = None,
        phone_region: str | None = None,
        profanity: str | None = None,
        keep_original: bool = False,
        redact_on: str = "client",
        redact_audio: str | None = None,
        redacted_audio_prefix: str | None = None,
        diarize: bool = False,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
        channels: str = "auto",
    ) -> None:
        super().__init__()
        if channels not in CHANNELS:
            raise ValueError(f"channels must be {', '.join(CHANNELS)}, not {channels!r}")
        self._channels = channels
        if not diarize and (min_speakers is not None or max_speakers is not None):
            raise ValueError("min_speakers and max_speakers bound diarization: give diarize=True")
        try:
            check_speaker_bounds(min_speakers, max_speakers)
        except ControlError as exc:
            raise ValueError(str(exc)) from None
        self._speakers = (min_speakers, max_speakers) if diarize else None
        self._service = service or ServiceSettings()
        self._language = language
        self._timestamps = timestamps
        self._controls = SttControls(
            prompt, hotwords, task, None if languages is None else tuple(languages), model=stt_model
        ).checked()
        if self._controls.languages and language.strip().lower() != AUTO_LANGUAGE:
            raise ValueError(f"languages are candidates for detection: give them with language={AUTO_LANGUAGE!r}")
        self._progress_id = progress_id
        self._redaction = Redaction.of(
            redact, phone_region=phone_region, profanity=profanity, keep_original=keep_original
        )
        if redact_on not in REDACT_ON:
            raise ValueError(f"redact_on must be {' or '.join(REDACT_ON)}, not {redact_on!r}")
        if redact_on == "server" and keep_original:
            raise ValueError("keep_original needs redact_on='client': a redacting service never sends the original")
        self._redact_on = redact_on
        self._audio: AudioRedaction | None = None
        if redact_audio is not None:
            if not self._redaction.types:
                raise ValueError("redact_audio bleeps the entities redact finds: give redact")
            self._audio = AudioRedaction(redacted_audio_prefix or "", redact_audio)

    def expand(self, files: Any) -> Any:
        result = (
            files
            # Fusion break: spread the (cheap) file names before the (expensive) transcription.
            | "Reshuffle" >> beam.Reshuffle()
            | "Transcribe"
            >> beam.ParDo(
                _dofns.TranscribeFn(
                    self._service,
                    language=self._language,
                    timestamps=self._timestamps,
                    controls=self._controls,
                    progress_id=self._progress_id,
                    redaction=self._server_redaction,
                    speakers=self._speakers,
                    channels=self._channels,
                )
            )
            | "Route" >> beam.ParDo(_dofns.RouteFn()).with_outputs(DEAD_LETTERS, main=TRANSCRIPTS)
        )
        if not self._redaction.enabled:
            return {TRANSCRIPTS: result[TRANSCRIPTS], DEAD_LETTERS: result[DEAD_LETTERS]}
        if self._server_redaction is not None:
            if self._audio is None:
                return {TRANSCRIPTS: result[TRANSCRIPTS], DEAD_LETTERS: result[DEAD_LETTERS]}
            # The service's entities, made absolute by the client: the copy needs nothing else.
            copied = result[TRANSCRIPTS] | "RedactAudio" >> beam.ParDo(RedactAudioFn(self._audio)).with_outputs(
                DEAD_LETTERS, REDACTED_AUDIO, main=TRANSCRIPTS
            )
            failed = (result[DEAD_LETTERS], copied[DEAD_LETTERS]) | "AllDeadLetters" >> beam.Flatten()
            return {TRANSCRIPTS: copied[TRANSCRIPTS], DEAD_LETTERS: failed, REDACTED_AUDIO: copied[REDACTED_AUDIO]}
        redacted = result[TRANSCRIPTS] | "Redact" >> beam.ParDo(RedactFn(self._redaction, self._audio)).with_outputs(
            DEAD_LETTERS, UNREDACTED, REDACTED_AUDIO, main=TRANSCRIPTS
        )
        failed = (result[DEAD_LETTERS], redacted[DEAD_LETTERS]) | "AllDeadLetters" >> beam.Flatten()
        out = {TRANSCRIPTS: redacted[TRANSCRIPTS], DEAD_LETTERS: failed}
        if self._redaction.keep_original:
            out[UNREDACTED] = redacted[UNREDACTED]
        if self._audio is not None:
            out[REDACTED_AUDIO] = redacted[REDACTED_AUDIO]
        return out

    @property
    def _server_redaction(self) -> Policy | None:
        """What the service is asked to redact (``redact_on="server"``), else None."""
        r = self._redaction
        if self._redact_on != "server" or not r.enabled:
            return None
        return Policy(r.types, r.phone_region, r.profanity)

    def display_data(self) -> dict[str, Any]:
        r = self._redaction
        redaction = {
            "redact": ",".join(sorted(r.types)),
            "profanity": r.profanity or "",
            "phone_region": r.phone_region,
            "redact_on": self._redact_on,
            "redact_audio": self._audio.mode if self._audio else "",
            "redacted_audio_prefix": self._audio.prefix if self._audio else "",
        }
        controls = {
            "stt_model" if k == "model" else k: v if isinstance(v, str) else ",".join(v)
            for k, v in vars(self._controls).items()
            if v is not None
        }
        return {
            **_service_display(self._service),
            "language": self._language,
            "timestamps": self._timestamps,
            "channels": self._channels,
            **controls,
            **({k: v for k, v in redaction.items() if v} if r.enabled else {}),
            **(_speakers_display(self._speakers) if self._speakers is not None else {}),
        }


def _speakers_display(speakers: tuple[int | None, int | None]) -> dict[str, Any]:
    bounds = {"min_speakers": speakers[0], "max_speakers": speakers[1]}
    return {"diarize": True, **{k: v for k, v in bounds.items() if v is not None}}


@beam.typehints.with_input_types(Row)
class WriteTranscripts(beam.PTransform):
    """Transcript rows to Parquet, and captions beside them (``sink.WriteRows`` says where).

    A batch run writes ``transcripts/run=<run_id>/`` and ``captions/run=<run_id>/``; a stream
    (``window_s``) writes each window's under ``stream/transcripts/`` and ``stream/captions/``.
    A run's captions stay beside its own transcripts: a later run never overwrites them.
    """

    def __init__(
        self,
        output: str,
        run_id: str,
        *,
        captions: tuple[str, ...] = (),
        num_shards: int = 0,
        window_s: float | None = None,
        progress_id: str | None = None,
    ) -> None:
        super().__init__()
        unknown = set(captions) - set(CAPTION_FORMATS)
        if unknown:
            raise ValueError(f"unknown caption formats {sorted(unknown)}; use {sorted(CAPTION_FORMATS)}")
        self._output = output
        self._run_id = run_id
        self._captions = tuple(captions)
        self._num_shards = num_shards
        self._window_s = window_s
        self._progress_id = progress_id

    def expand(self, rows: Any) -> Any:
        written = rows | "WriteParquet" >> WriteRows(
            self._output,
            TRANSCRIPTS,
            TRANSCRIPT_SCHEMA,
            self._run_id,
            window_s=self._window_s,
            num_shards=self._num_shards,
            progress_id=self._progress_id,
        )
        if self._captions:
            if self._window_s is None:
                prefix, window_s = storage.join(self._output, CAPTIONS, f"run={self._run_id}"), None
            else:
                prefix, window_s = stream_prefix(self._output, CAPTIONS), self._window_s
            rows | "WriteCaptions" >> beam.ParDo(WriteTextFilesFn(prefix, self._captions, window_s))
        return written


@beam.typehints.with_input_types(Row)
class WriteUnredacted(beam.PTransform):
    """``Transcribe(keep_original=True)``'s unredacted rows to Parquet, apart from everything else:
    ``unredacted/run=<run_id>/``, or per window under ``stream/unredacted/``. (Not counted in a
    stream's progress: its rows are the transcripts' again.)"""

    def __init__(self, output: str, run_id: str, *, window_s: float | None = None) -> None:
        super().__init__()
        self._sink = WriteRows(output, UNREDACTED, UNREDACTED_SCHEMA, run_id, window_s=window_s)

    def expand(self, rows: Any) -> Any:
        return rows | "WriteParquet" >> self._sink


@beam.typehints.with_input_types(Row)
class WriteRedactedAudioManifest(beam.PTransform):
    """``Transcribe(redact_audio=...)``'s manifest rows to Parquet: ``redacted_audio_manifest/run=<run_id>/``,
    or per window under ``stream/redacted_audio_manifest/``."""

    def __init__(self, output: str, run_id: str, *, window_s: float | None = None) -> None:
        super().__init__()
        self._sink = WriteRows(output, REDACTED_AUDIO_MANIFEST, REDACTED_AUDIO_SCHEMA, run_id, window_s=window_s)

    def expand(self, rows: Any) -> Any:
        return rows | "WriteParquet" >> self._sink


@beam.typehints.with_input_types(Row)
class WriteDeadLetters(beam.PTransform):
    """Dead-letter rows to Parquet: ``dead_letters/run=<run_id>/``, or per window under ``stream/dead_letters/``."""

    def __init__(
        self, output: str, run_id: str, *, window_s: float | None = None, progress_id: str | None = None
    ) -> None:
        super().__init__()
        self._sink = WriteRows(
            output, DEAD_LETTERS, DEAD_LETTER_SCHEMA, run_id, window_s=window_s, progress_id=progress_id
        )

    def expand(self, rows: Any) -> Any:
        return rows | "WriteParquet" >> self._sink


class Synthesize(beam.PTransform):
    """Text records to audio objects under ``output_prefix``, with manifest rows and dead letters.

    Records are dicts with ``id`` and ``text``, and any field of ``TtsParams`` (``voice_id``,
    ``language``, ``format``, ``sample_rate``, ``speed``, ``pitch``, ``volume``, ``voice_config``)
    that overrides the transform's ``params``. Object names derive from ``id`` alone, so a retried bundle rewrites
    the same objects; a second record with the same id becomes a DUPLICATE_ID dead letter. On an
    unbounded input pass ``unique_ids=False`` (grouping by id would wait for the input's end):
    ``TextRecordMessages`` has already dropped redelivered records.
    """

    def __init__(
        self,
        output_prefix: str,
        service: ServiceSettings | None = None,
        params: TtsParams | None = None,
        *,
        progress_id: str | None = None,
        unique_ids: bool = True,
    ) -> None:
        super().__init__()
        self._unique_ids = unique_ids
        self._prefix = output_prefix
        self._service = service or ServiceSettings()
        self._params = params or TtsParams()
        self._progress_id = progress_id

    def expand(self, records: Any) -> Any:
        dead: tuple[Any, ...] = ()
        if self._unique_ids:
            unique = (
                records
                | "KeyById" >> beam.Map(_key_by_id)
                | "GroupById" >> beam.GroupByKey()
                | "FirstPerId"
                >> beam.ParDo(_dofns.FirstPerKeyFn(self._progress_id)).with_outputs(DEAD_LETTERS, main="records")
            )
            records, dead = unique.records, (unique[DEAD_LETTERS],)
        rendered = (
            records
            | "Synthesize"
            >> beam.ParDo(_dofns.SynthesizeFn(self._service, self._prefix, self._params, progress_id=self._progress_id))
            | "Route" >> beam.ParDo(_dofns.RouteFn()).with_outputs(DEAD_LETTERS, main=MANIFEST)
        )
        failed = (*dead, rendered[DEAD_LETTERS]) | "AllDeadLetters" >> beam.Flatten()
        return {MANIFEST: rendered[MANIFEST], DEAD_LETTERS: failed}

    def display_data(self) -> dict[str, Any]:
        given = dataclasses.asdict(self._params).items()
        shown = {k: v if isinstance(v, str | int | float) else str(v) for k, v in given if v is not None}
        return {**_service_display(self._service), "output_prefix": self._prefix, **shown}


def _key_by_id(record: Any) -> tuple[str, Any]:
    return (str(record.get("id")) if isinstance(record, dict) else repr(record)), record


@beam.typehints.with_input_types(Row)
class WriteManifest(beam.PTransform):
    """Manifest rows to Parquet: ``manifest/run=<run_id>/``, or per window under ``stream/manifest/``."""

    def __init__(
        self, output: str, run_id: str, *, window_s: float | None = None, progress_id: str | None = None
    ) -> None:
        super().__init__()
        self._sink = WriteRows(output, MANIFEST, MANIFEST_SCHEMA, run_id, window_s=window_s, progress_id=progress_id)

    def expand(self, rows: Any) -> Any:
        return rows | "WriteParquet" >> self._sink
