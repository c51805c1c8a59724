"""Parsers of the jobs' flag values (``voxbeam.flags``): each turns the text given into its value or raises
``argparse.ArgumentTypeError`` saying what was wrong, which argparse reports with the flag's name."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from voxbeam.protocol import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from voxbeam.redaction import parse_types, region_for


def whole_number(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value

    parse.__name__ = "whole number"
    return parse


def _bounds(minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f"between {minimum:g} and {maximum:g}"
    return f"at least {minimum:g}" if minimum is not None else f"at most {maximum:g}"


def number(minimum: float | None = None, maximum: float | None = None) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if math.isnan(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a number")
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"must be {_bounds(minimum, maximum)}, not {text}")
        return value

    parse.__name__ = "number"
    return parse


def positive(text: str) -> float:
    """A number above 0 (a quantity: hours, minutes, a rate)."""
    value = number()(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
    return value


def sample_rate(text: str) -> int:
    value = whole_number(1)(text)
    if not MIN_SAMPLE_RATE <= value <= MAX_SAMPLE_RATE:
        raise argparse.ArgumentTypeError(f"must be between {MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE} Hz, not {value}")
    return value


def redact_types(text: str) -> tuple[str, ...]:
    """--redact: ``all`` or a comma list of entity types (any case), as a sorted tuple."""
    try:
        return tuple(sorted(parse_types(text)))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def phone_region(text: str) -> str:
    """--phone_region: a region ``phonenumbers`` knows (GB, DE, ...)."""
    try:
        return region_for(text.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}; give a two-letter region such as US, GB or DE") from None
