"""Issue 30: `voxbeam transcribe --redact` end to end, and nothing it redacts leaks.

The recordings are our own Piper voice reading personal data (the tests' data has no human
recordings of it; docs/redaction.md says so): a card number, a phone number, an email address,
a date of birth and a social security number, and a sentence of near misses (a price, a year)
that must stay. What Whisper heard is read back from the job's own unredacted output, so the
leak check looks for the values as recognised, not as scripted.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from tests import speech
from tests.jobs.helpers import assert_usage_error, voxbeam
from voxbeam import audio
from voxbeam.beam import (
    DEAD_LETTERS,
    TRANSCRIPTS,
    UNREDACTED,
    Secret,
    ServiceSettings,
    Transcribe,
    WriteTranscripts,
    WriteUnredacted,
)
from voxbeam.errors import UsageError
from voxbeam.jobs.args import parse
from voxbeam.jobs.kinds import Transcription
from voxbeam.jobs.service import CAPABILITY_FLAGS, required_capabilities

SENTENCES = {
    "card": "My Visa card is 4111 1111 1111 1111.",
    "phone": "Call me on 415 555 2671.",
    "email": "My email is john dot smith at example dot com.",
    "born": "I was born on March 3rd, 1985. My social security number is 123 45 6789.",
    "near_misses": "It cost 45 dollars in 2019.",
}
EXPECTED_TYPES = {"CARD_NUMBER", "PHONE_NUMBER", "EMAIL", "DATE_OF_BIRTH", "NATIONAL_ID"}


@pytest.fixture(scope="module")
def recordings(server, tmp_path_factory):
    """One WAV per sentence, and a file that is no audio (so that the run writes dead letters)."""
    folder = tmp_path_factory.mktemp("redact") / "in"
    folder.mkdir()
    pad = speech.silence(0.3)
    for (name, _), pcm in zip(SENTENCES.items(), speech.render(server, list(SENTENCES.values())), strict=True):
        (folder / f"{name}.wav").write_bytes(audio.encode(pad + pcm + pad, 16000, "wav"))
    (folder / "broken.wav").write_bytes(b"RIFF this is not a wave file at all" * 20)
    return folder


def _parquet_rows(pattern: str) -> list[dict]:
    return [row for f in sorted(glob.glob(pattern)) for row in pq.read_table(f).to_pylist()]


def _raw_values(original: dict, entities: list[dict]) -> list[str]:
    """What each entity covered, as recognised: the unredacted words inside its time span."""
    values = []
    for e in entities:
        inside = [w["word"] for w in original["words"] if e["start_ms"] <= w["offset_ms"] < e["end_ms"]]
        assert inside, (e, original["words"])
        values.append(" ".join(inside))
    return values


def _needles(value: str) -> set[str]:
    """Strings that give a raw value away: its longer words, its digits together and in their groups."""
    found = {w.lower() for w in re.findall(r"[A-Za-z]{4,}", value)}
    found |= set(re.findall(r"\d{4,}", value))
    digits = re.sub(r"\D", "", value)
    if len(digits) >= 4:
        found.add(digits)
    return found


def _strings(value: object) -> list[str]:
    """The text in a decoded Parquet row: its string leaves (numbers are timings and sizes, not content)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


def _everything_written(out: str) -> dict[str, str]:
    """The text of every file under ``out`` but the unredacted output, without what is only timing.

    Timings are left out because a millisecond count or a caption's cue time may spell a raw value's digits
    by chance (an offset of 1985 ms is not a date of birth): Parquet counts by its string values and schema
    metadata, captions by their cue text.
    """
    contents = {}
    for path in glob.glob(os.path.join(out, "**", "*"), recursive=True):
        if os.path.isdir(path) or os.sep + UNREDACTED + os.sep in path:
            continue
        if path.endswith(".parquet"):
            table = pq.read_table(path)
            meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
            contents[path] = "\n".join(_strings([table.to_pylist(), meta]))
            continue
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
        if path.endswith((".srt", ".vtt")):
            lines = [line for line in lines if "-->" not in line and not line.strip().isdigit()]
        contents[path] = "\n".join(lines)
    return contents


def _leaks(needles: set[str], contents: dict[str, str]) -> list[tuple[str, str]]:
    """Which needles appear in which contents: words anywhere, digits as a whole number.

    Paths are left out (a temporary folder or a run id may hold any digits), and digits must stand alone
    (``1985`` in ``01:29:01,985`` or ``pytest-1985`` is no date), but digit groups joined by spaces, commas or
    dashes count as one number: "4,111 111" is still 4111111.
    """
    found = []
    for path, text in contents.items():
        low = re.sub(r"(?:/[\w.=:+\-]+)+", " ", text.lower())
        joined = re.sub(r"(?<=\d)[\s,\-]+(?=\d)", "", low)
        for n in needles:
            if n.isdigit():
                number = re.compile(rf"(?<!\d){n}(?!\d)")
                if number.search(low) or number.search(joined):
                    found.append((n, path))
            elif n in low:
                found.append((n, path))
    return found


