"""Streaming transforms on the DirectRunner's streaming mode, driven by TestStream, against the real server.

Notifications for objects in gcp-storage-emulator go through ``AudioNotifications`` (parse, pattern,
the object's own generation, dedup), ``Transcribe`` and the windowed writers: each object version is
transcribed once, redeliveries and other events are dropped, bad messages and bad audio are dead
letters, rows land in the windows of their publish times, and a late notification is written in a
later pane of its window, never dropped.
"""

from __future__ import annotations

import glob
import json
import os

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import TimestampedValue

from tests import speech
from tests.beam.test_transcribe import settings_for
from tests.pubsub import notification
from voxbeam import audio
from voxbeam.beam import DEAD_LETTERS, TRANSCRIPTS, Synthesize, Transcribe, WriteDeadLetters, WriteTranscripts
from voxbeam.beam.notifications import RECORDS, AudioNotifications, TextRecordMessages
from voxbeam.beam.transforms import MANIFEST, WriteManifest

WINDOW_S = 30.0
TestStream.__test__ = False  # a Beam transform, not a test class


def finalize(bucket: str, name: str, generation: str, event: str = "OBJECT_FINALIZE") -> PubsubMessage:
    return PubsubMessage(*notification(bucket, name, generation, event))


def rows_under(out, kind: str) -> dict[str, list[dict]]:
    """Rows per file, keyed by the file's path below ``<out>/stream/<kind>/``."""
    prefix = os.path.join(out, "stream", kind)
    files = sorted(glob.glob(os.path.join(prefix, "**", "*.parquet"), recursive=True))
    return {os.path.relpath(f, prefix): pq.read_table(f).to_pylist() for f in files}


def run_stream(build, stream: TestStream) -> None:
    options = PipelineOptions(["--streaming"])
    with beam.Pipeline(runner=BundleBasedDirectRunner(), options=options) as p:
        build(p | stream)


@pytest.fixture(scope="module")
def clips(server):
    return speech.render(server, speech.SENTENCES[:4])


