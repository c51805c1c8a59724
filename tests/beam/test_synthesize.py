"""Synthesize on the FnApiRunner against the real server: objects, manifest, dead letters, gs://."""

from __future__ import annotations

import glob
import hashlib
import json
import os

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from tests import speech
from voxbeam import audio
from voxbeam.beam import (
    DEAD_LETTERS,
    MANIFEST,
    TRANSCRIPTS,
    Secret,
    ServiceSettings,
    Synthesize,
    Transcribe,
    TtsParams,
    WriteDeadLetters,
    WriteManifest,
    WriteTranscripts,
    storage,
)
from voxbeam.beam.schema import MANIFEST_SCHEMA


def settings_for(server):
    return ServiceSettings(endpoints=(server.url,), api_key=Secret(server.api_key))


def synthesize(server, records, prefix, run_id="test", **defaults):
    with beam.Pipeline(runner=FnApiRunner()) as p:
        result = (
            p
            | beam.Create(records)
            | Synthesize(storage.join(prefix, "audio"), settings_for(server), TtsParams(**defaults))
        )
        result[MANIFEST] | WriteManifest(prefix, run_id)
        result[DEAD_LETTERS] | WriteDeadLetters(prefix, run_id)


def read_parquet(uris):
    import io

    return [r for u in uris for r in pq.read_table(io.BytesIO(storage.read_bytes(u))).to_pylist()]


def test_hundred_records_become_hundred_decodable_files(server, tmp_path):
    records = [{"id": f"rec-{i:03d}", "text": f"Record number {i}. {speech.SENTENCES[i % 8]}"} for i in range(100)]
    formats = ["wav", "mp3", "flac", "opus", "pcm"]
    for i, r in enumerate(records[:10]):
        r["format"] = formats[i % 5]
        r["sample_rate"] = [8000, 16000, 22050, 24000, 48000][i % 5]
    for r in records[10:]:
        r["voice_id"] = "vl-andrew"  # eSpeak NG: the plumbing at volume; the Piper default voice above
    bad = [
        {"id": "bad-voice", "text": "Hello there.", "voice_id": "vl-nobody"},
        {"id": "no-text", "text": ""},
        {"id": "rec-001", "text": "A second record with an id that is taken."},
    ]
    out = str(tmp_path / "out")
    synthesize(server, records + bad, out)

    manifest_files = glob.glob(os.path.join(out, MANIFEST, "run=test", "*.parquet"))
    manifest = read_parquet(manifest_files)
    assert all(pq.read_schema(f).remove_metadata() == MANIFEST_SCHEMA for f in manifest_files)
    dead = read_parquet(glob.glob(os.path.join(out, DEAD_LETTERS, "run=test", "*.parquet")))
    assert len(manifest) == 100 and len(dead) == 3
    assert {d["error_code"] for d in dead} == {"VOICE_NOT_FOUND", "INVALID_INPUT", "DUPLICATE_ID"}
    assert json.loads(next(d for d in dead if d["error_code"] == "VOICE_NOT_FOUND")["input"])["id"] == "bad-voice"

    files = sorted(os.listdir(os.path.join(out, "audio")))
    assert len(files) == 100
    by_id = {m["id"]: m for m in manifest}
    assert set(by_id) == {r["id"] for r in records}
    for r in records:
        m = by_id[r["id"]]
        data = open(m["uri"], "rb").read()
        assert m["bytes"] == len(data)
        assert m["text_sha256"] == hashlib.sha256(r["text"].encode()).hexdigest()
        fmt = r.get("format", "wav")
        # The rate the file really has: Opus is made at 48 kHz whatever was asked.
        assert m["format"] == fmt and m["sample_rate"] == audio.delivered_rate(fmt, r.get("sample_rate", 16000))
        decoded = len(data) // 2 * 1000 // m["sample_rate"] if fmt == "pcm" else audio.duration_ms(data)
        assert decoded > 500 and abs(decoded - m["duration_ms"]) <= 30, (m, decoded)


