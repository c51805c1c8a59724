"""Sans-I/O core of the VoxNexus WebSocket protocol, shared by client and server.

Parsing and serialisation, validation and error codes; the message dataclasses are in
``voxbeam.protocol_messages`` (and importable from here). Nothing here knows about sockets or
asyncio: callers hand in text frames and get messages back, or a ``ProtocolError`` that carries
the code the peer should be told.
"""

from __future__ import annotations

import binascii
import enum
import json
import uuid
from dataclasses import asdict
from typing import Any

import pybase64

# The messages are defined in protocol_messages; most callers import them from here.
from voxbeam.protocol_controls import ControlError, SttControls, check_speaker_bounds
from voxbeam.protocol_messages import AUTO_LANGUAGE as AUTO_LANGUAGE
from voxbeam.protocol_messages import (
    Audio,
    ClientMessage,
    Command,
    Error,
    FlushDone,
    Message,
    Ping,
    Pong,
    ServerMessage,
    SttInit,
    SttReady,
    Text,
    Transcript,
    TranscriptEntity,
    TranscriptWord,
    TtsInit,
    TtsReady,
    Unknown,
)
from voxbeam.protocol_messages import Service as Service
from voxbeam.protocol_messages import TtsParams as TtsParams
from voxbeam.protocol_secrets import redact as redact

STT_PATH = "/v1/stt/realtime"
TTS_PATH = "/v1/tts/realtime"
# Where clients and servers look for the API key(s) when none is given on the command line.
API_KEY_ENV = "VOXNEXUS_API_KEY"

MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 48000
STT_FORMATS = ("pcm",)
TTS_FORMATS = ("wav", "pcm", "mp3", "flac", "opus")
# ogg is the container of opus; both names are accepted for it.
TTS_FORMAT_ALIASES = {"ogg": "opus", "ogg_opus": "opus"}
# Entity type names an STT init's ``redact`` may list (there are seven types, and "all").
MAX_REDACT_NAMES = 16

# Close codes (RFC 6455 and the registry's application range).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_POLICY_VIOLATION = 1008
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013


class ErrorCode(enum.StrEnum):
    UNAUTHORIZED = "UNAUTHORIZED"
    INVALID_MESSAGE = "INVALID_MESSAGE"
    NOT_INITIALIZED = "NOT_INITIALIZED"
    UNSUPPORTED_FORMAT = "UNSUPPORTED_FORMAT"
    UNSUPPORTED_LANGUAGE = "UNSUPPORTED_LANGUAGE"
    UNSUPPORTED_SAMPLE_RATE = "UNSUPPORTED_SAMPLE_RATE"
    VOICE_NOT_FOUND = "VOICE_NOT_FOUND"
    INVALID_AUDIO = "INVALID_AUDIO"
    TEXT_TOO_LONG = "TEXT_TOO_LONG"
    MESSAGE_TOO_LARGE = "MESSAGE_TOO_LARGE"
    SERVER_BUSY = "SERVER_BUSY"
    IDLE_TIMEOUT = "IDLE_TIMEOUT"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    # Extension: the service cannot honour a control the init asks for (docs/protocol.md).
    UNSUPPORTED_OPTION = "UNSUPPORTED_OPTION"


RETRYABLE_CODES = frozenset({ErrorCode.SERVER_BUSY.value, ErrorCode.IDLE_TIMEOUT.value, ErrorCode.INTERNAL_ERROR.value})


class ProtocolError(Exception):
    """A frame broke the protocol; ``code`` is what the peer is told."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# What an error message quotes of a client's own value: a 900 KB 'format' must not come back as a 900 KB error.
QUOTED_CHARS = 64


def quoted(value: object) -> str:
    """``value``'s repr for an error message, cut to QUOTED_CHARS characters (saying how much was left out)."""
    text = repr(value)
    if len(text) <= QUOTED_CHARS:
        return text
    return f"{text[: QUOTED_CHARS - 1]}… ({len(text) - QUOTED_CHARS + 1} more characters)"


def new_request_id() -> str:
    return "req_" + uuid.uuid4().hex[:20]


# ---------------------------------------------------------------------------
# Serialisation


def serialize(msg: Message) -> str:
    """One message as a JSON text frame; ``None`` fields are left out."""
    if isinstance(msg, Audio):
        # Base64 needs no JSON escaping; json.dumps would scan every character of the frame.
        final = "true" if msg.is_final else "false"
        return f'{{"type":"audio","data":"{pybase64.b64encode_as_string(msg.data)}","is_final":{final}}}'
    out: dict[str, Any] = {}
    for key, value in asdict(msg).items():
        if value is None:
            continue
        if key == "words":  # a word's extensions (speaker) are left out when None, as a message's are
            value = [{k: v for k, v in w.items() if v is not None} for w in value]
        out[key] = value
    return json.dumps(out, separators=(",", ":"))