def test_notifications_to_windowed_transcripts_once_per_object_version(server, clips, bucket, gcs_emulator, tmp_path):
    b = gcs_emulator.bucket(bucket)
    pad = speech.silence(0.3)

    def upload(name: str, data: bytes) -> str:
        blob = b.blob(name)
        blob.upload_from_string(data, content_type="audio/wav")
        return str(blob.generation)

    wav = [audio.encode(pad + c + pad, 16000, "wav") for c in clips]
    gen = {name: upload(name, wav[i]) for i, name in enumerate(["calls/a.wav", "calls/b.wav", "other/c.wav"])}
    gen["calls/bad.wav"] = upload("calls/bad.wav", b"this is not audio at all" * 100)
    gen["calls/d.wav"] = upload("calls/d.wav", wav[3])
    old_e = upload("calls/e.wav", wav[0])
    new_e = upload("calls/e.wav", wav[2])  # overwritten: the first notification is superseded

    stream = (
        TestStream()
        .add_elements([TimestampedValue(finalize(bucket, "calls/a.wav", gen["calls/a.wav"]), 10)])
        .add_elements([TimestampedValue(finalize(bucket, "calls/a.wav", gen["calls/a.wav"]), 12)])  # redelivered
        .add_elements([TimestampedValue(finalize(bucket, "calls/bad.wav", gen["calls/bad.wav"]), 15)])
        .add_elements([TimestampedValue(finalize(bucket, "calls/a.wav", gen["calls/a.wav"], "OBJECT_DELETE"), 16)])
        .add_elements([TimestampedValue(PubsubMessage(b"hello there", {"origin": "elsewhere"}), 18)])
        .add_elements([TimestampedValue(finalize(bucket, "other/c.wav", gen["other/c.wav"]), 20)])  # not the pattern
        .add_elements([TimestampedValue(finalize(bucket, "calls/e.wav", old_e), 21)])
        .add_elements([TimestampedValue(finalize(bucket, "calls/e.wav", new_e), 22)])
        .advance_watermark_to(40)
        .add_elements([TimestampedValue(PubsubMessage(json.dumps({"uri": f"gs://{bucket}/calls/b.wav"}).encode(), {}), 45)])  # noqa: E501
        .advance_watermark_to(100)
        .add_elements([TimestampedValue(finalize(bucket, "calls/d.wav", gen["calls/d.wav"]), 5)])  # late
        .advance_watermark_to_infinity()
    )  # fmt: skip
    out = str(tmp_path / "out")

    def build(messages):
        found = messages | AudioNotifications("calls/**")
        result = found[RECORDS] | Transcribe(settings_for(server))
        result[TRANSCRIPTS] | WriteTranscripts(out, "s1", window_s=WINDOW_S)
        dead = (found[DEAD_LETTERS], result[DEAD_LETTERS]) | beam.Flatten()
        dead | WriteDeadLetters(out, "s1", window_s=WINDOW_S)

    run_stream(build, stream)

    transcripts = rows_under(out, TRANSCRIPTS)
    by_uri = {r["source_uri"]: (path, r) for path, rows in transcripts.items() for r in rows}
    all_rows = [r for rows in transcripts.values() for r in rows]
    assert sorted(r["source_uri"] for r in all_rows) == sorted(
        f"gs://{bucket}/calls/{n}.wav" for n in ("a", "b", "d", "e")
    ), transcripts  # each once: a's redelivery, its delete event, c (pattern) and e's old version dropped
    assert by_uri[f"gs://{bucket}/calls/e.wav"][1]["source_generation_or_mtime"] == new_e
    window0, window30 = "date=1970-01-01/hour=00/window=000000", "date=1970-01-01/hour=00/window=000030"
    assert by_uri[f"gs://{bucket}/calls/a.wav"][0].startswith(window0 + "/part-s1-0")
    assert by_uri[f"gs://{bucket}/calls/b.wav"][0].startswith(window30 + "/part-s1-0")
    late_path = by_uri[f"gs://{bucket}/calls/d.wav"][0]  # a later pane of its own window, in a file of its own
    assert late_path.startswith(window0 + "/part-s1-") and not late_path.startswith(window0 + "/part-s1-0")
    for uri, sentence in ((f"gs://{bucket}/calls/a.wav", 0), (f"gs://{bucket}/calls/b.wav", 1)):
        assert speech.wer([speech.SENTENCES[sentence]], [by_uri[uri][1]["text"]]) < 0.2, by_uri[uri][1]["text"]

    dead = [r for rows in rows_under(out, DEAD_LETTERS).values() for r in rows]
    by_code = {r["error_code"]: r for r in dead}
    assert len(dead) == 2 and set(by_code) == {"INVALID_INPUT", "NOT_AUDIO"}, dead
    raw = json.loads(by_code["INVALID_INPUT"]["input"])
    assert raw == {"message": {"data": "hello there", "attributes": {"origin": "elsewhere"}}}
    assert json.loads(by_code["NOT_AUDIO"]["input"])["uri"] == f"gs://{bucket}/calls/bad.wav"


def test_text_records_stream_once_per_id_and_text(server, tmp_path):
    def message(record) -> PubsubMessage:
        return PubsubMessage(json.dumps(record).encode() if isinstance(record, dict) else record, {})

    first = {"id": "greeting", "text": "Good morning, and welcome."}
    stream = (
        TestStream()
        .add_elements([TimestampedValue(message(first), 1)])
        .add_elements([TimestampedValue(message(first), 2)])  # redelivered
        .add_elements([TimestampedValue(message({"id": "greeting", "text": "Good evening."}), 3)])  # a new text
        .add_elements([TimestampedValue(message(b"{not json"), 4)])
        .add_elements([TimestampedValue(message({"id": "empty", "text": "  "}), 5)])
        .advance_watermark_to_infinity()
    )
    out = str(tmp_path / "out")

    def build(messages):
        found = messages | TextRecordMessages()
        result = found[RECORDS] | Synthesize(
            os.path.join(out, "stream", "audio"), settings_for(server), unique_ids=False
        )
        result[MANIFEST] | WriteManifest(out, "s2", window_s=WINDOW_S)
        (found[DEAD_LETTERS], result[DEAD_LETTERS]) | beam.Flatten() | WriteDeadLetters(out, "s2", window_s=WINDOW_S)

    run_stream(build, stream)
    manifest = [r for rows in rows_under(out, MANIFEST).values() for r in rows]
    assert sorted(r["id"] for r in manifest) == ["greeting", "greeting"]
    assert len({r["text_sha256"] for r in manifest}) == 2  # the redelivery dropped, the new text rendered
    dead = [r for rows in rows_under(out, DEAD_LETTERS).values() for r in rows]
    assert sorted(r["error_code"] for r in dead) == ["INVALID_INPUT", "INVALID_INPUT"], dead
    assert any("not JSON" in r["error_message"] for r in dead) and any("empty" in r["error_message"] for r in dead)
