"""The engine seam: what a speech-to-text or text-to-speech engine gives the server.

The protocol, session and admission code sees only these types. An STT engine turns PCM into
``Recognized`` results; a TTS engine turns text into PCM, one block per sentence. Engines run in
worker processes; ``resolve``/``catalog`` run once in the server process at start, so a missing
or tampered model stops the server with one line before any worker is spawned.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from voxbeam.protocol_controls import SttControls

# The parameters a TTS init may set, and what each voice says it honours.
TTS_PARAMETERS = ("speed", "pitch", "volume", "style", "role", "degree")


@dataclass(frozen=True)
class WordTiming:
    """A spoken word; offsets in ms from the start of the recognition session."""

    word: str
    offset_ms: int
    duration_ms: int
    confidence: float


@dataclass(frozen=True)
class Recognized:
    """A partial or final result. Finals carry confidence, words (when asked for) and language."""

    text: str
    is_final: bool
    offset_ms: int
    duration_ms: int
    confidence: float | None = None
    words: tuple[WordTiming, ...] | None = None
    language: str | None = None
    language_probability: float | None = None


@dataclass(frozen=True)
class SttModel:
    """A resolved recognition model: what a worker loads, and what the server tells clients."""

    engine: str
    name: str
    path: str
    sha256: str
    # ISO 639-1 codes ("en", "zh", ...) the model transcribes.
    languages: tuple[str, ...]
    # Whether the model can tell which of its languages is spoken (not just assume its only one).
    detects_language: bool
    # The recognition controls its engine honours with it (protocol_controls.CAPABILITIES): /healthz lists them.
    controls: frozenset[str] = frozenset()
    # About how much resident memory a worker gains by loading it (bytes; 0: unknown): the server checks at
    # start that each worker's memory ceiling has room for the tiers it loads on first use.
    memory: int = 0

    @property
    def label(self) -> str:
        """Provenance for transcripts: engine, model and a prefix of the weights' SHA-256."""
        return f"{self.engine}/{self.name}@sha256:{self.sha256[:12]}"


