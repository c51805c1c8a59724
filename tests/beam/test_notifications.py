"""Pub/Sub messages to records: what each kind of message becomes (no pipeline, no server)."""

from __future__ import annotations

import json
import threading
import time

import pytest
from apache_beam.io.gcp.pubsub import PubsubMessage

from tests.pubsub import notification
from voxbeam.beam.direct_pubsub import PullControl
from voxbeam.beam.notifications import Notice, name_matcher, object_name, parse_audio, parse_text_record, raw
from voxbeam.beam.sink import partition
from voxbeam.errors import InputError


def test_a_cloud_storage_notification_names_its_object_version_and_size():
    data, attributes = notification("calls", "2026/12/06/a b.wav", "1765000000123456")
    payload = json.loads(data)
    payload["size"] = "48044"
    found = parse_audio(PubsubMessage(json.dumps(payload).encode(), attributes))
    assert found == Notice("gs://calls/2026/12/06/a b.wav", "1765000000123456", 48044)


def test_a_notification_without_payload_uses_its_attributes():
    _, attributes = notification("calls", "a.wav", "7")
    assert parse_audio(PubsubMessage(b"", {**attributes, "payloadFormat": "NONE"})) == Notice("gs://calls/a.wav", "7")


@pytest.mark.parametrize("event", ["OBJECT_DELETE", "OBJECT_ARCHIVE", "OBJECT_METADATA_UPDATE"])
def test_other_events_are_ignored_by_name(event):
    assert parse_audio(PubsubMessage(*notification("calls", "a.wav", "7", event))) == event


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"gs://calls/a.wav", Notice("gs://calls/a.wav")),
        (b"  gs://calls/a.wav\n", Notice("gs://calls/a.wav")),
        (json.dumps({"uri": "gs://calls/a.wav", "generation": 12}).encode(), Notice("gs://calls/a.wav", "12")),
        (b"/data/local.wav", Notice("/data/local.wav")),
    ],
)
def test_plain_uris_and_json_from_other_producers(body, expected):
    assert parse_audio(PubsubMessage(body, {})) == expected
    assert parse_audio(body) == expected  # a bare body (ReadFromPubSub without attributes)


@pytest.mark.parametrize(
    ("message", "why"),
    [
        (PubsubMessage(b"hello", {}), "neither a Cloud Storage notification"),
        (PubsubMessage(b'{"url": "gs://x/y"}', {}), "neither"),
        (PubsubMessage(b"\xff\xfe", {}), "not UTF-8"),
        (PubsubMessage(b"", {"eventType": "OBJECT_FINALIZE"}), "without bucketId and objectId"),
    ],
)
def test_anything_else_is_an_input_error_that_keeps_the_raw_message(message, why):
    with pytest.raises(InputError, match=why):
        parse_audio(message)
    kept = raw(message)["message"]
    assert kept["attributes"] == dict(message.attributes)
    assert ("data" in kept) != ("data_base64" in kept)


def test_text_records_are_checked_as_json_lines_are():
    assert parse_text_record(PubsubMessage(b'{"id": 7, "text": "Hi.", "speed": "1.5"}', {})) == {
        "id": "7",
        "text": "Hi.",
        "speed": 1.5,
    }
    for body, why in ((b"[1, 2]", "not an object"), (b'{"id": "x"}', "no text"), (b"{nope", "not JSON")):
        with pytest.raises(InputError, match=why):
            parse_text_record(PubsubMessage(body, {}))


def test_the_pattern_matches_object_names_as_beam_globs_do():
    matcher = name_matcher("calls/**/*.wav")
    assert matcher is not None
    assert matcher.match(object_name("gs://b/calls/2026/12/a.wav"))
    assert not matcher.match(object_name("gs://b/calls/a.mp3"))
    assert not matcher.match(object_name("gs://b/other/calls/a.wav"))
    flat = name_matcher("calls/*.wav")
    assert flat is not None and not flat.match("calls/2026/a.wav") and flat.match("calls/a.wav")


def test_partitions_are_hive_style_by_window_start():
    assert partition(1_765_030_999.5, 60) == "date=2025-12-06/hour=14/window=142300"
    assert partition(59.9, 30) == "date=1970-01-01/hour=00/window=000030"


def test_a_local_read_holds_its_watermark_while_a_backlog_waits():
    control = PullControl(room=lambda: 4, stop=threading.Event())
    before = time.time()
    assert control.advance([100.0, 90.0, 95.0, 99.0], asked=4) == 100.0  # a full pull: more may wait
    assert control.advance([], asked=0) == 100.0  # no room: held
    assert control.advance([120.0, 110.0, 130.0, 125.0], asked=4) == 130.0
    assert control.advance([80.0], asked=4) >= before  # drained: the present (never back to 80)
    now = control.watermark
    assert control.advance([140.0, 141.0], asked=2) == now  # never goes back
