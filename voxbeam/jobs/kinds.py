"""What differs between the two jobs: their flags' checks, their inputs, their transforms and outputs."""

from __future__ import annotations

import dataclasses
from typing import Any

import apache_beam as beam

from voxbeam.beam import (
    DEAD_LETTERS,
    MANIFEST,
    RECORDS,
    REDACTED_AUDIO,
    TRANSCRIPTS,
    UNREDACTED,
    AudioNotifications,
    ServiceSettings,
    Synthesize,
    TextRecordMessages,
    Transcribe,
    WriteDeadLetters,
    WriteManifest,
    WriteRedactedAudioManifest,
    WriteTranscripts,
    WriteUnredacted,
    storage,
)
from voxbeam.beam.audio_records import audio_record
from voxbeam.beam.captions import CAPTION_FORMATS
from voxbeam.beam.rows import dead_letter, text_sha256
from voxbeam.beam.sink import stream_prefix
from voxbeam.beam.transforms import AUDIO
from voxbeam.client.config import ClientConfig
from voxbeam.client.probe import MODEL
from voxbeam.errors import InputError, UsageError, VoxBeamError
from voxbeam.flags import control_flag
from voxbeam.jobs.config import JobConfig
from voxbeam.jobs.inputs import check_writable, earlier_rows, existing_sources, expand_input
from voxbeam.jobs.preflight import not_offered
from voxbeam.jobs.records import TextRecords, is_audio_record_input, read_audio_records, read_text_records
from voxbeam.jobs.replay import audio_records, dead_letter_files, text_records
from voxbeam.jobs.summary import Summary
from voxbeam.protocol import AUTO_LANGUAGE, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, ErrorCode, Service, SttInit
from voxbeam.protocol_controls import ControlError, check_speaker_bounds


class Job:
    """What differs between the two jobs: their flags' checks, their inputs, their transforms."""

    kind: str
    main_output: str

    def __init__(self, config: JobConfig) -> None:
        self.config = config
        # Dead-letter rows for inputs that never became records (found while reading them).
        self.rejected: list[dict[str, Any]] = []

    def read(self, summary: Summary) -> list[Any]:
        """The records to process (UsageError when there is nothing usable); sets ``summary.inputs``."""
        raise NotImplementedError

    def session(self) -> tuple[Service, Any]:
        """The service kind and init every record's session uses (the pre-flight check opens one)."""
        raise NotImplementedError

    def screen(self, client: ClientConfig) -> None:
        """After the pre-flight: check what records ask of the service beyond the job's own session."""

    def screened(self, records: list[Any]) -> list[Any]:
        """``records`` without those ``screen`` turned into dead letters."""
        return records

    def build(
        self, p: beam.Pipeline, records: list[Any], service: ServiceSettings, run_id: str, progress_id: str | None
    ) -> None:
        """The job's transforms and writers over ``records`` (and ``rejected``, into the dead letters)."""
        raise NotImplementedError

    def build_stream(self, p: beam.Pipeline, service: ServiceSettings, run_id: str, progress_id: str | None) -> None:
        """The job's transforms over a Pub/Sub stream (``--input_subscription`` / ``--input_topic``)."""
        raise NotImplementedError

    def stream_messages(self, p: beam.Pipeline) -> Any:
        """The stream's messages (with their attributes), read from the subscription or topic given."""
        v = self.config
        try:
            read = beam.io.ReadFromPubSub(
                topic=v.input_topic or None, subscription=v.input_subscription or None, with_attributes=True
            )
        except ValueError as exc:  # Beam checks the names' shape
            flag = "--input_topic" if v.input_topic else "--input_subscription"
            raise UsageError(flag, f"{exc}; give projects/PROJECT/{flag[8:]}s/NAME") from None
        return p | "ReadMessages" >> read

    def stream_dead_letters(self, run_id: str, progress_id: str | None, *failed: Any) -> None:
        v = self.config
        (
            failed
            | "AllDeadLetters" >> beam.Flatten()
            | "WriteDeadLetters"
            >> WriteDeadLetters(v.output, run_id, window_s=v.window_seconds, progress_id=progress_id)
        )

    def dead_letters(self, p: beam.Pipeline, failed: Any) -> Any:
        """The records that failed in the pipeline, with the inputs rejected before it."""
        if not self.rejected:
            return failed
        return (
            failed,
            p | "Rejected" >> beam.Create(self.rejected, reshuffle=False),
        ) | "AllDeadLetters" >> beam.Flatten()


