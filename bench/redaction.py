"""Redaction end to end on spoken personal data (issue 30's floors): per-type recall and precision, leaks, cost.

The test set (``ITEMS``, written for this benchmark: values are test numbers or made up to pass their
checks, near misses made up to fail them). Each clip is a carrier phrase, the value, and sometimes a
tail. Who speaks what:

- **Human (real recordings)**: every value made of digits, letters, "dot", months, ordinals, tens and
  "dollars": card numbers, phone numbers, IBANs, IP addresses, dates of birth, social security
  numbers, and the near misses' numbers, are joined from Asterisk's recorded single words
  (``digits/``, ``letters/`` of Debian's asterisk-core-sounds-en-g722 1.6.1-1, Allison Smith,
  CC-BY-SA-3.0), as an IVR reads a number back: words 0.1 s apart, groups 0.35 s apart.
- **Ours (Piper ``vl-joe``)**: the carrier phrases ("My card number is"), and the e-mail addresses
  (Asterisk has no recorded words such as "smith" or "example").

``voxbeam transcribe --redact all --redact_keep_original`` (the job, against the run's server, Whisper
tiny.en; or ``VOXBEAM_BENCH_REDACTION_MODEL=base``, on a server of its own) transcribes the clips; the
rows' ``entities`` are scored against where each value was placed in its clip (a hit: same type,
overlapping in time). Near misses (a Luhn-invalid order number, a year, a price, a room, a page) must
get no entity. The same items' reference text
(carrier + value as written) is scored through ``voxbeam.redaction.find`` as well.

Floors: per type recall ≥ 0.95 and precision ≥ 0.9, end to end and on the reference text; no
value's digits left in a redacted row's text; the cost of redaction (``redact_row`` over the job's
unredacted rows, in this process, CPU seconds) ≤ 5 % of the transcription's CPU (the job's client and
the server's workers, same run). A second run of the same job without ``--redact`` (full mode) gives
the wall-time ratio the issue names, beside.
"""

from __future__ import annotations

import glob
import os
import statistics
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench import corpus, human_corpus
from bench._common import Result, log
from bench._context import Context, run_job

NAME = "redaction"
TARGET_RECALL = 0.95
TARGET_PRECISION = 0.90
TARGET_COST = 0.05
RATE = 16000
WORD_GAP_S = 0.10
GROUP_GAP_S = 0.35
# The recognizer under the redaction: the server's default, or another packaged tier (on its own server).
MODEL = os.environ.get("VOXBEAM_BENCH_REDACTION_MODEL", "tiny.en")
TOLERANCE_MS = 300
_VOICE = "./usr/share/asterisk/sounds/en_US_f_Allison/"
TYPES = ("CARD_NUMBER", "PHONE_NUMBER", "EMAIL", "IBAN", "IP_ADDRESS", "DATE_OF_BIRTH", "NATIONAL_ID")


@dataclass(frozen=True)
class Item:
    """One clip: ``before`` (Piper), the value (Asterisk ``keys``, or Piper ``written`` when keys is None),
    ``after`` (Piper). ``kind`` None: a near miss. ``written``: the value as a transcript would write it."""

    id: str
    kind: str | None
    before: str
    keys: str | None
    written: str
    after: str = ""


def _d(digits: str) -> str:
    """Asterisk keys for digits read one by one; a space in ``digits`` is a pause between groups."""
    return " | ".join(" ".join(f"digits/{ch}" for ch in group) for group in digits.split())


def _l(spelled: str) -> str:
    """Asterisk keys for a spelled value: letters, digits, '.' as "dot"; spaces are group pauses."""

    def key(ch: str) -> str:
        if ch.isdigit():
            return f"digits/{ch}"
        if ch == ".":
            return "letters/dot"
        return f"letters/{ch.lower()}"

    return " | ".join(" ".join(key(ch) for ch in group) for group in spelled.split())


def _dob(month: str, day: str, year: str) -> str:
    """Asterisk keys for a date said "<month> <ordinal> <year>" (``digits/mon-N``, ``h-N``, tens)."""
    return " | ".join(" ".join(f"digits/{k}" for k in part.split()) for part in (month, day, year))


