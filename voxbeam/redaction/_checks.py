"""Check digits and validity: Luhn, Verhoeff, mod 97, the national ids' rules, phone numbers."""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


VERHOEFF_D = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 0, 6, 7, 8, 9, 5], [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7], [4, 0, 1, 2, 3, 9, 5, 6, 7, 8], [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2], [7, 6, 5, 9, 8, 2, 1, 0, 4, 3], [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
]  # fmt: skip
VERHOEFF_P = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 5, 7, 6, 2, 8, 3, 0, 9, 4], [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7], [9, 4, 5, 3, 1, 2, 6, 8, 7, 0], [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5], [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
]  # fmt: skip


def verhoeff(digits: str) -> bool:
    c = 0
    for i, ch in enumerate(reversed(digits)):
        c = VERHOEFF_D[c][VERHOEFF_P[i % 8][ord(ch) - 48]]
    return c == 0


def ssn_ok(s: str) -> bool:
    return s[:3] not in ("000", "666") and s[0] != "9" and s[3:5] != "00" and s[5:] != "0000"


def bsn_ok(s: str) -> bool:
    return s != "000000000" and (sum(int(s[i]) * (9 - i) for i in range(8)) - int(s[8])) % 11 == 0


def be_ok(s: str) -> bool:
    """Belgian national number: YYMMDD, serial, and 97 - (first nine mod 97); born 2000+ with a 2 before."""
    if int(s[2:4]) > 12 or int(s[4:6]) > 31:
        return False
    check = int(s[9:])
    return check in (97 - int(s[:9]) % 97, 97 - int("2" + s[:9]) % 97)


def nir_ok(s: str) -> bool:
    """French NIR: sex (1, 2; 7, 8 provisional), YY, MM, place, order, key = 97 - (first 13 mod 97)."""
    month = int(s[3:5])
    if s[0] not in "1278" or not (1 <= month <= 12 or month == 20 or 30 <= month <= 42 or month >= 50):
        return False
    return int(s[13:]) == 97 - int(s[:13]) % 97


DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"
DNI = re.compile(r"\d{8}[A-Z]|[XYZ]\d{7}[A-Z]")


def dni_ok(s: str) -> bool:
    """Spanish DNI (8 digits and letter) or NIE (X/Y/Z, 7 digits, letter): the letter is number mod 23."""
    if not DNI.fullmatch(s):
        return False
    number = str("XYZ".find(s[0])) + s[1:8] if s[0] in "XYZ" else s[:8]
    return DNI_LETTERS[int(number) % 23] == s[8]


# IBAN lengths by country (SWIFT IBAN registry).
IBAN_LENGTH = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
    "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip


def iban_ok(s: str) -> bool:
    if not (s[2:4].isdigit() and s.isalnum()):
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


@lru_cache(maxsize=8192)
def phone_status(digits: str, region: str) -> int:
    """2: valid for ``region``, 1: possible only, 0: neither."""
    try:
        number = phonenumbers.parse(digits, region)
    except phonenumbers.NumberParseException:
        return 0
    if phonenumbers.is_valid_number(number):
        return 2
    return 1 if phonenumbers.is_possible_number(number) else 0
