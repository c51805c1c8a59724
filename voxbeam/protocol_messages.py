"""The protocol's messages as typed, immutable values (``voxbeam.protocol`` parses and serialises them).

Client to service: ``SttInit``/``TtsInit``, ``Audio``, ``Text``, ``Command``, ``Ping``; service to
client: ``SttReady``/``TtsReady``, ``Transcript``, ``FlushDone``, ``Audio``, ``Error``, ``Pong``, and
``Unknown`` for a type this version does not know.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

from voxbeam.protocol_controls import SttControls

# The protocol's two services (its two WebSocket paths): speech-to-text and text-to-speech.
Service = Literal["stt", "tts"]

# The STT init language that asks the service to detect it (an extension: the spec names codes only).
AUTO_LANGUAGE = "auto"


@dataclass(frozen=True)
class TranscriptWord:
    word: str
    offset: int
    duration: int
    confidence: float
    # Extension: who said it (a diarizing session's label, "S1", "S2", ...); None: not diarized.
    speaker: str | None = None


@dataclass(frozen=True)
class TranscriptEntity:
    """Where a final's redacted value was (ms, the clock of ``offset``): its type and confidence, never the value."""

    type: str
    start_ms: int
    end_ms: int
    confidence: float


@dataclass(frozen=True)
class SttInit:
    type: Literal["init"] = "init"
    # None: the spec's examples may leave it out; "auto" asks the service to detect it.
    language: str | None = None
    format: str = "pcm"
    sample_rate: int = 16000
    enable_timestamps: bool = False
    enable_language_detection: bool = False
    # Extension (spec-only services ignore it): true for audio sent at real time (captions, an
    # assistant), false for files sent as fast as they go; voxbeam serve admits live sessions only
    # as far as it can keep them real time. None: not said (the server tells by how audio arrives).
    realtime: bool | None = None
    # Extensions: recognition controls (voxbeam.protocol_controls); None leaves each out.
    prompt: str | None = None
    hotwords: str | None = None
    task: str | None = None
    languages: tuple[str, ...] | None = None
    # Extensions: redaction on the server (voxbeam.redaction; names checked by the service, which
    # refuses one it does not know). ``redact``: entity type names or "all"; None leaves each out.
    redact: tuple[str, ...] | None = None
    phone_region: str | None = None
    profanity: str | None = None
    # Extension: the served model tier to use (``/healthz`` ``models``); None: the service's default.
    model: str | None = None
    # Extensions: speaker diarization (``/healthz`` capability "diarization"): a ``speaker`` on each word
    # and final, finals split at speaker changes; the count bounded when given. None leaves each out.
    enable_diarization: bool | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None

    @classmethod
    def asking(
        cls,
        language: str,
        sample_rate: int = 16000,
        timestamps: bool = True,
        realtime: bool | None = None,
        controls: SttControls | None = None,
    ) -> SttInit:
        """The init a client sends for ``language`` (and ``controls``, checked: raises ``ControlError``).

        "auto" becomes the spec's own way to ask for detection: no ``language`` and
        ``enable_language_detection: true`` (a service that knows no "auto" would refuse it).
        """
        auto = language.strip().lower() == AUTO_LANGUAGE
        c = (controls or SttControls()).checked()
        return cls(
            language=None if auto else language,
            sample_rate=sample_rate,
            enable_timestamps=timestamps,
            enable_language_detection=auto,
            realtime=realtime,
            prompt=c.prompt,
            hotwords=c.hotwords,
            task=c.task,
            languages=c.languages,
            model=c.model,
        )

    @property
    def controls(self) -> SttControls:
        return SttControls(self.prompt, self.hotwords, self.task, self.languages, self.model)


@dataclass(frozen=True)
class TtsParams:
    """What a synthesis asks for: voice, language, audio format and rate, prosody (speed, pitch, volume,
    and ``voice_config``'s style/role/degree).

    The one list of them: the jobs' flags take their defaults from here, a job and the ``Synthesize``
    transform carry one, a synthesis record may override any field (``overridden_by``), and
    ``TtsInit`` is these fields on the wire.
    """

    voice_id: str | None = None
    language: str | None = None
    format: str = "wav"
    sample_rate: int = 16000
    speed: float = 1.0
    pitch: float = 0.0
    volume: float = 1.0
    voice_config: dict[str, Any] | None = None

    def overridden_by(self, record: Mapping[str, Any]) -> TtsParams:
        """These parameters with the ones ``record`` sets (a None value sets nothing)."""
        given = {f.name: record[f.name] for f in fields(TtsParams) if record.get(f.name) is not None}
        return replace(self, **given) if given else self

    def init(self, **changes: Any) -> TtsInit:
        """The init message that asks for these parameters (``changes`` replace some)."""
        return TtsInit(**{**{f.name: getattr(self, f.name) for f in fields(TtsParams)}, **changes})


@dataclass(frozen=True)
class _InitType:
    type: Literal["init"] = "init"


@dataclass(frozen=True)
class TtsInit(TtsParams, _InitType):
    """The TTS session's init: ``type`` first on the wire, then the ``TtsParams`` fields."""


@dataclass(frozen=True)
class Audio:
    """Client audio (STT) or server audio (TTS); ``data`` is raw bytes, base64 on the wire."""

    data: bytes
    is_final: bool = False
    type: Literal["audio"] = "audio"


@dataclass(frozen=True)
class Text:
    text: str
    is_final: bool = False
    type: Literal["text"] = "text"


@dataclass(frozen=True)
class Command:
    command: str
    type: Literal["command"] = "command"


@dataclass(frozen=True)
class Ping:
    type: Literal["ping"] = "ping"


@dataclass(frozen=True)
class Pong:
    type: Literal["pong"] = "pong"


@dataclass(frozen=True)
class SttReady:
    request_id: str
    language: str
    format: str
    sample_rate: int
    # Not in the spec (clients ignore unknown fields): names the recognition model, for provenance.
    model: str | None = None
    type: Literal["ready"] = "ready"


@dataclass(frozen=True)
class TtsReady:
    request_id: str
    voice_id: str
    language: str
    format: str
    sample_rate: int
    type: Literal["ready"] = "ready"


@dataclass(frozen=True)
class Transcript:
    request_id: str
    text: str
    is_final: bool
    offset: int = 0
    duration: int = 0
    language: str | None = None
    confidence: float | None = None
    words: tuple[TranscriptWord, ...] | None = None
    # Not in the spec (clients ignore unknown fields): how sure a language detection is.
    language_probability: float | None = None
    # Not in the spec: on a final of a session that asked for redaction, what was masked (may be empty).
    entities: tuple[TranscriptEntity, ...] | None = None
    # Not in the spec: on a final of a session that asked for diarization, who said it ("S1", ...).
    speaker: str | None = None
    type: Literal["transcript"] = "transcript"


@dataclass(frozen=True)
class FlushDone:
    request_id: str
    type: Literal["flush_done"] = "flush_done"


@dataclass(frozen=True)
class Error:
    error: str
    code: str
    request_id: str | None = None
    type: Literal["error"] = "error"


@dataclass(frozen=True)
class Unknown:
    """A server message of a type this version does not know; a client ignores it (the spec may grow)."""

    kind: str
    type: Literal["unknown"] = "unknown"


ClientMessage = SttInit | TtsInit | Audio | Text | Command | Ping
ServerMessage = SttReady | TtsReady | Transcript | FlushDone | Audio | Error | Pong | Unknown
Message = ClientMessage | ServerMessage