def _load(frame: str | bytes) -> dict[str, Any]:
    if isinstance(frame, bytes):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "binary frames are not supported; send JSON text frames")
    try:
        obj = json.loads(frame)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"malformed JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "a message must be a JSON object")
    if not isinstance(obj.get("type"), str):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "a message needs a string 'type'")
    return obj


def _field(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    value = obj.get(name, default)
    if value is None:
        return default
    # bool is an int in Python; numbers must not accept it and vice versa.
    if isinstance(value, bool) and kind is not bool and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"'{name}' must be {_kind_name(kind)}")
    if not isinstance(value, kind):
        if kind is int and isinstance(value, float):  # a number all the same, just not a whole one
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"'{name}' must be a whole number, not {quoted(value)}")
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"'{name}' must be {_kind_name(kind)}, not {quoted(value)}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", dict: "an object", list: "a list"}
    return " or ".join(sorted({names.get(k, k.__name__) for k in kinds}))


def _float(obj: dict[str, Any], name: str, default: float) -> float:
    value = _field(obj, name, (int, float), default)
    try:
        return float(value)
    except OverflowError:  # a JSON integer with hundreds of digits
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"'{name}' is out of range") from None


def _b64(data: Any) -> bytes:
    if not isinstance(data, str):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "'data' must be a base64 string")
    try:
        # SIMD decoding, validating the alphabet and padding: CPython's own runs at ~180 MB/s.
        return pybase64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(ErrorCode.INVALID_AUDIO, "'data' is not valid base64") from None


def check_sample_rate(rate: int) -> None:
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_SAMPLE_RATE,
            f"sample_rate {rate} is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz",
        )


def normalize_tts_format(fmt: str) -> str:
    fmt = fmt.lower()
    fmt = TTS_FORMAT_ALIASES.get(fmt, fmt)
    if fmt not in TTS_FORMATS:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_FORMAT, f"format {quoted(fmt)} is not supported; use one of {', '.join(TTS_FORMATS)}"
        )
    return fmt


def parse_client_message(frame: str | bytes, service: Service) -> ClientMessage:
    """Parse and validate one frame a client sent to the STT or TTS endpoint."""
    obj = _load(frame)
    kind = obj["type"]
    if kind == "ping":
        return Ping()
    if kind == "init":
        return _parse_stt_init(obj) if service == "stt" else _parse_tts_init(obj)
    if service == "stt" and kind == "audio":
        return Audio(data=_b64(obj.get("data")))
    if service == "stt" and kind == "command":
        command = _field(obj, "command", str)
        if command != "flush":
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE, f"unknown command {quoted(command)}; the only command is 'flush'"
            )
        return Command(command=command)
    if service == "tts" and kind == "text":
        text = _field(obj, "text", str)
        if text is None:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, "'text' must be a string")
        return Text(text=text, is_final=bool(_field(obj, "is_final", bool, False)))
    raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"unknown message type {quoted(kind)} for the {service} endpoint")


def _parse_stt_init(obj: dict[str, Any]) -> SttInit:
    rate = _field(obj, "sample_rate", int, 16000)
    check_sample_rate(rate)
    fmt = _field(obj, "format", str, "pcm").lower()
    if fmt not in STT_FORMATS:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_FORMAT, f"format {quoted(fmt)} is not supported; send 'pcm' (s16le mono)"
        )
    languages = _field(obj, "languages", list)
    if languages is not None and not all(isinstance(code, str) for code in languages):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "'languages' must be a list of language codes (strings)")
    redact = _field(obj, "redact", (str, list))
    if isinstance(redact, str):
        redact = [redact]
    if redact is not None and (
        len(redact) > MAX_REDACT_NAMES or not all(isinstance(n, str) and 0 < len(n) <= 40 for n in redact)
    ):
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            f"'redact' must be \"all\" or a list of at most {MAX_REDACT_NAMES} entity type names (strings)",
        )
    min_speakers, max_speakers = _field(obj, "min_speakers", int), _field(obj, "max_speakers", int)
    try:
        check_speaker_bounds(min_speakers, max_speakers)
        controls = SttControls(
            prompt=_field(obj, "prompt", str),
            hotwords=_field(obj, "hotwords", str),
            task=_field(obj, "task", str),
            languages=None if languages is None else tuple(languages),
            model=_field(obj, "model", str),
        ).checked()
    except ControlError as exc:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, str(exc)) from None
    return SttInit(
        language=_field(obj, "language", str),
        format=fmt,
        sample_rate=rate,
        enable_timestamps=_field(obj, "enable_timestamps", bool, False),
        enable_language_detection=_field(obj, "enable_language_detection", bool, False),
        realtime=_field(obj, "realtime", bool),
        prompt=controls.prompt,
        hotwords=controls.hotwords,
        task=controls.task,
        languages=controls.languages,
        redact=tuple(redact) if redact else None,
        phone_region=_field(obj, "phone_region", str),
        profanity=_field(obj, "profanity", str),
        model=controls.model,
        enable_diarization=_field(obj, "enable_diarization", bool),
        min_speakers=min_speakers,
        max_speakers=max_speakers,
    )


