"""The speaking styles and roles of ``voice_config``, as shapes any engine can render.

Engine-neutral, so it sits in the seam beside ``base.py``: ``voices.py`` checks a request's style
and role against these tables, and each engine (espeak, piper) renders the shape its own way.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StyleShape:
    """A style at degree 1: pitch and range offsets (50 units = 1.0 of ``pitch``), rate and volume factors."""

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
    """A role: the eSpeak NG variant that speaks it and a pitch offset (50 units = 1.0 of ``pitch``)."""

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
