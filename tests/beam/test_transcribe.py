"""Transcribe on the FnApiRunner against the real server: formats, dead letters, schema, concurrency."""

from __future__ import annotations

import glob
import os

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from tests import speech
from voxbeam import audio
from voxbeam.beam import (
    DEAD_LETTERS,
    TRANSCRIPTS,
    Secret,
    ServiceSettings,
    Transcribe,
    WriteDeadLetters,
    WriteTranscripts,
)


def settings_for(server, **kw):
    return ServiceSettings(endpoints=(server.url,), api_key=Secret(server.api_key), **kw)


def read_rows(pattern):
    files = sorted(glob.glob(pattern))
    assert files, f"nothing written at {pattern}"
    tables = [pq.read_table(f) for f in files]
    return tables, [row for t in tables for row in t.to_pylist()]


def run_transcribe(server, inputs, out, run_id="test", **kw):
    with beam.Pipeline(runner=FnApiRunner()) as p:
        result = p | beam.Create(inputs) | Transcribe(settings_for(server, **kw))
        result[TRANSCRIPTS] | WriteTranscripts(str(out), run_id, captions=("srt", "vtt"))
        result[DEAD_LETTERS] | WriteDeadLetters(str(out), run_id)
    _, rows = read_rows(os.path.join(out, TRANSCRIPTS, f"run={run_id}", "*.parquet"))
    dead_files = glob.glob(os.path.join(out, DEAD_LETTERS, f"run={run_id}", "*.parquet"))
    dead = [r for f in dead_files for r in pq.read_table(f).to_pylist()]
    return rows, dead


@pytest.fixture(scope="module")
def spoken(server):
    return speech.render(server, speech.SENTENCES[:6])


