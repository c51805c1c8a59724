"""The jobs' flags, defined once, below both layers that build parsers from them: the command line
(``voxbeam.jobs.args``) and Beam's ``PipelineOptions`` (``voxbeam.beam.options``). No Beam import here,
so ``--help`` is instant."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from voxbeam.flag_values import number, phone_region, redact_types, sample_rate, whole_number
from voxbeam.protocol import API_KEY_ENV, AUTO_LANGUAGE, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, TTS_FORMATS, TtsParams
from voxbeam.protocol_controls import MAX_HOTWORDS_CHARS, MAX_PROMPT_CHARS, TASKS
from voxbeam.redaction import ENTITY_TYPES, PROFANITY_MODES

# A job fails (exit 3) when more than this fraction of its records are dead letters.
DEFAULT_MAX_DEAD_LETTER_FRACTION = 0.05

KINDS = ("transcribe", "synthesize")
# Where a transcription's redaction is applied (--redact_on; ``Transcribe(redact_on=...)``).
REDACT_ON = ("client", "server")
# How a file's channels are transcribed (--channels; ``Transcribe(channels=...)``; ``voxbeam.channels``).
CHANNELS = ("auto", "split", "mix")
# What replaces a redacted span in --redact_audio's copies (``voxbeam.bleep.MODES``, which imports PyAV).
REDACT_AUDIO = ("tone", "silence")


# Recognition controls whose flag is not spelled as their field (``SttControls.model`` is --stt_model).
_CONTROL_FLAGS = {"model": "--stt_model"}


def control_flag(field: str) -> str:
    """The job flag that sets the recognition control ``field`` (``voxbeam.protocol_controls.SttControls``)."""
    return _CONTROL_FLAGS.get(field, f"--{field}")


@dataclass(frozen=True)
class Flag:
    """One option of a job: ``--name``, its parser, its default and what the help says about it."""

    name: str
    help: str
    default: Any = None
    type: Callable[[str], Any] = str
    choices: tuple[str, ...] | None = None
    # What an unset option means, for options whose default is None or empty.
    default_help: str = ""
    metavar: str | None = None

    @property
    def option(self) -> str:
        return f"--{self.name}"

    def help_text(self) -> str:
        shown = self.default_help or str(self.default)
        return f"{self.help} ({'required' if shown == 'required' else 'default: ' + shown})".replace("%", "%%")

    def add_to(self, parser: Any) -> None:
        """Add the option to an argparse parser (ours, or Beam's for the PipelineOptions classes)."""
        parser.add_argument(
            self.option,
            default=self.default,
            type=self.type,
            choices=self.choices,
            metavar=None if self.choices else (self.metavar or self.name.upper()),
            help=self.help_text(),
        )


def split_list(value: str | None) -> tuple[str, ...]:
    """A comma-separated flag's values (--endpoint, --captions)."""
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


BOOLEAN = ("true", "false")

SERVICE_FLAGS = (
    Flag(
        "endpoint",
        "VoxNexus-compatible service base URL(s), comma-separated (e.g. wss://api.voxnexus.ai)",
        default_help="on a local runner, an embedded `voxbeam serve` started for the run",
        metavar="URL",
    ),
    Flag(
        "api_key",
        "API key for the service; kept out of logs and display data (on Dataflow prefer --api_key_secret)",
        default_help=f"${API_KEY_ENV}",
        metavar="KEY",
    ),
    Flag(
        "api_key_secret",
        "Secret Manager secret holding the API key: projects/P/secrets/S[/versions/V]",
        default_help="none",
        metavar="NAME",
    ),
    Flag(
        "auth",
        "how to send the key: X-Api-Key header or ?token= query parameter",
        "header",
        choices=("header", "query"),
    ),
    Flag(
        "sessions_per_worker",
        "concurrent service sessions per worker process",
        None,
        whole_number(1),
        default_help="with --endpoint, the sessions that keep the service busy (/healthz bulk_sessions) x 0.8 / "
        "the job's worker processes (8 when it advertises none); 8 on the embedded server",
        metavar="N",
    ),
    Flag(
        "retry_budget",
        "seconds a record keeps retrying transient failures (service down, restarting or busy, lost connections, "
        "timeouts) before it becomes a RETRIES_EXHAUSTED dead letter; an outage longer than this fails the "
        "remaining records at once",
        600.0,
        number(minimum=0.0),
        metavar="S",
    ),
    Flag(
        "max_attempts",
        "a cap on attempts per record, on top of --retry_budget (waiting for an unavailable service is not an attempt)",
        default_help="no cap",
        type=whole_number(1),
        metavar="N",
    ),
    Flag(
        "ca_bundle",
        "CA bundle for verifying a wss:// service's certificate",
        default_help="the system's CAs",
        metavar="PEM",
    ),
)

_OUTPUT_HELP = {
    "transcribe": "output prefix (local folder or gs://bucket/path) for transcripts, captions and dead letters",
    "synthesize": "output prefix (local folder or gs://bucket/path) for audio objects, manifest and dead letters",
}
_INPUT_HELP = {
    "transcribe": "audio to transcribe: a glob, a folder (every file below it), or a text file (.txt, .lst) "
    "listing one URI per line; local paths or gs:// URIs; wav, flac, mp3, ogg/opus, m4a; or records (.jsonl or "
    ".parquet, or a glob of them) of uri and any of language, prompt, hotwords, task, languages, stt_model, "
    "which override the flags for that file",
    "synthesize": "text records: text lines (.txt), JSON lines (.jsonl), CSV or Parquet with id and text",
}


_MESSAGES_HELP = {
    "transcribe": "Cloud Storage notifications (OBJECT_FINALIZE; other events are ignored), gs:// URIs or JSON "
    '{"uri": ...}',
    "synthesize": "one JSON text record per message (id, text and overrides, as in JSON lines)",
}
STREAM_SOURCES = ("input_subscription", "input_topic")


def _stream_flags(kind: str) -> tuple[Flag, ...]:
    return (
        Flag(
            "input_subscription",
            f"stream: read {_MESSAGES_HELP[kind]} from this Pub/Sub subscription (projects/P/subscriptions/S) "
            "and run until stopped (Ctrl-C locally, drain on Dataflow), instead of --input",
            default_help="none: a batch run over --input",
            metavar="SUBSCRIPTION",
        ),
        Flag(
            "input_topic",
            "stream: as --input_subscription, through a subscription of the job's own on this topic "
            "(projects/P/topics/T)",
            default_help="none",
            metavar="TOPIC",
        ),
        Flag(
            "window_seconds",
            "stream: outputs are written per fixed window of this many seconds (of publish time), under "
            "<output>/stream/<kind>/date=.../hour=.../window=.../",
            60.0,
            number(minimum=1.0),
            metavar="S",
        ),
        Flag(
            "dedup_minutes",
            "stream: a message repeating an object version (or a record's id and text) within this many minutes "
            "of the first is dropped as a redelivery",
            60.0,
            number(minimum=0.0),
            metavar="M",
        ),
    )


def _job_flags(kind: str) -> tuple[Flag, ...]:
    return (
        Flag("input", _INPUT_HELP[kind], default_help="required, unless --input_subscription or --input_topic"),
        Flag("output", _OUTPUT_HELP[kind], default_help="required"),
        Flag(
            "max_dead_letter_fraction",
            "largest share of records that may become dead letters while the run still exits 0; above it "
            "the exit status is 3, or 4 when every record failed",
            DEFAULT_MAX_DEAD_LETTER_FRACTION,
            number(0.0, 1.0),
            metavar="F",
        ),
    )


TRANSCRIBE_FLAGS = (
    *_job_flags("transcribe"),
    Flag(
        "skip_existing",
        "transcribe only files that are new or changed (URI, size, version) since earlier runs under the same --output",
        "false",
        choices=BOOLEAN,
    ),
    Flag(
        "language",
        f"language of the audio (en-US, de, ...), or {AUTO_LANGUAGE}: the service detects it per file and each "
        "transcript row records what it found",
        AUTO_LANGUAGE,
    ),
    Flag("timestamps", "word timings in the transcripts (captions need them)", "true", choices=BOOLEAN),
    Flag("captions", "caption files to write beside the transcripts: srt, vtt or srt,vtt", default_help="none"),
    # Recognition controls (voxbeam.protocol_controls): a service must advertise each one asked for.
    Flag(
        "prompt",
        f"text the recordings follow or resemble (earlier dialogue, names, terms) to steer recognition; at most "
        f"{MAX_PROMPT_CHARS} characters",
        default_help="none",
        metavar="TEXT",
    ),
    Flag(
        "hotwords",
        f"words and names recognition should favour, e.g. 'Dashwood Norland'; at most {MAX_HOTWORDS_CHARS} characters",
        default_help="none",
        metavar="WORDS",
    ),
    Flag("task", "transcribe, or translate the speech into English text", TASKS[0], choices=TASKS),
    Flag(
        "languages",
        f"with --language {AUTO_LANGUAGE}: the languages detection chooses from, comma-separated (en,es,fr)",
        default_help="any the service knows",
        metavar="CODES",
    ),
    Flag(
        "stt_model",
        "the recognition model to use, among those the service serves (voxbeam serve --stt_model tiny.en,base; "
        "its /healthz models): e.g. base, the multilingual one; the transcripts' model column names it",
        default_help="the service's default",
        metavar="NAME",
    ),
    Flag(
        "redact",
        "personal data to mask in the text, words, segments and captions (timings kept), each listed in the "
        f"entities column: all, or a comma list of {', '.join(ENTITY_TYPES)}",
        default_help="none",
        type=redact_types,
        metavar="TYPES",
    ),
    Flag(
        "phone_region",
        "region whose phone numbers --redact looks for (GB, DE, ...)",
        default_help="the region of the transcript's language (en-GB: GB, de: DE), else US",
        type=phone_region,
        metavar="REGION",
    ),
    Flag(
        "profanity",
        "strong profanity in the transcripts: masked, removed or tagged",
        choices=PROFANITY_MODES,
        default_help="kept",
    ),
    Flag(
        "redact_on",
        "where --redact and --profanity are applied: client (this job, after recognition: any service) or "
        "server (the service masks every final itself and must offer it; the text as recognised never leaves it)",
        REDACT_ON[0],
        choices=REDACT_ON,
    ),
    Flag(
        "diarize",
        "label who speaks: words and segments get a speaker (the service must offer it)",
        "false",
        choices=BOOLEAN,
    ),
    Flag("min_speakers", "with --diarize: the fewest speakers a file holds", type=whole_number(1), default_help="1"),
    Flag("max_speakers", "with --diarize: the most speakers a file holds", type=whole_number(1), default_help="any"),
    Flag(
        "channels",
        "a file of two or more channels (a stereo call): mix them to one stream; split: transcribe each as its own "
        "stream, words and segments tagged with their channel (0, 1, ...), the other side's bleed gated out, and "
        "with --diarize speakers per channel (C0-S1, C1-S1); auto: split when the channels carry different "
        "speech (two channels each clearly louder than the other on part of the first 2 minutes), mix "
        "duplicated mono",
        CHANNELS[0],
        choices=CHANNELS,
    ),
    Flag(
        "redact_keep_original",
        "also write the unredacted text, words and segments, to <output>/unredacted/ only (with --redact or "
        "--profanity)",
        "false",
        choices=BOOLEAN,
    ),
    Flag(
        "redact_audio",
        "also write a copy of every input with each --redact value's time span replaced by a 1 kHz tone or by "
        "silence, on all channels, in the input's container and codec where possible (else FLAC), to "
        "<output>/redacted_audio/, listed in <output>/redacted_audio_manifest/ (with --redact)",
        choices=REDACT_AUDIO,
        default_help="off",
    ),
    *_stream_flags("transcribe"),
    Flag(
        "input_pattern",
        "stream: only objects whose names match this glob (* within a folder, ** across), e.g. calls/**/*.wav",
        default_help="every object",
        metavar="GLOB",
    ),
)

# The synthesis flags' defaults are TtsParams' own.
_TTS = TtsParams()

SYNTHESIZE_FLAGS = (
    *_job_flags("synthesize"),
    Flag(
        "skip_existing",
        "render only records whose id and text no earlier run under the same --output rendered",
        "false",
        choices=BOOLEAN,
    ),
    Flag("voice_id", "default voice (e.g. vl-jenny); records may override it", default_help="the service's choice"),
    Flag("language", "default language (e.g. en-US); records may override it", default_help="the voice's"),
    Flag("audio_format", "format of the audio objects", _TTS.format, choices=(*TTS_FORMATS, "ogg")),
    Flag("sample_rate", f"sample rate in Hz, {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE}", _TTS.sample_rate, sample_rate),
    Flag("speed", "speaking rate multiplier", _TTS.speed, number(minimum=0.0)),
    Flag("pitch", "pitch offset", _TTS.pitch, number()),
    Flag("volume", "volume multiplier", _TTS.volume, number(minimum=0.0)),
    *_stream_flags("synthesize"),
)

FLAGS: dict[str, tuple[Flag, ...]] = {
    "transcribe": TRANSCRIBE_FLAGS + SERVICE_FLAGS,
    "synthesize": SYNTHESIZE_FLAGS + SERVICE_FLAGS,
}