def test_a_redacted_job_writes_no_raw_value_anywhere_but_its_unredacted_output(server, recordings, tmp_path):
    out = str(tmp_path / "out")
    proc = voxbeam(
        "transcribe", str(recordings), "--output", out, "--endpoint", server.url, "--language", "en",
        "--redact", "all", "--redact_keep_original", "true", "--captions", "srt,vtt",
        "--max_dead_letter_fraction", "0.5", env={"VOXNEXUS_API_KEY": server.api_key},
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout, proc.stderr)

    rows = {os.path.basename(r["source_uri"]): r for r in _parquet_rows(f"{out}/{TRANSCRIPTS}/run=*/*.parquet")}
    originals = {os.path.basename(r["source_uri"]): r for r in _parquet_rows(f"{out}/{UNREDACTED}/run=*/*.parquet")}
    assert set(rows) == set(originals) == {f"{name}.wav" for name in SENTENCES}
    dead = _parquet_rows(f"{out}/{DEAD_LETTERS}/run=*/*.parquet")
    assert [json.loads(d["input"])["uri"] for d in dead] == [str(recordings / "broken.wav")]

    found = {e["type"] for r in rows.values() for e in r["entities"]}
    assert found == EXPECTED_TYPES, {k: (r["text"], r["entities"]) for k, r in rows.items()}
    assert rows["near_misses.wav"]["entities"] == []
    near = rows["near_misses.wav"]["text"]
    assert near == originals["near_misses.wav"]["text"] and "45" in near and "2019" in near

    needles: set[str] = set()
    for name, row in rows.items():
        for e in row["entities"]:
            assert set(e) == {"type", "start_ms", "end_ms", "confidence"}
            assert 0 <= e["start_ms"] < e["end_ms"] <= row["audio_duration_ms"] and 0 < e["confidence"] <= 1
            # Timings kept: the entity is one placeholder word spanning its time, in words, text and segments.
            masks = [w for w in row["words"] if w["word"].startswith(f"[{e['type']}]")]
            assert any(
                w["offset_ms"] == e["start_ms"] and w["duration_ms"] == e["end_ms"] - e["start_ms"] for w in masks
            )
            assert f"[{e['type']}]" in row["text"] and any(f"[{e['type']}]" in s["text"] for s in row["segments"])
        for value in _raw_values(originals[name], row["entities"]):
            needles |= _needles(value)
    assert len(needles) >= len(EXPECTED_TYPES), needles

    # The unredacted output holds them (so the check below can fail) ...
    assert _leaks(needles, {"unredacted": json.dumps(list(originals.values()), default=str)})
    # ... and no other file, nor what the job printed.
    written = _everything_written(out)
    assert any(p.endswith(".srt") for p in written) and any(p.endswith(".vtt") for p in written)
    assert any(f"{os.sep}{DEAD_LETTERS}{os.sep}" in p for p in written)
    assert _leaks(needles, written) == []
    assert _leaks(needles, {"stdout": proc.stdout, "stderr": proc.stderr}) == []
    assert f"{out}/{UNREDACTED}/run=" in proc.stdout, proc.stdout


def test_the_transform_keeps_originals_only_when_asked_and_logs_no_text(server, recordings, tmp_path, caplog):
    settings = ServiceSettings(endpoints=(server.url,), api_key=Secret(server.api_key))
    built = beam.Pipeline(runner=FnApiRunner())  # built, never run: no unredacted output unless asked for
    assert set(built | beam.Create(["a.wav"]) | Transcribe(settings, redact="all")) == {TRANSCRIPTS, DEAD_LETTERS}

    files = [str(recordings / "card.wav"), str(recordings / "email.wav")]
    out = str(tmp_path / "out")
    caplog.set_level(logging.DEBUG)
    with beam.Pipeline(runner=FnApiRunner()) as p:
        result = (
            p
            | beam.Create(files)
            | Transcribe(settings, language="en", redact="all", profanity="tag", keep_original=True)
        )
        result[TRANSCRIPTS] | WriteTranscripts(out, "beam")
        result[UNREDACTED] | WriteUnredacted(out, "beam")
    rows = _parquet_rows(f"{out}/{TRANSCRIPTS}/run=beam/*.parquet")
    originals = {r["source_uri"]: r for r in _parquet_rows(f"{out}/{UNREDACTED}/run=beam/*.parquet")}
    assert len(rows) == len(originals) == len(files)
    assert {e["type"] for r in rows for e in r["entities"]} == {"CARD_NUMBER", "EMAIL"}
    needles = {n for r in rows for v in _raw_values(originals[r["source_uri"]], r["entities"]) for n in _needles(v)}
    assert needles and _leaks(needles, {"unredacted": json.dumps(list(originals.values()), default=str)})
    assert _leaks(needles, {"rows": "\n".join(_strings(rows))}) == []
    assert caplog.records and _leaks(needles, {"logs": caplog.text}) == []