def test_mixed_formats_and_bad_inputs(server, spoken, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    s = speech.SENTENCES
    pad = speech.silence(0.4)
    files = {
        "a_8k.wav": (audio.encode(audio.resample(pad + spoken[0] + pad, 16000, 8000), 8000, "wav"), s[0]),
        "b_44k_stereo.flac": (speech.stereo_flac(audio.resample(pad + spoken[1] + pad, 16000, 44100), 44100), s[1]),
        "c.mp3": (audio.encode(audio.resample(pad + spoken[2] + pad, 16000, 22050), 22050, "mp3"), s[2]),
        "d.ogg": (audio.encode(audio.resample(pad + spoken[3] + pad, 16000, 48000), 48000, "opus"), s[3]),
        "e.m4a": (speech.m4a(audio.resample(pad + spoken[4] + pad, 16000, 24000), 24000), s[4]),
        "f_48k.wav": (audio.encode(audio.resample(pad + spoken[5] + pad, 16000, 48000), 48000, "wav"), s[5]),
    }
    for name, (data, _) in files.items():
        (src / name).write_bytes(data)
    (src / "empty.wav").write_bytes(b"")
    (src / "notes.wav").write_text("this is a text file, not audio\n" * 10)
    mp3 = audio.encode(audio.resample(pad + spoken[0] + pad, 16000, 22050), 22050, "mp3")
    (src / "truncated.mp3").write_bytes(mp3[: len(mp3) // 2])
    missing = str(src / "missing.wav")
    inputs = sorted(str(p) for p in src.iterdir()) + [missing]

    out = tmp_path / "out"
    rows, dead = run_transcribe(server, inputs, str(out))

    # Every input ends in exactly one place.
    assert len(rows) + len(dead) == len(inputs)
    by_name = {os.path.basename(r["source_uri"]): r for r in rows}
    assert set(by_name) == set(files)
    codes = {os.path.basename(eval_input(d)): d["error_code"] for d in dead}
    assert codes == {
        "empty.wav": "EMPTY_AUDIO",
        "notes.wav": "NOT_AUDIO",
        "truncated.mp3": "CORRUPT_AUDIO",
        "missing.wav": "NOT_FOUND",
    }
    assert all(d["attempts"] >= 1 and d["error_message"] for d in dead)

    refs = [files[n][1] for n in sorted(files)]
    hyps = [by_name[n]["text"] for n in sorted(files)]
    assert speech.wer(refs, hyps) <= 0.35, list(zip(refs, hyps, strict=True))

    for name, row in by_name.items():
        assert row["source_size"] == len(files[name][0])
        assert row["language"].lower().startswith("en")
        assert row["request_ids"] and row["model"]
        duration = row["audio_duration_ms"]
        assert abs(duration - audio.duration_ms(files[name][0])) <= 100
        offsets = [w["offset_ms"] for w in row["words"]]
        assert offsets == sorted(offsets) and offsets, name
        # 0.4 s of silence lead every file: words start after it and end within the audio.
        assert offsets[0] >= 250, (name, offsets[0])
        assert all(w["offset_ms"] + w["duration_ms"] <= duration + 50 for w in row["words"])
        assert row["segments"] and row["processed_at"] is not None

    captions = sorted(os.listdir(out / "captions" / "run=test"))
    assert len(captions) == 2 * len(files)
    srt = next(c for c in captions if c.startswith("a_8k") and c.endswith(".srt"))
    assert "-->" in (out / "captions" / "run=test" / srt).read_text()


def eval_input(dead_row):
    import json

    value = json.loads(dead_row["input"])
    return value["uri"] if isinstance(value, dict) else value


def test_parquet_reads_back_with_the_documented_schema(server, spoken, tmp_path):
    wav = tmp_path / "one.wav"
    wav.write_bytes(audio.encode(speech.silence(0.3) + spoken[0], 16000, "wav"))
    out = tmp_path / "out"
    run_transcribe(server, [str(wav), str(tmp_path / "nope.wav")], str(out), run_id="schema")
    tables, rows = read_rows(str(out / TRANSCRIPTS / "run=schema" / "*.parquet"))
    assert tables
    for t in tables:
        assert t.schema.remove_metadata() == DOCUMENTED_TRANSCRIPT
    assert rows and all(r["entities"] == [] for r in rows)  # the column is there, empty, when nothing is redacted
    dead = [pq.read_table(f) for f in glob.glob(str(out / DEAD_LETTERS / "run=schema" / "*.parquet"))]
    assert dead and all(t.schema.remove_metadata() == DOCUMENTED_DEAD_LETTER for t in dead)


# The README's "Outputs", written out here (not taken from voxbeam.beam.schema, whose change is what this catches).
_TIMED = [("offset_ms", pa.int64()), ("duration_ms", pa.int64()), ("confidence", pa.float32())]
_WHO = [("speaker", pa.string()), ("channel", pa.int32())]
_ENTITY = [("type", pa.string()), ("start_ms", pa.int64()), ("end_ms", pa.int64()), ("confidence", pa.float32())]
DOCUMENTED_TRANSCRIPT = pa.schema(
    [
        ("source_uri", pa.string()),
        ("source_size", pa.int64()),
        ("source_generation_or_mtime", pa.string()),
        ("language", pa.string()),
        ("text", pa.string()),
        ("confidence", pa.float32()),
        ("audio_duration_ms", pa.int64()),
        ("words", pa.list_(pa.struct([("word", pa.string()), *_TIMED, *_WHO]))),
        ("segments", pa.list_(pa.struct([("text", pa.string()), *_TIMED, *_WHO]))),
        ("request_ids", pa.list_(pa.string())),
        ("model", pa.string()),
        ("processed_at", pa.timestamp("ms", tz="UTC")),
        ("entities", pa.list_(pa.struct(_ENTITY))),
        ("speakers", pa.list_(pa.struct([*_WHO, ("talk_ms", pa.int64()), ("words", pa.int64())]))),
        ("silence_ms", pa.int64()),
        ("overlap_ms", pa.int64()),
    ]
)
DOCUMENTED_DEAD_LETTER = pa.schema(
    [
        ("stage", pa.string()),
        ("input", pa.string()),
        ("error_code", pa.string()),
        ("error_message", pa.string()),
        ("attempts", pa.int32()),
        ("failed_at", pa.timestamp("ms", tz="UTC")),
    ]
)


def test_one_worker_streams_eight_sessions_at_once(spoken, tmp_path):
    """With one worker process (the in-process FnApiRunner), 8 sessions stream concurrently."""
    from voxbeam.server.launcher import LocalServer

    clip = audio.encode(speech.silence(0.2) + (spoken[1] + speech.silence(0.3)) * 2, 16000, "wav")
    paths = []
    for i in range(12):  # more files than sessions: the sessions are reused, not reopened
        path = tmp_path / f"clip{i:02d}.wav"
        path.write_bytes(clip)
        paths.append(str(path))
    with LocalServer(workers=2) as dedicated:
        rows, dead = run_transcribe(dedicated, paths, str(tmp_path / "out"), sessions_per_worker=8)
        health = dedicated.health()
    assert len(rows) == 12 and not dead
    assert health["peak_streaming_stt"] >= 8, health
    assert health["connections_total"] <= 8, health


def test_recognition_controls_are_checked_when_the_transform_is_built():
    with pytest.raises(ValueError, match="'prompt' is 501 characters"):
        Transcribe(prompt="x" * 501)
    with pytest.raises(ValueError, match="'task' must be transcribe or translate"):
        Transcribe(task="summarize")
    with pytest.raises(ValueError, match="candidates for detection"):
        Transcribe(language="en-US", languages=["en", "es"])
    shown = Transcribe(hotwords="Dashwood", task="translate", languages=("en", "es")).display_data()
    assert (shown["hotwords"], shown["task"], shown["languages"]) == ("Dashwood", "translate", "en,es"), shown
    assert "prompt" not in shown
    with pytest.raises(ValueError, match="'model' holds control characters"):
        Transcribe(stt_model="base\n\x00")
    assert Transcribe(stt_model=" base ").display_data()["stt_model"] == "base"
    assert "stt_model" not in shown