ITEMS: tuple[Item, ...] = (
    # -- cards (Luhn-valid test numbers)
    Item("card-01", "CARD_NUMBER", "My card number is", _d("4111 1111 1111 1111"), "4111 1111 1111 1111"),
    Item("card-02", "CARD_NUMBER", "Sure, it's a Visa,", _d("4012 8888 8888 1881"), "4012 8888 8888 1881"),
    Item("card-03", "CARD_NUMBER", "The card number is", _d("5555 5555 5555 4444"), "5555 5555 5555 4444"),
    Item("card-04", "CARD_NUMBER", "Mastercard,", _d("5105 1051 0510 5100"), "5105 1051 0510 5100", "thanks."),
    Item("card-05", "CARD_NUMBER", "I'll pay with Amex,", _d("3782 822463 10005"), "3782 822463 10005"),
    Item("card-06", "CARD_NUMBER", "My credit card is", _d("3714 496353 98431"), "3714 496353 98431"),
    Item("card-07", "CARD_NUMBER", "My Discover card,", _d("6011 1111 1111 1117"), "6011 1111 1111 1117"),
    Item("card-08", "CARD_NUMBER", "Card number", _d("6011 0009 9013 9424"), "6011 0009 9013 9424"),
    Item("card-09", "CARD_NUMBER", "It's on my JCB card,", _d("3530 1113 3330 0000"), "3530 1113 3330 0000"),
    Item("card-10", "CARD_NUMBER", "The long number on the card is", _d("3566 0020 2036 0505"), "3566 0020 2036 0505"),
    Item("card-11", "CARD_NUMBER", "Charge my card,", _d("4242 4242 4242 4242"), "4242 4242 4242 4242"),
    Item("card-12", "CARD_NUMBER", "The debit card is", _d("2223 0031 2200 3222"), "2223 0031 2200 3222"),
    # -- phones (US, 555-01xx)
    Item("phone-01", "PHONE_NUMBER", "Call me at", _d("212 555 0147"), "212 555 0147", "tomorrow."),
    Item("phone-02", "PHONE_NUMBER", "My number is", _d("415 555 0198"), "415 555 0198"),
    Item("phone-03", "PHONE_NUMBER", "You can reach me on", _d("617 555 0123"), "617 555 0123"),
    Item("phone-04", "PHONE_NUMBER", "Her mobile is", _d("312 555 0188"), "312 555 0188"),
    Item("phone-05", "PHONE_NUMBER", "The office line is", _d("202 555 0173"), "202 555 0173"),
    Item("phone-06", "PHONE_NUMBER", "Dial", _d("1 800 555 0199"), "1 800 555 0199", "for support."),
    Item("phone-07", "PHONE_NUMBER", "My cell is", _d("310 555 0111"), "310 555 0111"),
    Item("phone-08", "PHONE_NUMBER", "Text me on", _d("512 555 0134"), "512 555 0134"),
    Item("phone-09", "PHONE_NUMBER", "Ring me back on", _d("646 555 0156"), "646 555 0156"),
    Item("phone-10", "PHONE_NUMBER", "The number to call is", _d("718 555 0100"), "718 555 0100"),
    # -- e-mail (Piper)
    Item("email-01", "EMAIL", "My email is", None, "john dot smith at example dot com"),
    Item("email-02", "EMAIL", "Email me at", None, "maria garcia at outlook dot com"),
    Item("email-03", "EMAIL", "Write to", None, "support at voxbeam dot io", "if it breaks."),
    Item("email-04", "EMAIL", "My email address is", None, "anna dot kowalski at gmail dot com"),
    Item("email-05", "EMAIL", "Send it to", None, "sales at acme dot co dot uk", "please."),
    Item("email-06", "EMAIL", "You can email", None, "t dot nguyen at university dot edu", "for details."),
    Item("email-07", "EMAIL", "My email is", None, "peter underscore jones at mail dot example dot org"),
    Item("email-08", "EMAIL", "Her email is", None, "lee at example dot net"),
    # -- IBANs (valid check digits)
    Item("iban-01", "IBAN", "My IBAN is", _l("DE89 3704 0044 0532 0130 00"), "DE89 3704 0044 0532 0130 00"),
    Item("iban-02", "IBAN", "Please pay to", _l("GB29 NWBK 6016 1331 9268 19"), "GB29 NWBK 6016 1331 9268 19"),
    Item("iban-03", "IBAN", "Transfer to", _l("NL91 ABNA 0417 1643 00"), "NL91 ABNA 0417 1643 00", "by Friday."),
    Item("iban-04", "IBAN", "IBAN", _l("ES91 2100 0418 4502 0005 1332"), "ES91 2100 0418 4502 0005 1332"),
    Item("iban-05", "IBAN", "The account is", _l("BE68 5390 0754 7034"), "BE68 5390 0754 7034"),
    Item("iban-06", "IBAN", "The IBAN is", _l("GB82 WEST 1234 5698 7654 32"), "GB82 WEST 1234 5698 7654 32"),
    Item("iban-07", "IBAN", "Our IBAN is",
         _l("FR14 2004 1010 0505 0001 3M02 606"), "FR14 2004 1010 0505 0001 3M02 606"),
    Item("iban-08", "IBAN", "Send it to IBAN",
         _l("IT60 X054 2811 1010 0000 0123 456"), "IT60 X054 2811 1010 0000 0123 456"),
    # -- IP addresses
    Item("ip-01", "IP_ADDRESS", "The server is at", _l("192 . 168 . 1 . 1"), "192.168.1.1"),
    Item("ip-02", "IP_ADDRESS", "Ping", _l("10 . 0 . 0 . 254"), "10.0.0.254", "and tell me."),
    Item("ip-03", "IP_ADDRESS", "Connect to", _l("172 . 16 . 4 . 20"), "172.16.4.20"),
    Item("ip-04", "IP_ADDRESS", "My IP address is", _l("8 . 8 . 4 . 4"), "8.8.4.4"),
    Item("ip-05", "IP_ADDRESS", "We moved it to", _l("203 . 0 . 113 . 7"), "203.0.113.7"),
    Item("ip-06", "IP_ADDRESS", "The gateway is", _l("198 . 51 . 100 . 23"), "198.51.100.23"),
    Item("ip-07", "IP_ADDRESS", "The host is at", _l("10 . 1 . 2 . 3"), "10.1.2.3"),
    Item("ip-08", "IP_ADDRESS", "The printer's IP is", _l("192 . 0 . 2 . 45"), "192.0.2.45"),
    # -- dates of birth: month, ordinal, year ("nineteen eighty five": 19, 80, 5)
    Item("dob-01", "DATE_OF_BIRTH", "I was born on", _dob("mon-2", "h-3", "19 80 5"), "March 3rd, 1985"),
    Item("dob-02", "DATE_OF_BIRTH", "My date of birth is", _dob("mon-6", "h-4", "19 90"), "July 4th, 1990"),
    Item("dob-03", "DATE_OF_BIRTH", "I was born on", _dob("mon-8", "h-9", "19 70 2"), "September 9th, 1972"),
    Item("dob-04", "DATE_OF_BIRTH", "My birthday is", _dob("mon-3", "h-12", "19 80 8"), "April 12th, 1988"),
    Item("dob-05", "DATE_OF_BIRTH", "Date of birth,", _dob("mon-9", "h-2", "19 60 4"), "October 2nd, 1964"),
    Item("dob-06", "DATE_OF_BIRTH", "I was born on", _dob("mon-11", "30 h-1", "19 90 9"), "December 31st, 1999"),
    Item("dob-07", "DATE_OF_BIRTH", "My date of birth is", _dob("mon-0", "h-15", "19 70 7"), "January 15th, 1977"),
    Item("dob-08", "DATE_OF_BIRTH", "He was born on", _dob("mon-4", "20 h-1", "19 50 8"), "May 21st, 1958"),
    # -- national ids: US social security numbers (valid area, group, serial)
    Item("id-01", "NATIONAL_ID", "My social security number is", _d("123 45 6789"), "123-45-6789"),
    Item("id-02", "NATIONAL_ID", "My social is", _d("219 09 9999"), "219-09-9999"),
    Item("id-03", "NATIONAL_ID", "SSN", _d("536 22 1234"), "536-22-1234"),
    Item("id-04", "NATIONAL_ID", "The social security number is", _d("412 55 7890"), "412-55-7890"),
    Item("id-05", "NATIONAL_ID", "My social security number is", _d("301 44 2718"), "301-44-2718"),
    Item("id-06", "NATIONAL_ID", "Social security,", _d("145 67 8901"), "145-67-8901"),
    Item("id-07", "NATIONAL_ID", "His social security number is", _d("234 56 7891"), "234-56-7891"),
    Item("id-08", "NATIONAL_ID", "My SSN is", _d("521 33 4455"), "521-33-4455"),
    # -- near misses: must stay
    Item("miss-01", None, "Your order number is",
         _d("4111 1111 1111 1112"), "4111 1111 1111 1112", "and it ships tomorrow."),
    Item("miss-02", None, "Reference", _d("1234 5678 9012 3456"), "1234 5678 9012 3456", "was cancelled."),
    Item("miss-03", None, "I was born in", "digits/19 digits/80 digits/5", "1985"),
    Item("miss-04", None, "It costs", "digits/12 digits/dollars | digits/50", "12 dollars 50"),
    Item("miss-05", None, "The meeting is in room", _d("4155"), "4155"),
    Item("miss-06", None, "Turn to page", _d("212"), "212", "of the manual."),
    Item("miss-07", None, "We sold", "digits/1 digits/thousand digits/2 digits/hundred", "1,200", "units last year."),
    Item("miss-08", None, "The train leaves at", "digits/10 | digits/30", "10:30"),
)  # fmt: skip


