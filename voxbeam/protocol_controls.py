"""Recognition controls: the STT init extensions that steer how speech is heard (docs/protocol.md).

``prompt`` (text the audio follows, such as earlier dialogue or a glossary), ``hotwords`` (words and
names to favour), ``task`` (``transcribe``, or ``translate`` into English) and ``languages`` (the
candidates detection chooses from when the language is ``auto``), and ``model``: the model tier a service
serves that the session is to be heard with (``voxbeam serve --stt_model tiny.en,base``). A spec-only
service ignores them, so a client asks only a service that advertises them (``CAPABILITIES``, and for
``model`` the ``models`` it lists, in ``/healthz``). Both ends check
values here: the jobs turn a ``ControlError`` into a usage error naming the flag, the server into an
``INVALID_MESSAGE``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TASKS = ("transcribe", "translate")
# Sizes a service accepts (characters). Whisper reads about the last 150 tokens of a prompt and the
# first 80 of the hotwords: an English prompt this long fits whole.
MAX_PROMPT_CHARS = 500
MAX_HOTWORDS_CHARS = 250
MAX_LANGUAGES = 16
# A model's name: a packaged tier (tiny.en, base), a faster-whisper name or a directory's name.
MAX_MODEL_CHARS = 200
# The most speakers a diarizing init may bound its count by (``min_speakers``/``max_speakers``).
MAX_SPEAKERS = 32
# What a service advertises in /healthz ``capabilities`` when it diarizes (``enable_diarization``).
DIARIZATION = "diarization"
# What a service advertises in /healthz ``capabilities`` for each control it honours.
CAPABILITIES = ("prompt", "hotwords", "translate", "languages")

_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8}){0,3}")
# Characters a prompt may not hold: controls other than tab and newlines (and lone surrogates, below).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class ControlError(ValueError):
    """A control's value is unusable; ``field`` names it (``prompt``, ``hotwords``, ``task``, ``languages``,
    ``model``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"'{field}' {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class SttControls:
    """What a transcription asks beyond the spec; all None: nothing (the spec's own init)."""

    prompt: str | None = None
    hotwords: str | None = None
    task: str | None = None
    languages: tuple[str, ...] | None = None
    # The served model to hear the audio with (None: the service's default). Not a capability: a service
    # lists the models it serves in /healthz ``models``.
    model: str | None = None

    def checked(self) -> SttControls:
        """These controls normalised (blank text dropped, ``transcribe`` left out, languages deduplicated);
        raises ``ControlError`` for a value no service should take."""
        languages = None
        if self.languages is not None:
            languages = tuple(dict.fromkeys(code.strip() for code in self.languages if code.strip()))
            if len(languages) > MAX_LANGUAGES:
                raise ControlError("languages", f"names {len(languages)} languages; at most {MAX_LANGUAGES}")
            for code in languages:
                if not _LANGUAGE.fullmatch(code):
                    raise ControlError("languages", f"holds {code[:40]!r}, not a language code (en, es-MX, ...)")
        task = None if self.task is None else self.task.strip().lower()
        if task is not None and task not in TASKS:
            raise ControlError("task", f"must be {' or '.join(TASKS)}, not {task[:40]!r}")
        return SttControls(
            prompt=_text("prompt", self.prompt, MAX_PROMPT_CHARS),
            hotwords=_text("hotwords", self.hotwords, MAX_HOTWORDS_CHARS),
            task=None if task == "transcribe" else task,
            languages=languages or None,
            model=_text("model", self.model, MAX_MODEL_CHARS),
        )

    @property
    def capabilities(self) -> tuple[str, ...]:
        """The capabilities a service must advertise to honour these controls."""
        asked = {
            "prompt": self.prompt is not None,
            "hotwords": self.hotwords is not None,
            "translate": self.task == "translate",
            "languages": self.languages is not None,
        }
        return tuple(name for name in CAPABILITIES if asked[name])


def check_speaker_bounds(min_speakers: int | None, max_speakers: int | None) -> None:
    """Raises ``ControlError`` unless each bound given is 1 to ``MAX_SPEAKERS`` and min <= max."""
    for field, n in (("min_speakers", min_speakers), ("max_speakers", max_speakers)):
        if n is not None and not 1 <= n <= MAX_SPEAKERS:
            raise ControlError(field, f"must be 1 to {MAX_SPEAKERS}, not {n}")
    if min_speakers is not None and max_speakers is not None and min_speakers > max_speakers:
        raise ControlError("min_speakers", f"({min_speakers}) is more than 'max_speakers' ({max_speakers})")


def _text(field: str, value: str | None, limit: int) -> str | None:
    if value is None or not value.strip():
        return None
    if len(value) > limit:
        raise ControlError(field, f"is {len(value)} characters; at most {limit}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ControlError(field, "holds a lone surrogate: not text") from None
    if _CONTROL.search(value):
        raise ControlError(field, "holds control characters")
    return value.strip()
