"""The voice catalog and the validation of speed, pitch, volume and voice_config.

Engine-neutral: each TTS engine lists its voices (``engines/*.py``); this module puts them in one
catalog (Piper's first, so a language's default is its neural voice when there is one), resolves
an init's ``voice_id``/``language`` to a voice, and turns the init's parameters into a
``Prosody`` that the voice honours, or a clear INVALID_MESSAGE. Engines map ``Prosody`` onto their
own controls; the styles and roles below say what each name means.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from voxbeam.protocol import ErrorCode, ProtocolError, TtsInit, quoted
from voxbeam.server.engines.base import Prosody, Voice
from voxbeam.server.engines.styles import ROLES, STYLES

SPEED_RANGE = (0.5, 2.0)
PITCH_RANGE = (-1.0, 1.0)
VOLUME_RANGE = (0.0, 2.0)
DEGREE_RANGE = (0.01, 2.0)
# The quietest the voice may be made (volume x its style's factor): below, it is near silence, which
# nobody asks for on purpose (whispering at degree 1.67 and above once gave silent audio, no error).
MIN_EFFECTIVE_VOLUME = 0.05


_ROLES_LOWER = {k.lower(): k for k in ROLES}
VOICE_CONFIG_KEYS = ("style", "role", "degree")


def _lang_key(tag: str) -> str:
    return tag.strip().replace("_", "-").lower()


def speaks(voice: Voice, language: str) -> bool:
    key = _lang_key(language)
    own = _lang_key(voice.language)
    return key == own or key == own.split("-")[0]


class VoiceCatalog:
    """Every voice the server offers, in default order."""

    def __init__(self, voices: Iterable[Voice]) -> None:
        self.voices: tuple[Voice, ...] = tuple(voices)
        if not self.voices:
            raise ValueError("the voice catalog is empty")
        self.by_id = {v.id: v for v in self.voices}

    @property
    def default(self) -> Voice:
        return self.voices[0]

    def languages(self) -> list[str]:
        return sorted({v.language for v in self.voices})

    def resolve(self, voice_id: str | None, language: str | None) -> Voice:
        """The voice for an init's ``voice_id``/``language``; VOICE_NOT_FOUND or UNSUPPORTED_LANGUAGE."""
        if voice_id is not None:
            voice = self.by_id.get(voice_id.strip().lower())
            if voice is None:
                raise ProtocolError(
                    ErrorCode.VOICE_NOT_FOUND,
                    f"voice_id {quoted(voice_id)} does not exist; voices: {', '.join(self.by_id)}",
                )
            if language is not None and not speaks(voice, language):
                raise ProtocolError(
                    ErrorCode.UNSUPPORTED_LANGUAGE, f"voice {voice.id} speaks {voice.language}, not {quoted(language)}"
                )
            return voice
        if language is None:
            return self.default
        key = _lang_key(language)
        # An exact tag wins ("en-GB" -> its first voice); a bare language takes its first voice ("en").
        for voice in self.voices:
            if _lang_key(voice.language) == key:
                return voice
        for voice in self.voices:
            if _lang_key(voice.language).split("-")[0] == key:
                return voice
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_LANGUAGE,
            f"language {quoted(language)} is not supported; languages: {', '.join(self.languages())}",
        )

    def describe(self) -> list[dict[str, Any]]:
        """The catalog as /healthz and --list_voices show it."""
        return [
            {
                "id": v.id,
                "name": v.name,
                "language": v.language,
                "gender": v.gender,
                "engine": v.engine,
                "sample_rate": v.sample_rate,
                "honours": sorted(v.honours),
                "description": v.description,
            }
            for v in self.voices
        ]


def _check_range(name: str, value: float, bounds: tuple[float, float]) -> None:
    lo, hi = bounds
    if not lo <= value <= hi:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"'{name}' must be between {lo:g} and {hi:g}, got {value:g}")


