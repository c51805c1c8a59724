"""Issue 30: `voxbeam transcribe --redact` end to end, and nothing it redacts leaks.

The recordings are our own Piper voice reading personal data (the tests' data has no human
recordings of it; docs/redaction.md says so): a card number, a phone number, an email address,
a date of birth and a social security number, and a sentence of near misses (a price, a year)
that must stay. What Whisper heard is read back from the job's own unredacted output, so the
leak check looks for the values as recognised, not as scripted.
"""

from __future__ import annotations

import glob
import io
import json
import logging
import os
import re

import apache_beam as beam
import av
import numpy as np
import pyarrow.parquet as pq
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from tests import speech
from tests.jobs.helpers import assert_usage_error, voxbeam
from voxbeam import audio, bleep
from voxbeam.beam import (
    DEAD_LETTERS,
    REDACTED_AUDIO,
    REDACTED_AUDIO_MANIFEST,
    TRANSCRIPTS,
    UNREDACTED,
    Secret,
    ServiceSettings,
    Transcribe,
    WriteRedactedAudioManifest,
    WriteTranscripts,
    WriteUnredacted,
    storage,
)
from voxbeam.beam.redacted_audio import FAILED, AudioRedaction
from voxbeam.beam.redacting import RedactFn, Redaction
from voxbeam.client import ClientConfig, SyncSpeechClient
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
    """The text of every file under ``out`` but the unredacted output and the bleeped audio, without what is only
    timing. (Audio bytes read as text spell digits by chance; the copies are heard again instead, below.)

    Timings are left out because a millisecond count or a caption's cue time may spell a raw value's digits
    by chance (an offset of 1985 ms is not a date of birth): Parquet counts by its string values and schema
    metadata, captions by their cue text.
    """
    contents = {}
    for path in glob.glob(os.path.join(out, "**", "*"), recursive=True):
        if os.path.isdir(path) or any(f"{os.sep}{kind}{os.sep}" in path for kind in (UNREDACTED, REDACTED_AUDIO)):
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
        "--redact", "all", "--redact_keep_original", "true", "--captions", "srt,vtt", "--redact_audio", "silence",
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

    # --redact_audio silence: a copy of every transcribed input (none of the broken one), zeros over each value.
    manifest = {os.path.basename(m["source_uri"]): m for m in _parquet_rows(f"{out}/{REDACTED_AUDIO_MANIFEST}/*/*")}
    assert set(manifest) == set(rows) and f"{out}/{REDACTED_AUDIO_MANIFEST}/run=" in proc.stdout
    for name, m in manifest.items():
        assert m["uri"].startswith(f"{out}/{REDACTED_AUDIO}/run=") and m["uri"].endswith(".wav")
        assert m["mode"] == ("silence" if rows[name]["entities"] else "copy")
        samples, rate, _ = _channels(open(m["uri"], "rb").read())
        assert m["spans"] or rows[name]["entities"] == []
        for span in m["spans"]:
            assert not samples[:, span["start_ms"] * rate // 1000 : span["end_ms"] * rate // 1000].any()


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
    # One card, one entity, also when the number comes in two finals ("My Visa card is [CARD_NUMBER].
    # [CARD_NUMBER]." in one CI run: Piper renders differently each time, and Whisper wrote a full stop inside
    # it): the server names the second part from the final before it, and the client joins the two.
    assert {name: [e["type"] for e in r["entities"]] for name, r in rows.items()} == {
        "card.wav": ["CARD_NUMBER"],
        "email.wav": ["EMAIL"],
    }, {name: r["text"] for name, r in rows.items()}
    card = rows["card.wav"]
    assert "[CARD_NUMBER]" in card["text"] and not re.search(r"\d", card["text"]), card["text"]
    assert not any(re.search(r"\d", w["word"]) for w in card["words"]), card["words"]
    masks = [(w["offset_ms"], w["offset_ms"] + w["duration_ms"]) for w in card["words"] if "[CARD_NUMBER]" in w["word"]]
    (e,) = card["entities"]
    assert masks and (masks[0][0], masks[-1][1]) == (e["start_ms"], e["end_ms"]), (masks, e)
    assert 0 < e["start_ms"] < e["end_ms"] <= card["audio_duration_ms"], e
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
        (["--redact_audio", "tone"], "--redact_audio"),
        (["--redact", "all", "--redact_audio", "bleep"], "--redact_audio"),
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


def _channels(data: bytes) -> tuple[np.ndarray, int, str]:
    """(channels x samples as floats, rate, container) of an encoded file, at its own rate and layout."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        rate, layout = stream.codec_context.sample_rate, stream.codec_context.layout.name
        to_float = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        blocks = [f.to_ndarray() for frame in container.decode(stream) for f in to_float.resample(frame)]
        blocks += [f.to_ndarray() for f in to_float.resample(None)]
        return np.concatenate(blocks, axis=1), rate, container.format.name


def _peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def test_redacted_audio_bleeps_every_value_in_the_inputs_own_container(server, recordings, tmp_path):
    """``--redact_audio tone``: a WAV, a stereo FLAC and an M4A with values, and a WAV without; each gets a copy in
    its container, the tone on every channel over each value, and the copies transcribed again hold no value the
    originals' transcripts hold."""
    folder = tmp_path / "in"
    folder.mkdir()
    pcm = {name: (recordings / f"{name}.wav").read_bytes()[44:] for name in ("phone", "email")}
    (folder / "card.wav").write_bytes((recordings / "card.wav").read_bytes())
    (folder / "phone.flac").write_bytes(speech.stereo_flac(pcm["phone"], 16000))
    (folder / "email.m4a").write_bytes(speech.m4a(pcm["email"], 16000))
    (folder / "near_misses.wav").write_bytes((recordings / "near_misses.wav").read_bytes())
    settings = ServiceSettings(endpoints=(server.url,), api_key=Secret(server.api_key))
    out = str(tmp_path / "out")
    copies = os.path.join(out, REDACTED_AUDIO, "run=t")
    with beam.Pipeline(runner=FnApiRunner()) as p:
        result = (
            p
            | beam.Create(sorted(str(f) for f in folder.iterdir()))
            | Transcribe(
                settings, language="en", redact="all", keep_original=True, redact_audio="tone",
                redacted_audio_prefix=copies,
            )
        )  # fmt: skip
        result[TRANSCRIPTS] | WriteTranscripts(out, "t")
        result[UNREDACTED] | WriteUnredacted(out, "t")
        result[REDACTED_AUDIO] | WriteRedactedAudioManifest(out, "t")

    rows = {os.path.basename(r["source_uri"]): r for r in _parquet_rows(f"{out}/{TRANSCRIPTS}/run=t/*.parquet")}
    originals = {os.path.basename(r["source_uri"]): r for r in _parquet_rows(f"{out}/{UNREDACTED}/run=t/*.parquet")}
    manifest = {
        os.path.basename(m["source_uri"]): m for m in _parquet_rows(f"{out}/{REDACTED_AUDIO_MANIFEST}/run=t/*.parquet")
    }
    names = {"card.wav", "phone.flac", "email.m4a", "near_misses.wav"}
    assert set(rows) == set(originals) == set(manifest) == names
    assert {n: [e["type"] for e in r["entities"]] for n, r in rows.items()} == {
        "card.wav": ["CARD_NUMBER"],
        "phone.flac": ["PHONE_NUMBER"],
        "email.m4a": ["EMAIL"],
        "near_misses.wav": [],
    }, {n: r["text"] for n, r in originals.items()}

    # Every input has its copy; one without values is the input's bytes.
    quiet = manifest["near_misses.wav"]
    assert (quiet["mode"], quiet["spans"]) == ("copy", [])
    assert open(quiet["uri"], "rb").read() == (folder / "near_misses.wav").read_bytes()
    assert sorted(os.listdir(copies)) == sorted(os.path.basename(m["uri"]) for m in manifest.values())

    expected = {"card.wav": ("wav", "wav", 1), "phone.flac": ("flac", "flac", 2), "email.m4a": ("m4a", "mov,mp4", 1)}
    heard = {}
    with SyncSpeechClient(ClientConfig(endpoints=(server.url,), api_key=server.api_key, pool_size=3)) as client:
        futures = {}
        for name, (ext, container, channels) in expected.items():
            m = manifest[name]
            assert (m["mode"], m["format"], m["container_kept"], m["sample_rate"]) == ("tone", ext, True, 16000), m
            assert m["uri"].startswith(copies) and m["uri"].endswith(f".{ext}")
            # Each value's span is inside what was replaced.
            for e in rows[name]["entities"]:
                assert any(s["start_ms"] <= e["start_ms"] and e["end_ms"] <= s["end_ms"] for s in m["spans"]), m
            data = open(m["uri"], "rb").read()
            assert len(data) == m["bytes"]
            samples, rate, found = _channels(data)
            assert found.startswith(container) and rate == 16000
            assert samples.shape[0] == m["channels"] == channels
            for s in m["spans"]:  # the tone, on every channel, over each span (its fades left out)
                inside = samples[:, (s["start_ms"] + 20) * 16 : (s["end_ms"] - 20) * 16]
                for channel in inside:
                    assert abs(_peak_hz(channel, rate) - bleep.TONE_HZ) < 20
                    rms = float(np.sqrt(np.mean(channel**2)))
                    assert abs(rms - bleep.TONE_LEVEL / np.sqrt(2)) < 0.03, rms
            futures[name] = client.transcribe_async(lambda d=data: audio.decode_to_pcm(io.BytesIO(d)), language="en")
        for name, future in futures.items():
            result = future.result(timeout=120)
            heard[name] = " ".join([result.text, *(w.word for w in result.words)])

    # The floor: the originals' transcripts hold the values (so this can fail); the copies', none of them.
    needles = {
        n for name in expected for v in _raw_values(originals[name], rows[name]["entities"]) for n in _needles(v)
    }
    assert len(needles) >= 3, needles
    assert _leaks(needles, {"unredacted": json.dumps([originals[n] for n in expected], default=str)})
    assert _leaks(needles, heard) == [], heard
    # ... while the rest of the speech is still there to hear.
    cues = {"card.wav": "card", "phone.flac": "call", "email.m4a": "email"}
    assert all(cue in heard[name].lower() for name, cue in cues.items()), heard


def test_an_input_whose_copy_fails_is_one_dead_letter_and_nothing_else(recordings, tmp_path, caplog):
    """The transcript is withheld (and its original): every input ends in exactly one of output or dead letters."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    fn = RedactFn(Redaction.of("all", keep_original=True), AudioRedaction(str(blocker / "copies"), "silence"))
    fn.setup()
    source = storage.stat(str(recordings / "card.wav"))
    row = {
        "source_uri": source.uri, "source_size": source.size, "source_generation_or_mtime": source.version,
        "language": "en",
        "text": "My Visa card is 4111 1111 1111 1111.", "segments": [], "audio_duration_ms": 3000,
        "words": [
            {"word": w, "offset_ms": 300 * i, "duration_ms": 250, "confidence": 0.9}
            for i, w in enumerate("My Visa card is 4111 1111 1111 1111.".split())
        ],
    }  # fmt: skip
    caplog.set_level(logging.DEBUG)
    (out,) = list(fn.process(row))
    assert out.tag == DEAD_LETTERS and (out.value["stage"], out.value["error_code"]) == ("redact_audio", FAILED)
    assert json.loads(out.value["input"]) == {"uri": row["source_uri"]}
    assert "4111" not in json.dumps(out.value, default=str) and "4111" not in caplog.text
    with pytest.raises(ValueError, match="redact_audio"):
        Transcribe(redact_audio="tone", redacted_audio_prefix=str(tmp_path))
    with pytest.raises(ValueError, match="redact_audio"):
        Transcribe(redact="all", redact_audio="beep", redacted_audio_prefix=str(tmp_path))