def _parse_tts_init(obj: dict[str, Any]) -> TtsInit:
    rate = _field(obj, "sample_rate", int, 16000)
    check_sample_rate(rate)
    voice_config = _field(obj, "voice_config", dict)
    return TtsInit(
        voice_id=_field(obj, "voice_id", str),
        language=_field(obj, "language", str),
        format=normalize_tts_format(_field(obj, "format", str, "wav")),
        sample_rate=rate,
        speed=_float(obj, "speed", 1.0),
        pitch=_float(obj, "pitch", 0.0),
        volume=_float(obj, "volume", 1.0),
        voice_config=voice_config,
    )


def parse_server_message(
    frame: str | bytes, service: Service | None = None, *, allow_unknown: bool = False
) -> ServerMessage:
    """Parse one frame from the service. Unknown fields are ignored, as a client should.

    ``service`` says which ``ready`` to expect (without it, one with ``voice_id`` is TTS's). An
    unknown ``type`` is an ``INVALID_MESSAGE`` unless ``allow_unknown``, which returns ``Unknown``.
    """
    obj = _load(frame)
    kind = obj["type"]
    try:
        if kind == "ready":
            if service == "tts" or (service is None and "voice_id" in obj):
                return TtsReady(
                    request_id=str(obj.get("request_id", "")),
                    voice_id=str(obj.get("voice_id", "")),
                    language=str(obj.get("language", "")),
                    format=str(obj.get("format", "")),
                    sample_rate=int(obj.get("sample_rate", 0)),
                )
            return SttReady(
                request_id=str(obj.get("request_id", "")),
                language=str(obj.get("language", "")),
                format=str(obj.get("format", "")),
                sample_rate=int(obj.get("sample_rate", 0)),
                model=obj["model"] if isinstance(obj.get("model"), str) else None,
            )
        if kind == "audio":
            return Audio(data=_b64(obj.get("data")), is_final=bool(obj.get("is_final", False)))
        if kind == "transcript":
            words = obj.get("words")
            entities = obj.get("entities")
            return Transcript(
                request_id=str(obj.get("request_id", "")),
                text=str(obj.get("text", "")),
                is_final=bool(obj.get("is_final", False)),
                offset=int(obj.get("offset", 0)),
                duration=int(obj.get("duration", 0)),
                language=obj.get("language"),
                language_probability=None
                if obj.get("language_probability") is None
                else float(obj["language_probability"]),
                confidence=None if obj.get("confidence") is None else float(obj["confidence"]),
                words=None
                if words is None
                else tuple(
                    TranscriptWord(
                        word=str(w["word"]),
                        offset=int(w.get("offset", 0)),
                        duration=int(w.get("duration", 0)),
                        confidence=float(w.get("confidence", 0.0)),
                        speaker=None if w.get("speaker") is None else str(w["speaker"]),
                    )
                    for w in words
                ),
                entities=None
                if entities is None
                else tuple(
                    TranscriptEntity(
                        type=str(e["type"]),
                        start_ms=int(e["start_ms"]),
                        end_ms=int(e["end_ms"]),
                        confidence=float(e.get("confidence", 0.0)),
                    )
                    for e in entities
                ),
                speaker=None if obj.get("speaker") is None else str(obj["speaker"]),
            )
        if kind == "flush_done":
            return FlushDone(request_id=str(obj.get("request_id", "")))
        if kind == "error":
            return Error(
                error=str(obj.get("error", "")),
                code=str(obj.get("code", ErrorCode.INTERNAL_ERROR.value)),
                request_id=obj.get("request_id"),
            )
        if kind == "pong":
            return Pong()
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"malformed {kind!r} message: {exc}") from None
    if allow_unknown:
        return Unknown(kind)
    raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"unknown server message type {kind!r}")


def error(code: ErrorCode, message: str, request_id: str | None = None) -> Error:
    return Error(error=message, code=code.value, request_id=request_id)


def message_type(frame: str | bytes) -> str | None:
    """The ``type`` of a frame that is a JSON object, else None (lets a server name the right error)."""
    try:
        kind: str = _load(frame)["type"]
        return kind
    except ProtocolError:
        return None