def test_the_server_can_redact_instead_and_the_rows_are_the_same_shape(server, recordings, tmp_path):
    """``redact_on="server"``: the service masks the finals (the ``redact`` init extension); the rows carry its
    entities at absolute times, and nothing unmasked reaches the job at all."""
    settings = ServiceSettings(endpoints=(server.url,), api_key=Secret(server.api_key))
    out = str(tmp_path / "out")
    files = [str(recordings / "card.wav"), str(recordings / "email.wav")]
    with beam.Pipeline(runner=FnApiRunner()) as p:
        result = p | beam.Create(files) | Transcribe(settings, language="en", redact="all", redact_on="server")
        result[TRANSCRIPTS] | WriteTranscripts(out, "server")
    rows = {os.path.basename(r["source_uri"]): r for r in _parquet_rows(f"{out}/{TRANSCRIPTS}/run=server/*.parquet")}
    assert {name: [e["type"] for e in r["entities"]] for name, r in rows.items()} == {
        "card.wav": ["CARD_NUMBER"],
        "email.wav": ["EMAIL"],
    }, {name: r["text"] for name, r in rows.items()}
    card = rows["card.wav"]
    assert "[CARD_NUMBER]" in card["text"] and not re.search(r"\d", card["text"]), card["text"]
    assert not any(re.search(r"\d", w["word"]) for w in card["words"]), card["words"]
    (e,) = card["entities"]
    (mask,) = [w for w in card["words"] if w["word"].startswith("[CARD_NUMBER]")]
    assert (mask["offset_ms"], mask["offset_ms"] + mask["duration_ms"]) == (e["start_ms"], e["end_ms"])
    assert 0 < e["start_ms"] < e["end_ms"] <= card["audio_duration_ms"]
    with pytest.raises(ValueError, match="redact_on"):
        Transcribe(settings, redact="all", redact_on="server", keep_original=True)


def test_a_job_that_has_the_server_redact_asks_its_preflight_for_the_capability(tmp_path):
    argv = ["in.wav", "--output", str(tmp_path / "out"), "--redact", "CARD_NUMBER", "--profanity", "tag"]
    client_side = Transcription(parse("transcribe", argv).config).session()[1]
    job = Transcription(parse("transcribe", [*argv, "--redact_on", "server"]).config)
    assert job.transcribe(ServiceSettings(), None).display_data()["redact_on"] == "server"
    server_side = job.session()[1]
    assert required_capabilities(client_side) == ()
    assert required_capabilities(server_side) == ("redact", "profanity")
    assert (server_side.redact, server_side.profanity) == (("CARD_NUMBER",), "tag")
    assert {CAPABILITY_FLAGS[c] for c in required_capabilities(server_side)} == {"--redact_on"}


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--redact", "CARD_NUMBER,SHOE_SIZE"], "--redact"),
        (["--redact", "all", "--phone_region", "XX"], "--phone_region"),
        (["--profanity", "bleep"], "--profanity"),
        (["--redact_keep_original", "true"], "--redact_keep_original"),
        (["--redact", "EMAIL", "--phone_region", "GB"], "--phone_region"),
        (["--redact", "all", "--redact_on", "server", "--redact_keep_original", "true"], "--redact_keep_original"),
    ],
)
def test_bad_redaction_flags_are_usage_errors_naming_the_flag(flags, named, tmp_path):
    argv = ["in.wav", "--output", str(tmp_path / "out"), *flags]
    with pytest.raises(UsageError) as caught:
        Transcription(parse("transcribe", argv).config)
    assert caught.value.flag == named, str(caught.value)
    if "SHOE_SIZE" in flags[1]:
        assert "SHOE_SIZE" in str(caught.value) and "CARD_NUMBER" in str(caught.value)


def test_the_command_line_refuses_a_bad_redaction_flag_in_one_line(tmp_path):
    proc = voxbeam("transcribe", "in.wav", "--output", str(tmp_path / "out"), "--redact", "cards")
    line = assert_usage_error(proc, "--redact", "CARDS", "PHONE_NUMBER")
    assert not (tmp_path / "out").exists(), line