@dataclass(frozen=True)
class SttSettings:
    """How workers run the STT engine (chosen by ``voxbeam serve`` options)."""

    model: SttModel
    threads: int = 1
    max_utterance_s: float = 30.0
    # The chosen engine's own settings, by name (an engine reads those it knows, e.g. pocketsphinx's
    # ``decoders``): the seam carries them without knowing them.
    engine_options: Mapping[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Deferred:
    """Decoding a stream hands back instead of doing it: any worker's ``SttEngine.decode`` can do it.

    A bulk stream that has cut off a stretch of audio needs nothing more of it, so the server can
    decode it in whichever worker is free while the stream's own worker goes on with what follows
    (one long file no longer keeps its work on one core). ``work`` must pickle.
    """

    work: Any
    audio_s: float  # how much audio it is: what the server balances on


# What a stream's push and finish return, in order of their audio.
Results = Sequence[Recognized | Deferred]


class SttStream(abc.ABC):
    """One recognition stream (an STT session's state inside a worker)."""

    @abc.abstractmethod
    def push(self, pcm: bytes, live: bool) -> Results:
        """Feed PCM s16le mono at the stream's rate; ``live``: audio arrives at about real time."""

    @abc.abstractmethod
    def finish(self, live: bool) -> Results:
        """End the recognition session: every remaining final. The stream then starts afresh at offset 0."""

    def close(self) -> None:  # noqa: B027 - most streams hold nothing to release
        """Release what the stream holds."""


class SttEngine(abc.ABC):
    """A speech-to-text engine loaded in a worker process."""

    name: ClassVar[str]
    # What `voxbeam serve` names when --stt_model is not given.
    default_model: ClassVar[str]
    # The CPU an audio second costs when it comes live over what it costs in bulk: the server admits
    # live streams up to its measured bulk speed over this (an engine that decodes each chunk once
    # as it comes, as in bulk, costs 1).
    live_cost: ClassVar[float] = 1.0

    @classmethod
    def live_cost_with(cls, options: Mapping[str, Any]) -> float:
        """``live_cost`` with the engine options it runs with (``SttSettings.engine_options``)."""
        return cls.live_cost

    @classmethod
    @abc.abstractmethod
    def resolve(cls, model: str | None) -> SttModel:
        """Find and verify the model's weights (server process, at start); raises ``ModelError``."""

    @abc.abstractmethod
    def __init__(self, settings: SttSettings) -> None: ...

    @abc.abstractmethod
    def open(
        self, *, language: str | None, sample_rate: int, words: bool, detect: bool, controls: SttControls | None = None
    ) -> SttStream:
        """A stream for ``language`` (an ISO code, or None to detect), audio at ``sample_rate``; ``controls``
        (checked by the server against ``SttModel.controls``; candidate languages as the model's codes)."""

    def decode(self, works: list[Any]) -> list[list[Recognized]]:
        """The finals of each ``Deferred.work`` this engine's streams returned (in any worker), in one batch."""
        raise NotImplementedError(f"{self.name} streams defer no work")


@dataclass(frozen=True)
class Voice:
    """A catalog entry: a ``vl-*`` id mapped to an engine and a model."""

    id: str
    name: str
    language: str  # BCP 47, e.g. en-US
    gender: str
    engine: str
    model: str  # engine-specific: an eSpeak NG voice name, a Piper .onnx path
    sample_rate: int
    honours: frozenset[str]
    description: str = ""
    sha256: str = ""


@dataclass(frozen=True)
class Prosody:
    """What an init asks of the voice, validated and engine-neutral.

    ``speed`` and ``volume`` are factors, ``pitch`` is -1..1 (one octave down to one up, engines
    map it as they can), ``style``/``role`` are catalog names, ``degree`` scales the style.
    """

    speed: float = 1.0
    pitch: float = 0.0
    volume: float = 1.0
    style: str | None = None
    role: str | None = None
    degree: float = 1.0


# The most audio a text may become: speech runs well under this per character in any voice
# (numbers read out included), so more means text the voice spells out letter by letter.
RENDER_S_PER_CHAR = 0.4
RENDER_S_SLACK = 10.0
SLOWEST_STYLE = 0.7


def max_render_seconds(text: str, prosody: Prosody) -> float:
    """The audio budget of ``text`` (an utterance, or one piece of it)."""
    return (RENDER_S_SLACK + RENDER_S_PER_CHAR * len(text)) / min(1.0, prosody.speed) / SLOWEST_STYLE


@dataclass(frozen=True)
class Catalog:
    """The voices an engine offers, and one line per voice it could not load."""

    voices: tuple[Voice, ...] = ()
    problems: tuple[str, ...] = field(default=())


class TtsEngine(abc.ABC):
    """A text-to-speech engine loaded in a worker process."""

    name: ClassVar[str]

    @classmethod
    @abc.abstractmethod
    def catalog(cls, voices_dir: str | None) -> Catalog:
        """The engine's voices (server process, at start); problems are reported, not raised."""

    @abc.abstractmethod
    def __init__(self, threads: int) -> None: ...

    @abc.abstractmethod
    def render(self, text: str, voice: Voice, prosody: Prosody) -> Iterator[bytes]:
        """PCM s16le mono at ``voice.sample_rate``, one block per sentence, as each is rendered.

        No single call into the engine's model may render an unbounded amount of text: the engine
        cuts long sentences in its own unit (phonemes, characters) and joins the audio.
        """

    def audio_seconds(self, text: str, voice: Voice, prosody: Prosody) -> float | None:
        """How long ``text`` would sound, estimated before rendering it, when that is cheap (None: unknown).

        An utterance the voice would spell out letter by letter is refused before it costs minutes.
        """
        return None

    def give_back(self) -> None:
        """Free what the model's runtime keeps from its largest render (called when the worker is idle)."""
        return None