def test_gcs_in_and_out(server, bucket, tmp_path):
    """Audio read from a bucket, transcripts and audio objects written back, idempotent synthesis."""
    records = [{"id": f"g{i}", "text": t} for i, t in enumerate(speech.SENTENCES[:4])]
    prefix = f"gs://{bucket}/tts"
    synthesize(server, records, prefix, run_id="one", format="mp3")
    synthesize(server, records, prefix, run_id="two", format="mp3")
    client = storage.gcs_client()
    objects = [b for b in client.list_blobs(bucket, prefix="tts/audio/")]
    assert sorted(b.name for b in objects) == [f"tts/audio/g{i}.mp3" for i in range(4)]
    for blob in objects:
        assert blob.content_type == "audio/mpeg"
        assert blob.metadata["voice_id"] and len(blob.metadata["text_sha256"]) == 64
    manifest = read_parquet([f.uri for f in storage.match(f"{prefix}/{MANIFEST}/run=two/*.parquet")])
    assert sorted(m["uri"] for m in manifest) == [f"gs://{bucket}/tts/audio/g{i}.mp3" for i in range(4)]

    # The rendered mp3 objects are the input of a transcription that writes back to the bucket.
    out = f"gs://{bucket}/stt"
    with beam.Pipeline(runner=FnApiRunner()) as p:
        result = (
            p | beam.Create([f"gs://{bucket}/tts/audio/g{i}.mp3" for i in range(4)]) | Transcribe(settings_for(server))
        )
        result[TRANSCRIPTS] | WriteTranscripts(out, "gcs", captions=("vtt",))
        result[DEAD_LETTERS] | WriteDeadLetters(out, "gcs")
    rows = read_parquet([f.uri for f in storage.match(f"{out}/{TRANSCRIPTS}/run=gcs/*.parquet")])
    assert len(rows) == 4
    by_uri = {r["source_uri"]: r for r in rows}
    hyps = []
    for i in range(4):
        row = by_uri[f"gs://{bucket}/tts/audio/g{i}.mp3"]
        assert row["source_generation_or_mtime"].isdigit()  # GCS generation, not an mtime
        hyps.append(row["text"])
    assert speech.wer(speech.SENTENCES[:4], hyps) <= 0.35, hyps
    vtts = [b for b in client.list_blobs(bucket, prefix="stt/captions/")]
    assert len(vtts) == 4 and all(b.content_type == "text/vtt" for b in vtts)


def test_a_text_over_the_services_limit_becomes_one_object(server, tmp_path):
    """Past the service's 5,000 characters per utterance: sent as several utterances, cut at sentence
    ends, and joined into one file, not a TEXT_TOO_LONG dead letter."""
    sentences = [f"This is sentence number {i} of a long text." for i in range(160)]
    text = " ".join(sentences)
    assert len(text) > 6000
    out = str(tmp_path / "out")
    records = [{"id": "long", "text": text, "voice_id": "vl-andrew", "format": fmt} for fmt in ("mp3",)]
    records.append({"id": "long-wav", "text": text, "voice_id": "vl-andrew", "format": "wav"})
    synthesize(server, records, out)
    manifest = read_parquet(glob.glob(os.path.join(out, MANIFEST, "run=test", "*.parquet")))
    dead = read_parquet(glob.glob(os.path.join(out, DEAD_LETTERS, "run=test", "*.parquet")))
    assert not dead and {m["id"] for m in manifest} == {"long", "long-wav"}
    by_id = {m["id"]: m for m in manifest}
    for m in manifest:
        data = open(m["uri"], "rb").read()
        decoded = audio.duration_ms(data)
        # eSpeak NG at 175 words per minute: 1,440 words are about eight minutes, in one file.
        assert 6 * 60_000 < decoded < 12 * 60_000 and abs(decoded - m["duration_ms"]) <= 100, (m, decoded)
    wav = open(by_id["long-wav"]["uri"], "rb").read()
    assert int.from_bytes(wav[40:44], "little") == len(wav) - 44  # one header, with the sizes of it all
    assert wav.count(b"RIFF") == 1


def test_ids_that_once_shared_an_object_or_were_too_long_get_their_own(server, tmp_path):
    """Ids "a/b" and "a_b-c14cddc033" were both written to one object; an id of 300 safe characters
    failed with ENAMETOOLONG. Each now gets its own object, named within 100 characters."""
    ids = ["a/b", "a_b-c14cddc033", "x" * 300, "x" * 299 + "y", "..", "a~b"]
    out = str(tmp_path / "out")
    synthesize(server, [{"id": i, "text": "Yes.", "voice_id": "vl-andrew"} for i in ids], out)
    manifest = read_parquet(glob.glob(os.path.join(out, MANIFEST, "run=test", "*.parquet")))
    assert not read_parquet(glob.glob(os.path.join(out, DEAD_LETTERS, "run=test", "*.parquet")))
    assert sorted(m["id"] for m in manifest) == sorted(ids)
    uris = {m["uri"] for m in manifest}
    assert len(uris) == len(ids) and all(os.path.isfile(u) for u in uris)
    assert all(len(os.path.basename(u)) <= 104 for u in uris)
    assert {os.path.dirname(u) for u in uris} == {os.path.join(out, "audio")}