def prosody_for(init: TtsInit, voice: Voice) -> Prosody:
    """Validate speed, pitch, volume and voice_config for ``voice``; INVALID_MESSAGE when out of range
    or when the voice cannot do what is asked (never silently ignored)."""
    _check_range("speed", init.speed, SPEED_RANGE)
    _check_range("pitch", init.pitch, PITCH_RANGE)
    _check_range("volume", init.volume, VOLUME_RANGE)
    style, role, degree = _voice_config(init.voice_config)
    asked = {
        "speed": init.speed != 1.0,
        "pitch": init.pitch != 0.0,
        "volume": init.volume != 1.0,
        "style": style is not None,
        "role": role is not None,
        "degree": init.voice_config is not None and init.voice_config.get("degree") is not None,
    }
    refused = [name for name, on in asked.items() if on and name not in voice.honours]
    if refused:
        label = ", ".join(n if n in ("speed", "pitch", "volume") else f"voice_config.{n}" for n in refused)
        honours = ", ".join(sorted(voice.honours))
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            f"voice {voice.id} ({voice.engine}) does not support {label}; it honours {honours}",
        )
    _check_audible(init.volume, style, degree)
    return Prosody(speed=init.speed, pitch=init.pitch, volume=init.volume, style=style, role=role, degree=degree)


def _check_audible(volume: float, style: str | None, degree: float) -> None:
    """Refuse a volume and style that together leave (next to) nothing to hear, naming what would do."""
    factor = 1.0 if style is None else 1 + degree * (STYLES[style].volume - 1)
    if volume * factor >= MIN_EFFECTIVE_VOLUME:
        return
    if style is not None and factor < MIN_EFFECTIVE_VOLUME / max(volume, MIN_EFFECTIVE_VOLUME):
        most = (1 - MIN_EFFECTIVE_VOLUME / max(volume, MIN_EFFECTIVE_VOLUME)) / (1 - STYLES[style].volume)
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            f"voice_config.degree {degree:g} with style {style} at volume {volume:g} would be silent: "
            f"its degree must be below {most:.2f} there",
        )
    raise ProtocolError(
        ErrorCode.INVALID_MESSAGE,
        f"'volume' {volume:g} would be silent: it must be at least {MIN_EFFECTIVE_VOLUME / factor:.2f}",
    )


def _voice_config(cfg: dict[str, Any] | None) -> tuple[str | None, str | None, float]:
    if not cfg:
        return None, None, 1.0
    unknown = sorted(set(cfg) - set(VOICE_CONFIG_KEYS))
    if unknown:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            f"voice_config has unknown field(s) {', '.join(unknown)}; fields: {', '.join(VOICE_CONFIG_KEYS)}",
        )
    style = role = None
    raw_style = cfg.get("style")
    if raw_style is not None:
        if not isinstance(raw_style, str) or raw_style.strip().lower() not in STYLES:
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE,
                f"voice_config.style {quoted(raw_style)} is not supported; styles: {', '.join(STYLES)}",
            )
        style = raw_style.strip().lower()
    raw_role = cfg.get("role")
    if raw_role is not None:
        role = _ROLES_LOWER.get(raw_role.strip().lower()) if isinstance(raw_role, str) else None
        if role is None:
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE,
                f"voice_config.role {quoted(raw_role)} is not supported; roles: {', '.join(ROLES)}",
            )
    raw_degree = cfg.get("degree")
    degree = 1.0
    if raw_degree is not None:
        if isinstance(raw_degree, bool) or not isinstance(raw_degree, (int, float)):
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, "voice_config.degree must be a number")
        if style is None:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, "voice_config.degree scales a style; give a style too")
        try:
            degree = float(raw_degree)
        except OverflowError:
            degree = float("inf")
        _check_range("voice_config.degree", degree, DEGREE_RANGE)
    return style, role, degree


def load_catalog(voices_dir: str | None) -> tuple[VoiceCatalog, list[str]]:
    """Every TTS engine's voices in registry order, and one line per voice that could not load."""
    from voxbeam.server.engines import TTS_ENGINES, tts_engine
    from voxbeam.server.errors import ConfigError

    voices: list[Voice] = []
    problems: list[str] = []
    for name in TTS_ENGINES:
        try:
            catalog = tts_engine(name).catalog(voices_dir)
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        taken = {v.id for v in voices}
        voices += [v for v in catalog.voices if v.id not in taken]
        problems += catalog.problems
    return VoiceCatalog(voices), problems