# ---------------------------------------------------------------------------
# Building the clips


def _asterisk_words(keys: set[str]) -> dict[str, np.ndarray]:
    """Each recorded word as 16 kHz int16, its leading and trailing silence trimmed (40 ms kept)."""
    root = human_corpus.cache_dir() / human_corpus.LAYOUT
    deb = human_corpus.fetch(human_corpus.PACKAGES["asterisk-core-sounds-en-g722"], root / "downloads", log)
    out: dict[str, np.ndarray] = {}
    with human_corpus._deb_data(deb) as data:
        assert isinstance(data, tarfile.TarFile)
        for key in sorted(keys):
            fh = data.extractfile(f"{_VOICE}{key}.g722")
            if fh is None:
                raise RuntimeError(f"asterisk-core-sounds-en-g722 has no {key}")
            out[key] = _trim(human_corpus.decode(fh.read(), "g722"))
    return out


def _trim(x: np.ndarray, keep: int = RATE // 25) -> np.ndarray:
    loud = np.flatnonzero(np.abs(x.astype(np.int32)) > 600)
    if not len(loud):
        return x
    return x[max(0, loud[0] - keep) : loud[-1] + keep]


def _pcm16(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2")


def _gap(seconds: float) -> np.ndarray:
    return np.zeros(int(RATE * seconds), dtype="<i2")


def _value_audio(item: Item, words: dict[str, np.ndarray]) -> np.ndarray:
    if item.keys is None:
        return _pcm16(corpus.sentence_pcm(item.written))
    parts: list[np.ndarray] = []
    for g, group in enumerate(item.keys.split("|")):
        if g:
            parts.append(_gap(GROUP_GAP_S))
        for i, key in enumerate(group.split()):
            if i:
                parts.append(_gap(WORD_GAP_S))
            parts.append(words[key])
    return np.concatenate(parts)


@dataclass(frozen=True)
class Clip:
    item: Item
    path: Path
    value_ms: tuple[int, int]
    duration_s: float

    @property
    def reference(self) -> str:
        i = self.item
        return " ".join(p for p in (i.before, i.written + ("" if i.after else "."), i.after) if p)


def build(directory: Path) -> list[Clip]:
    keys = {k for it in ITEMS if it.keys for k in it.keys.replace("|", " ").split()}
    words = _asterisk_words(keys)
    directory.mkdir(parents=True, exist_ok=True)
    clips = []
    for item in ITEMS:
        parts = [_gap(0.3), _pcm16(corpus.sentence_pcm(item.before)), _gap(0.25)]
        start = sum(len(p) for p in parts)
        value = _value_audio(item, words)
        parts += [value, _gap(0.3)]
        if item.after:
            parts += [_pcm16(corpus.sentence_pcm(item.after)), _gap(0.3)]
        parts.append(_gap(0.2))
        pcm = np.concatenate(parts).astype("<i2")
        path = directory / f"{item.id}.wav"
        corpus.write_wav(path, pcm.tobytes())
        span = (start * 1000 // RATE, (start + len(value)) * 1000 // RATE)
        clips.append(Clip(item, path, span, len(pcm) / RATE))
    return clips


# ---------------------------------------------------------------------------
# Scoring


@dataclass
class Tally:
    tp: int = 0
    fn: int = 0
    fp: int = 0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else float("nan")

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0


def score(clips: list[Clip], found: dict[str, list[tuple[str, int, int]]]) -> tuple[dict[str, Tally], list[str]]:
    """Per type: a clip's value is a hit when an entity of its type overlaps it; every other entity is
    a false positive of its own type. ``found``: clip id -> [(type, start_ms, end_ms)]."""
    tallies = {t: Tally() for t in TYPES}
    misses: list[str] = []
    for c in clips:
        a, b = c.value_ms
        hit = False
        for kind, s, e in found.get(c.item.id, []):
            overlaps = s < b + TOLERANCE_MS and e > a - TOLERANCE_MS
            if c.item.kind == kind and overlaps and not hit:
                hit = True
                tallies[kind].tp += 1
            else:
                tallies.setdefault(kind, Tally()).fp += 1
                misses.append(f"{c.item.id}: extra {kind}")
        if c.item.kind and not hit:
            tallies[c.item.kind].fn += 1
            misses.append(f"{c.item.id}: {c.item.kind} missed")
    return tallies, misses


def _on_reference(clips: list[Clip]) -> dict[str, list[tuple[str, int, int]]]:
    """Entities found in each clip's reference text (words 300 ms apart; the value's words at their times)."""
    from voxbeam.redaction import TimedWord, find

    out: dict[str, list[tuple[str, int, int]]] = {}
    for c in clips:
        before = c.item.before.split()
        value = (c.item.written + ("" if c.item.after else ".")).split()
        after = c.item.after.split()
        words = [TimedWord(w, 300 * i, 250) for i, w in enumerate(before + value + after)]
        # Place the value's words inside the clip's value span so the same overlap rule applies.
        a, b = c.value_ms
        step = (b - a) / max(1, len(value))
        timed = [
            TimedWord(w.word, int(a + step * (i - len(before))), int(step))
            if len(before) <= i < len(before) + len(value)
            else TimedWord(w.word, a - 1000 + 10 * i if i < len(before) else b + 1000 + 10 * i, 10)
            for i, w in enumerate(words)
        ]
        out[c.item.id] = [(e.type, e.start_ms, e.end_ms) for e in find(timed, "all")]
    return out


def _rows(directory: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    files = sorted(glob.glob(str(directory / "**" / "*.parquet"), recursive=True))
    return [row for f in files for row in pq.read_table(f).to_pylist()]


def _redacting_job(
    ctx: Context, server: Any, clips: list[Clip], out: Path, extra: list[str]
) -> tuple[Any, dict[str, list[tuple[str, int, int]]], dict[str, Any], list[str]]:
    """``voxbeam transcribe --redact all`` over the clips: the job, each clip's entities (type, ms, ms), its
    redacted text, and the positive values whose digits (4 or more) are still in it."""
    argv = ["--input", str(clips[0].path.parent), "--output", str(out), "--redact", "all", *extra]
    job = run_job(ctx, "transcribe", argv + ctx.endpoint_args(server), server=server)
    by_name = {c.path.name: c for c in clips}
    found: dict[str, list[tuple[str, int, int]]] = {}
    texts: dict[str, Any] = {}
    leaks = []
    for row in _rows(out / "transcripts"):
        c = by_name.get(Path(row["source_uri"]).name)
        if c is None:
            continue
        found[c.item.id] = [(e["type"], int(e["start_ms"]), int(e["end_ms"])) for e in row.get("entities") or []]
        value = _digits(c.item.written)
        if c.item.kind and len(value) >= 4 and value in _digits(row.get("text") or ""):
            leaks.append(c.item.id)
        texts[c.item.id] = {"redacted": row.get("text")}
    return job, found, texts, leaks


def _end_to_end(
    res: Result,
    clips: list[Clip],
    found: dict[str, list[tuple[str, int, int]]],
    leaks: list[str],
    label: str,
    where: str,
) -> list[str]:
    """Per-type recall and precision of one way of redacting, and the values left in its text; its misses."""
    tallies, misses = score(clips, found)
    _report(res, label, tallies, where)
    res.compare(
        f"{label}_values_left_in_text",
        f"{where}: positive values whose digits (4 or more) still appear in the redacted text",
        len(leaks),
        0,
        "<=",
        unit="clips",
    )
    return misses


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _report(res: Result, label: str, tallies: dict[str, Tally], where: str) -> None:
    for t in TYPES:
        tl = tallies[t]
        res.measure(f"{label}_{t}_tp", tl.tp, "clips", f"{where}: {t} values found")
        res.compare(
            f"{label}_{t}_recall",
            f"{where}: {t} recall ({tl.tp} of {tl.tp + tl.fn})",
            tl.recall,
            TARGET_RECALL,
            subject=t,
            unit="share",
        )
        res.compare(
            f"{label}_{t}_precision",
            f"{where}: {t} precision ({tl.tp} of {tl.tp + tl.fp} entities)",
            tl.precision,
            TARGET_PRECISION,
            subject=t,
            unit="share",
        )


def heard_split(clips: list[Clip], texts: dict[str, Any], misses: list[str]) -> dict[tuple[bool, bool], list[str]]:
    """Positive digit values by (heard: every digit, in order, in the unredacted transcript; found)."""
    missed = {m.split(":")[0] for m in misses if m.endswith("missed")}
    out: dict[tuple[bool, bool], list[str]] = {}
    for c in clips:
        if c.item.kind is None or c.item.keys is None:
            continue
        heard = _digits(c.item.written) in _digits(texts.get(c.item.id, {}).get("heard") or "")
        out.setdefault((heard, c.item.id not in missed), []).append(c.item.id)
    return out


def _heard_split(res: Result, clips: list[Clip], texts: dict[str, Any], misses: list[str]) -> None:
    """Which misses are the recognizer's (the digits never reached the transcript) and which redaction's."""
    split = heard_split(clips, texts, misses)
    for (heard, found), ids in sorted(split.items()):
        key = f"e2e_{'heard' if heard else 'misheard'}_{'found' if found else 'missed'}"
        what = "every digit in the transcript" if heard else "digits lost or changed by the recognizer"
        res.measure(key, len(ids), "clips", f"positive digit values with {what}, {'found' if found else 'missed'}")
    res.notes.append(
        f"Digit values by what {MODEL} heard (every digit in order, or not) and whether they were found: "
        + "; ".join(
            f"{'heard' if h else 'misheard'}/{'found' if f else 'missed'}: {', '.join(ids)}"
            for (h, f), ids in sorted(split.items())
        )
    )


def _redaction_cpu(rows: list[dict[str, Any]], repeats: int) -> float:
    """CPU seconds of ``redact_row`` (the job's own step) over ``rows``, median of ``repeats`` passes."""
    from voxbeam.beam.redacting import Redaction, redact_row

    policy = Redaction.of("all")
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        for row in rows:
            redact_row(dict(row), policy)
        times.append(time.process_time() - t0)
    return statistics.median(times)


def run(ctx: Context) -> Result:
    if MODEL == "tiny.en":
        return _run(ctx, ctx.server())
    with ctx.other_server(["--stt_model", MODEL], f"redaction-{MODEL}") as server:
        return _run(ctx, server)


def _run(ctx: Context, server: Any) -> Result:
    res = Result(NAME, ctx.quick)
    clips = build(ctx.workdir / "redaction_input")
    audio_s = sum(c.duration_s for c in clips)
    human = sum(1 for c in clips if c.item.keys)
    res.config = {
        "clips": len(clips),
        "audio_seconds": round(audio_s, 1),
        "values_human": human,
        "values_piper": len(clips) - human,
        "near_misses": sum(1 for c in clips if c.item.kind is None),
        "per_type": {t: sum(1 for c in clips if c.item.kind == t) for t in TYPES},
        "model": f"Whisper {MODEL}",
    }
    log(f"redaction: {len(clips)} clips, {audio_s:.0f} s ({human} values in Asterisk's recorded words)")

    ref_tallies, ref_misses = score(clips, _on_reference(clips))
    _report(res, "text", ref_tallies, "reference text")

    plain_wall = None
    if not ctx.quick:
        plain = run_job(
            ctx,
            "transcribe",
            ["--input", str(clips[0].path.parent), "--output", str(ctx.workdir / "red_plain")]
            + ctx.endpoint_args(server),
            server=server,
        )
        plain_wall = plain.wall
    out = ctx.workdir / "red_out"
    job, found, texts, leaks = _redacting_job(ctx, server, clips, out, ["--redact_keep_original", "true"])
    originals = _rows(out / "unredacted")
    by_name = {c.path.name: c for c in clips}
    for row in originals:
        c = by_name.get(Path(row["source_uri"]).name)
        if c is not None:
            texts.setdefault(c.item.id, {})["heard"] = row.get("text")
    missing = [c.item.id for c in clips if c.item.id not in found]
    if missing:
        res.errors.append(f"no transcript row for {missing}")
    e2e_misses = _end_to_end(res, clips, found, leaks, "e2e", "end to end (audio in, rows out)")
    _heard_split(res, clips, texts, e2e_misses)
    # The same job with the service redacting (--redact_on server): each final read with the 16 words before it,
    # not the whole file (docs/redaction.md, "On the server").
    _, on_server, _, server_leaks = _redacting_job(
        ctx, server, clips, ctx.workdir / "red_server", ["--redact_on", "server"]
    )
    where = "end to end, redacted by the service"
    server_misses = _end_to_end(res, clips, on_server, server_leaks, "server", where)
    res.notes.append("Misses with the service redacting: " + (", ".join(server_misses) or "none"))
    # Cost: the job's own redaction step, timed here over the same rows.
    transcription_cpu = job.cpu + job.server_cpu.cpu
    red_cpu = _redaction_cpu(originals, 5)
    res.measure("transcription_cpu_s", transcription_cpu, "s", "job client + server CPU for the redacting run")
    res.measure("redaction_cpu_s", red_cpu, "s", f"redact_row over the {len(originals)} rows (median of 5)")
    res.compare(
        "redaction_cpu_share",
        "redaction CPU / transcription CPU (client + server) for the same files, same run",
        red_cpu / transcription_cpu,
        TARGET_COST,
        "<=",
        subject="redact_row (all types)",
        baseline="the job's transcription",
        unit="x",
    )
    if plain_wall is not None:
        res.compare(
            "redact_wall_vs_plain",
            "job wall with --redact all over the same job without (noisy on a shared machine)",
            job.wall / plain_wall,
            1.05,
            "<=",
            subject="--redact all",
            baseline="no --redact",
        )
    res.notes.append(
        f"{len(clips)} clips ({audio_s:.0f} s): {human} values from Asterisk's recorded words (Allison Smith), "
        f"{len(clips) - human} (e-mail addresses) and every carrier phrase from Piper vl-joe."
    )
    res.notes.append("Reference text misses: " + (", ".join(ref_misses) or "none"))
    res.notes.append("End-to-end misses: " + (", ".join(e2e_misses) or "none"))
    lines = [f"What {MODEL} heard for the misses (heard | redacted):"]
    for m in e2e_misses:
        cid = m.split(":")[0]
        t = texts.get(cid, {})
        lines.append(f"- {m}: {t.get('heard')!r} | {t.get('redacted')!r}")
    res.notes.append("\n".join(lines))
    res.series["texts"] = texts
    return res