class Transcription(Job):
    """Audio files in, transcript rows (and captions) out."""

    kind = "transcribe"
    main_output = TRANSCRIPTS

    def __init__(self, config: JobConfig) -> None:
        super().__init__(config)
        self.captions = config.captions
        # Records whose own controls ask more of the service than the job's (``screen`` checks them), and
        # the ones it turned into dead letters (by id(): records are dicts, and may be equal).
        self._asks: dict[tuple[tuple[str, ...], str | None], list[Any]] = {}
        self._dropped: set[int] = set()
        # A transcription's --language has a default ("auto"): never None.
        self.language = config.language if config.language is not None else AUTO_LANGUAGE
        try:
            self.controls = config.controls.checked()
        except ControlError as exc:
            raise UsageError(control_flag(exc.field), exc.message) from None
        if self.controls.languages and self.language.strip().lower() != AUTO_LANGUAGE:
            raise UsageError("--languages", f"are candidates for detection: give them with --language {AUTO_LANGUAGE}")
        for c in self.captions:
            if c not in CAPTION_FORMATS:
                raise UsageError("--captions", f"unknown caption format {c!r}; use {' or '.join(CAPTION_FORMATS)}")
        if self.captions and not config.timestamps:
            raise UsageError(
                "--captions", "captions are built from word timings: drop --timestamps false or --captions"
            )
        for bound in ("min_speakers", "max_speakers"):
            if getattr(config, bound) is not None and not config.diarize:
                raise UsageError(f"--{bound}", "bounds --diarize: give --diarize true")
        try:
            check_speaker_bounds(config.min_speakers, config.max_speakers)
        except ControlError as exc:
            raise UsageError(f"--{exc.field}", exc.message) from None
        if config.redact_keep_original and not (config.redact or config.profanity):
            raise UsageError("--redact_keep_original", "keeps what --redact or --profanity masks: give one of them")
        if config.phone_region and "PHONE_NUMBER" not in config.redact:
            raise UsageError("--phone_region", "applies to --redact all or PHONE_NUMBER")
        if config.redact_on == "server" and config.redact_keep_original:
            raise UsageError(
                "--redact_keep_original", "needs --redact_on client: a redacting service never sends the original"
            )
        if config.redact_audio and not config.redact:
            raise UsageError("--redact_audio", "bleeps the values --redact finds: give --redact")

    def transcribe(
        self, service: ServiceSettings, progress_id: str | None, redacted_audio_prefix: str | None = None
    ) -> Transcribe:
        v = self.config
        return Transcribe(
            service,
            language=self.language,
            timestamps=v.timestamps,
            prompt=self.controls.prompt,
            hotwords=self.controls.hotwords,
            task=self.controls.task,
            languages=self.controls.languages,
            stt_model=self.controls.model,
            progress_id=progress_id,
            redact=v.redact,
            phone_region=v.phone_region,
            profanity=v.profanity,
            keep_original=v.redact_keep_original,
            redact_on=v.redact_on,
            redact_audio=v.redact_audio,
            redacted_audio_prefix=redacted_audio_prefix,
            diarize=v.diarize,
            min_speakers=v.min_speakers,
            max_speakers=v.max_speakers,
            channels=v.channels,
        )

    def read(self, summary: Summary) -> list[Any]:
        spec = self.config.batch_input
        replay = dead_letter_files(spec)
        if replay is not None or is_audio_record_input(spec):
            # Records (a replay's, or a file of them) may carry their own controls: they go to Transcribe as
            # they are, and each file is looked at once, where it is transcribed.
            records: list[Any]
            if replay is not None:
                records, self.rejected = audio_records(replay)
            else:
                records, self.rejected = read_audio_records(spec)
                if not records and not self.rejected:
                    raise UsageError("--input", f"{spec} holds no records")
            summary.inputs = len(records) + len(self.rejected)
            check_writable(self.config.output)
            if self.config.skip_existing:
                done = existing_sources(self.config.output)
                kept = [r for r in records if _source_key(r) not in done]
                summary.skipped = len(records) - len(kept)
                records = kept
            self._asks = self._record_asks(records)
            return records
        sources = expand_input(spec)
        summary.inputs = len(sources)
        check_writable(self.config.output)
        if self.config.skip_existing:
            done = existing_sources(self.config.output)
            todo = [s for s in sources if (s.uri, s.size, s.version) not in done]
            summary.skipped = len(sources) - len(todo)
            sources = todo
        return [s if s.size >= 0 else s.uri for s in sources]

    def _record_asks(self, records: list[Any]) -> dict[tuple[tuple[str, ...], str | None], list[Any]]:
        """The records that ask the service for capabilities or a model beyond the job's, by what they ask."""
        asks: dict[tuple[tuple[str, ...], str | None], list[Any]] = {}
        job = (self.controls.capabilities, self.controls.model)
        for r in records:
            if not isinstance(r, dict):
                continue
            try:
                _, controls = audio_record(r).applied_to(self.language, self.controls)
            except InputError:
                continue  # Transcribe makes it a dead letter naming the field
            ask = (controls.capabilities, controls.model)
            if ask != job:  # the job's own asks: the pre-flight checked them
                asks.setdefault(ask, []).append(r)
        return asks

    def screen(self, client: ClientConfig) -> None:
        """Records asking for a control (or model) the service does not advertise become UNSUPPORTED_OPTION
        dead letters here, before the run: a service that does not know an extension may ignore it, and
        the record would quietly get less than it asked. (The pre-flight stops the whole job only for
        what the job's flags ask.) One /healthz look per distinct ask."""
        for (capabilities, model), records in self._asks.items():
            found = not_offered(client, capabilities, model)
            if found is None:
                continue
            capability, why = found
            field = {"translate": "task", MODEL: "stt_model"}.get(capability, capability)
            error = VoxBeamError(f"the record's {field!r}: {why}", code=ErrorCode.UNSUPPORTED_OPTION.value)
            for r in records:
                self.rejected.append(dead_letter("preflight", r, error))
                self._dropped.add(id(r))

    def screened(self, records: list[Any]) -> list[Any]:
        return [r for r in records if id(r) not in self._dropped]

    def session(self) -> tuple[Service, Any]:
        v = self.config
        init = SttInit.asking(self.language, timestamps=v.timestamps, realtime=False, controls=self.controls)
        if v.redact_on == "server" and (v.redact or v.profanity):
            # The records' sessions ask the service to redact: the pre-flight checks it offers that.
            init = dataclasses.replace(
                init, redact=tuple(v.redact) or None, phone_region=v.phone_region, profanity=v.profanity
            )
        if v.diarize:  # the records' sessions ask the service to diarize: the pre-flight checks it offers that
            init = dataclasses.replace(
                init, enable_diarization=True, min_speakers=v.min_speakers, max_speakers=v.max_speakers
            )
        return "stt", init

    def build(
        self, p: beam.Pipeline, records: list[Any], service: ServiceSettings, run_id: str, progress_id: str | None
    ) -> None:
        v = self.config
        # Like synthesis's audio: each run writes its own copies.
        copies = storage.join(v.output, REDACTED_AUDIO, f"run={run_id}")
        result = (
            p
            | "Files" >> beam.Create(records, reshuffle=False)
            | "Transcribe" >> self.transcribe(service, progress_id, copies)
        )
        result[TRANSCRIPTS] | "WriteTranscripts" >> WriteTranscripts(v.output, run_id, captions=self.captions)
        if UNREDACTED in result:
            result[UNREDACTED] | "WriteUnredacted" >> WriteUnredacted(v.output, run_id)
        if REDACTED_AUDIO in result:
            result[REDACTED_AUDIO] | "WriteRedactedAudioManifest" >> WriteRedactedAudioManifest(v.output, run_id)
        self.dead_letters(p, result[DEAD_LETTERS]) | "WriteDeadLetters" >> WriteDeadLetters(v.output, run_id)

    def build_stream(self, p: beam.Pipeline, service: ServiceSettings, run_id: str, progress_id: str | None) -> None:
        v = self.config
        found = self.stream_messages(p) | "Notifications" >> AudioNotifications(
            v.input_pattern, dedup_window_s=v.dedup_minutes * 60, progress_id=progress_id
        )
        # Copies named by source, as synthesis's by id: a newer version of an object replaces its copy (the
        # manifest row says which version).
        copies = stream_prefix(v.output, REDACTED_AUDIO)
        result = found[RECORDS] | "Transcribe" >> self.transcribe(service, progress_id, copies)
        result[TRANSCRIPTS] | "WriteTranscripts" >> WriteTranscripts(
            v.output, run_id, captions=self.captions, window_s=v.window_seconds, progress_id=progress_id
        )
        if UNREDACTED in result:
            result[UNREDACTED] | "WriteUnredacted" >> WriteUnredacted(v.output, run_id, window_s=v.window_seconds)
        if REDACTED_AUDIO in result:
            result[REDACTED_AUDIO] | "WriteRedactedAudioManifest" >> WriteRedactedAudioManifest(
                v.output, run_id, window_s=v.window_seconds
            )
        self.stream_dead_letters(run_id, progress_id, found[DEAD_LETTERS], result[DEAD_LETTERS])


