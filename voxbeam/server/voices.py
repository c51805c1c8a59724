"""The voice catalog and the mapping of speed, pitch, volume and voice_config onto eSpeak NG.

Everything here is pure (no engine, no I/O) so the server validates an ``init`` before any
worker is touched, and the worker receives ready-made engine parameters (``Prosody``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from voxbeam.protocol import ErrorCode, ProtocolError, TtsInit


@dataclass(frozen=True)
class Voice:
    id: str
    name: str
    language: str
    gender: str
    espeak: str  # eSpeak NG voice name, without a variant
    variant: str  # eSpeak NG variant ("f2", "m1", ...)
    description: str = ""


# The first voice of each language is that language's default. vl-andrew is the default of the
# service: eSpeak NG's Klatt synthesis is the speech pocketsphinx recognises best (README.md).
VOICES: tuple[Voice, ...] = (
    Voice("vl-andrew", "Andrew", "en-US", "Male", "en-us", "klatt4", "default; Klatt synthesis, best recognised"),
    Voice("vl-brian", "Brian", "en-US", "Male", "en-us", "klatt5", "Klatt synthesis"),
    Voice("vl-jenny", "Jenny", "en-US", "Female", "en-us", "f2", ""),
    Voice("vl-aria", "Aria", "en-US", "Female", "en-us", "f5", ""),
    Voice("vl-guy", "Guy", "en-US", "Male", "en-us", "m1", ""),
    Voice("vl-davis", "Davis", "en-US", "Male", "en-us", "m3", "deeper male"),
    Voice("vl-libby", "Libby", "en-GB", "Female", "en", "f2", "British"),
    Voice("vl-ryan", "Ryan", "en-GB", "Male", "en-gb-x-rp", "m1", "British, received pronunciation"),
    Voice("vl-sonia", "Sonia", "en-GB", "Female", "en-gb-x-rp", "f4", "British, received pronunciation"),
    Voice("vl-xiaoxiao", "Xiaoxiao", "zh-CN", "Female", "cmn", "f2", "Mandarin Chinese"),
    Voice("vl-yunxi", "Yunxi", "zh-CN", "Male", "cmn", "m1", "Mandarin Chinese"),
)
VOICES_BY_ID = {v.id: v for v in VOICES}
DEFAULT_VOICE = VOICES[0]

# Engine baselines (eSpeak NG parameter units).
BASE_WPM = 175
BASE_PITCH = 50  # espeakPITCH 0-100
BASE_RANGE = 50  # espeakRANGE 0-100
BASE_VOLUME = 100  # espeakVOLUME 0-200
MIN_WPM, MAX_WPM = 80, 450

SPEED_RANGE = (0.5, 2.0)
PITCH_RANGE = (-1.0, 1.0)
VOLUME_RANGE = (0.0, 2.0)
DEGREE_RANGE = (0.01, 2.0)


@dataclass(frozen=True)
class StyleShape:
    """A style's prosody change at degree 1: pitch and range offsets, rate and volume factors."""

    pitch: float
    range: float
    rate: float
    volume: float


STYLES: dict[str, StyleShape] = {
    "general": StyleShape(0, 0, 1.0, 1.0),
    "cheerful": StyleShape(10, 25, 1.10, 1.0),
    "excited": StyleShape(15, 35, 1.20, 1.1),
    "friendly": StyleShape(5, 10, 1.0, 1.0),
    "hopeful": StyleShape(5, 15, 1.0, 1.0),
    "sad": StyleShape(-10, -25, 0.85, 0.9),
    "calm": StyleShape(-5, -20, 0.9, 0.9),
    "gentle": StyleShape(-3, -10, 0.9, 0.8),
    "serious": StyleShape(-5, -15, 0.95, 1.0),
    "angry": StyleShape(5, 30, 1.15, 1.3),
    "shouting": StyleShape(10, 20, 1.05, 1.6),
    "whispering": StyleShape(0, -10, 0.9, 0.4),
    "newscast": StyleShape(0, 5, 1.05, 1.0),
}


@dataclass(frozen=True)
class RoleShape:
    """A role swaps the voice's eSpeak variant and shifts its pitch."""

    variant: str
    pitch: float


ROLES: dict[str, RoleShape] = {
    "Girl": RoleShape("f5", 15),
    "Boy": RoleShape("m3", 25),
    "YoungAdultFemale": RoleShape("f2", 5),
    "YoungAdultMale": RoleShape("m1", 5),
    "OlderAdultFemale": RoleShape("f3", -5),
    "OlderAdultMale": RoleShape("m2", -5),
    "SeniorFemale": RoleShape("grandma", 0),
    "SeniorMale": RoleShape("grandpa", 0),
}
_ROLES_LOWER = {k.lower(): k for k in ROLES}
VOICE_CONFIG_KEYS = ("style", "role", "degree")


@dataclass(frozen=True)
class Prosody:
    """Everything the synthesizer needs for one session: eSpeak voice name and parameters."""

    espeak_voice: str
    rate: int
    pitch: int
    range: int
    volume: int


def _lang_key(tag: str) -> str:
    return tag.strip().replace("_", "-").lower()


def languages() -> list[str]:
    return sorted({v.language for v in VOICES})


def resolve_voice(voice_id: str | None, language: str | None) -> Voice:
    """The voice for an init's ``voice_id``/``language``; raises VOICE_NOT_FOUND or UNSUPPORTED_LANGUAGE."""
    if voice_id is not None:
        voice = VOICES_BY_ID.get(voice_id.strip().lower())
        if voice is None:
            raise ProtocolError(
                ErrorCode.VOICE_NOT_FOUND,
                f"voice_id {voice_id!r} does not exist; voices: {', '.join(VOICES_BY_ID)}",
            )
        if language is not None and not _speaks(voice, language):
            raise ProtocolError(
                ErrorCode.UNSUPPORTED_LANGUAGE,
                f"voice {voice.id} speaks {voice.language}, not {language!r}",
            )
        return voice
    if language is None:
        return DEFAULT_VOICE
    key = _lang_key(language)
    # An exact tag wins ("en-GB" -> vl-libby); a bare language takes its first voice ("en" -> vl-andrew).
    for voice in VOICES:
        if _lang_key(voice.language) == key:
            return voice
    for voice in VOICES:
        if _lang_key(voice.language).split("-")[0] == key:
            return voice
    raise ProtocolError(
        ErrorCode.UNSUPPORTED_LANGUAGE,
        f"language {language!r} is not supported; languages: {', '.join(languages())}",
    )


def _speaks(voice: Voice, language: str) -> bool:
    key = _lang_key(language)
    own = _lang_key(voice.language)
    return key == own or key == own.split("-")[0]


def _check_range(name: str, value: float, bounds: tuple[float, float]) -> None:
    lo, hi = bounds
    if not lo <= value <= hi:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"'{name}' must be between {lo:g} and {hi:g}, got {value:g}")


def _clamp(value: float, lo: int, hi: int) -> int:
    return int(round(min(hi, max(lo, value))))


def prosody_for(init: TtsInit, voice: Voice) -> Prosody:
    """Map speed, pitch, volume and voice_config onto eSpeak parameters; INVALID_MESSAGE when out of range."""
    _check_range("speed", init.speed, SPEED_RANGE)
    _check_range("pitch", init.pitch, PITCH_RANGE)
    _check_range("volume", init.volume, VOLUME_RANGE)
    style, role, degree = _voice_config(init.voice_config)
    variant = voice.variant
    pitch = BASE_PITCH + 50 * init.pitch
    rng = float(BASE_RANGE)
    rate = BASE_WPM * init.speed
    volume = BASE_VOLUME * init.volume
    if role is not None:
        variant = role.variant
        pitch += role.pitch
    if style is not None:
        pitch += degree * style.pitch
        rng += degree * style.range
        rate *= 1 + degree * (style.rate - 1)
        volume *= max(0.0, 1 + degree * (style.volume - 1))
    return Prosody(
        espeak_voice=f"{voice.espeak}+{variant}",
        rate=_clamp(rate, MIN_WPM, MAX_WPM),
        pitch=_clamp(pitch, 0, 100),
        range=_clamp(rng, 0, 100),
        volume=_clamp(volume, 0, 200),
    )


def _voice_config(cfg: dict[str, Any] | None) -> tuple[StyleShape | None, RoleShape | None, float]:
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
                f"voice_config.style {raw_style!r} is not supported; styles: {', '.join(STYLES)}",
            )
        style = STYLES[raw_style.strip().lower()]
    raw_role = cfg.get("role")
    if raw_role is not None:
        name = _ROLES_LOWER.get(raw_role.strip().lower()) if isinstance(raw_role, str) else None
        if name is None:
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE,
                f"voice_config.role {raw_role!r} is not supported; roles: {', '.join(ROLES)}",
            )
        role = ROLES[name]
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