class Synthesis(Job):
    """Text records in, audio objects and manifest rows out."""

    kind = "synthesize"
    main_output = MANIFEST

    def __init__(self, config: JobConfig) -> None:
        super().__init__(config)
        self.tts = config.tts_params
        if not MIN_SAMPLE_RATE <= self.tts.sample_rate <= MAX_SAMPLE_RATE:
            raise UsageError("--sample_rate", f"must be between {MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE}")

    def read(self, summary: Summary) -> list[Any]:
        v = self.config
        replay = dead_letter_files(v.batch_input)
        found = TextRecords(*text_records(replay)) if replay is not None else read_text_records(v.batch_input)
        if not found.records and not found.rejected:
            raise UsageError("--input", f"{v.input} holds no records")
        summary.inputs = len(found.records) + len(found.rejected)
        check_writable(v.output)
        self.rejected = found.rejected
        records = found.records
        if v.skip_existing:
            done = earlier_rows(v.output, MANIFEST, ("id", "text_sha256"))
            records = [r for r in records if (r["id"], text_sha256(r["text"])) not in done]
            summary.skipped = len(found.records) - len(records)
        return records

    def session(self) -> tuple[Service, Any]:
        return "tts", self.tts.init()

    def build(
        self, p: beam.Pipeline, records: list[Any], service: ServiceSettings, run_id: str, progress_id: str | None
    ) -> None:
        v = self.config
        # Each run writes its own objects: a rerun (another voice, say) never changes what earlier manifests describe.
        result = (
            p
            | "Records" >> beam.Create(records, reshuffle=False)
            | "Synthesize"
            >> Synthesize(
                storage.join(v.output, AUDIO, f"run={run_id}"),
                service,
                self.tts,
                progress_id=progress_id,
            )
        )
        result[MANIFEST] | "WriteManifest" >> WriteManifest(v.output, run_id)
        self.dead_letters(p, result[DEAD_LETTERS]) | "WriteDeadLetters" >> WriteDeadLetters(v.output, run_id)

    def build_stream(self, p: beam.Pipeline, service: ServiceSettings, run_id: str, progress_id: str | None) -> None:
        v = self.config
        found = self.stream_messages(p) | "Records" >> TextRecordMessages(
            dedup_window_s=v.dedup_minutes * 60, progress_id=progress_id
        )
        # Objects by id, as in batch; a record's newer text replaces its audio (the manifest tells which text).
        result = found[RECORDS] | "Synthesize" >> Synthesize(
            stream_prefix(v.output, AUDIO), service, self.tts, progress_id=progress_id, unique_ids=False
        )
        result[MANIFEST] | "WriteManifest" >> WriteManifest(
            v.output, run_id, window_s=v.window_seconds, progress_id=progress_id
        )
        self.stream_dead_letters(run_id, progress_id, found[DEAD_LETTERS], result[DEAD_LETTERS])


def _source_key(record: Any) -> tuple[str, int, str] | None:
    """(uri, size, version) of the file a record names as it stands; None when there is none to skip."""
    uri = record.get("uri") if isinstance(record, dict) else record
    if not isinstance(uri, str) or not uri.strip():
        return None  # no file: the record ends as a dead letter
    try:
        s = storage.stat(uri.strip())
    except (OSError, ValueError):
        return None
    return s.uri, s.size, s.version


KINDS: dict[str, type[Job]] = {"transcribe": Transcription, "synthesize": Synthesis}
