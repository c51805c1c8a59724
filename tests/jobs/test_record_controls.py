"""Per-record recognition controls: `voxbeam transcribe` over JSON lines or Parquet records of
``{uri, language, prompt, hotwords, task, languages, stt_model}``.

Each record's fields override the job's flags for it alone; a record with an unknown field or a bad value
is a dead letter naming the field while the rest go on; a record asking for a control the service does
not advertise is an UNSUPPORTED_OPTION dead letter before the run (the job's own flags stop the job).
"""

from __future__ import annotations

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.io.gcp.pubsub import PubsubMessage

from tests.jobs.helpers import rows
from tests.speech import MISHEARD_NAME, MISHEARD_NAME_CLIP, corpus_clip, says
from voxbeam import jobs
from voxbeam.beam.audio_records import AudioRecord, audio_record
from voxbeam.beam.notifications import parse_audio
from voxbeam.beam.rows import dead_letter
from voxbeam.beam.schema import DEAD_LETTER_SCHEMA
from voxbeam.errors import InputError
from voxbeam.jobs.replay import audio_records, dead_letter_files
from voxbeam.protocol_controls import SttControls

HOTWORDS = "Inter-Asterisk Exchange"
# Beam checks every element against what each transform declares (tests/beam/test_typehints.py).
CHECKED = ["--performance_runtime_type_check", "--pipeline_type_check"]


def _endpoint(server):
    return ["--endpoint", server.url, "--api_key", server.api_key]


@pytest.fixture
def clip(tmp_path):
    """The human recording tiny.en mishears "Inter-Asterisk Exchange" in (unless given hotwords), under
    two names: the same audio, told apart by its rows' source_uri."""
    src = corpus_clip(MISHEARD_NAME_CLIP).path
    copies = []
    for name in ("with.wav", "without.wav"):
        shutil.copy(src, tmp_path / name)
        copies.append(str(tmp_path / name))
    return copies


@pytest.mark.parametrize(
    ("record", "words"),
    [
        ({"uri": "a.wav", "hotword": "IAX"}, "unknown field(s) 'hotword'"),
        ({"hotwords": "IAX"}, "no 'uri'"),
        ({"uri": "a.wav", "prompt": 3}, "'prompt' must be text"),
        ({"uri": "a.wav", "task": "summarize"}, "the record's 'task' must be transcribe or translate"),
        ({"uri": "a.wav", "languages": "english"}, "the record's 'languages' holds 'english'"),
        ({"uri": "a.wav", "languages": ["en", "es"], "language": "en"}, "'languages' are candidates"),
        ({"uri": "a.wav", "stt_model": "x" * 201}, "the record's 'stt_model' is 201 characters"),
    ],
)
def test_a_bad_record_names_its_field(record, words):
    with pytest.raises(InputError) as info:
        audio_record(record).applied_to("auto", SttControls(hotwords="job"))
    assert words in str(info.value), info.value


def test_a_record_overrides_the_job_only_where_it_says():
    job = SttControls(prompt="job prompt", hotwords="job words").checked()
    record = audio_record({"uri": "a.wav", "hotwords": "Digium", "languages": "en,es", "task": None})
    assert record == AudioRecord("a.wav", hotwords="Digium", languages=("en", "es"))
    merged = SttControls(prompt="job prompt", hotwords="Digium", languages=("en", "es"))
    assert record.applied_to("auto", job) == ("auto", merged)
    assert audio_record({"uri": "b.wav"}).applied_to("en-US", job) == ("en-US", job)


def test_a_stream_message_with_controls_is_refused_not_ignored():
    message = PubsubMessage(json.dumps({"uri": "gs://b/a.wav", "hotwords": HOTWORDS}).encode(), {})
    with pytest.raises(InputError, match="cannot set 'hotwords'"):
        parse_audio(message)


def test_jsonl_records_each_get_their_own_controls(server, tmp_path, clip):
    with_hotwords, without = clip
    good = [
        {"uri": with_hotwords, "hotwords": HOTWORDS},
        {"uri": without},
    ]
    bad = [
        {"uri": without, "hotword": HOTWORDS},  # a misspelt field: never transcribed without what it meant
        {"uri": without, "task": "translate"},  # tiny.en does not advertise translation
    ]
    records = tmp_path / "records.jsonl"
    records.write_text("\n".join([*map(json.dumps, good + bad), "not json"]) + "\n")
    out = str(tmp_path / "out")
    argv = [str(records), "--output", out, "--language", "en-US", *_endpoint(server), *CHECKED]
    summary = jobs.run("transcribe", argv)
    assert summary.inputs == 5 and summary.written == 2, summary
    texts = {r["source_uri"]: r["text"] for r in rows(out, "transcripts")}
    assert says(texts[with_hotwords], MISHEARD_NAME), texts
    assert not says(texts[without], MISHEARD_NAME), texts  # the job has no hotwords: the record without none
    dead = {(r["stage"], r["error_code"]): r for r in rows(out, "dead_letters")}
    assert set(dead) == {
        ("transcribe", "INVALID_INPUT"),
        ("preflight", "UNSUPPORTED_OPTION"),
        ("read", "INVALID_INPUT"),
    }
    misspelt = dead["transcribe", "INVALID_INPUT"]
    assert "unknown field(s) 'hotword'" in misspelt["error_message"] and json.loads(misspelt["input"]) == bad[0]
    refused = dead["preflight", "UNSUPPORTED_OPTION"]
    assert (
        "the record's 'task'" in refused["error_message"] and "does not offer 'translate'" in refused["error_message"]
    )
    assert json.loads(refused["input"]) == bad[1]


def test_parquet_records(server, tmp_path, clip):
    # Every row has every column: null is "the job's value", as a JSON line's missing field is.
    table = pa.table({"uri": [clip[0], str(tmp_path / "missing.wav")], "hotwords": [HOTWORDS, None]})
    records = tmp_path / "records.parquet"
    pq.write_table(table, records)
    out = str(tmp_path / "out")
    summary = jobs.run("transcribe", [str(records), "--output", out, "--language", "en-US", *_endpoint(server)])
    assert summary.written == 1 and list(summary.dead_letters.elements()) == ["NOT_FOUND"], summary
    (row,) = rows(out, "transcripts")
    assert row["source_uri"] == clip[0] and says(row["text"], MISHEARD_NAME), row


def test_a_replayed_record_keeps_what_it_asked_for(tmp_path):
    # A dead letter's record runs again with its own fields (a misspelt one fails again, never heard without
    # it); a file alone, or a stream's {uri, generation}, runs again as its file.
    inputs = [{"uri": "a.wav", "hotword": "IAX"}, {"uri": "b.wav", "generation": "7"}, {"uri": "c.wav"}]
    failed = [dead_letter("transcribe", record, InputError("x")) for record in inputs]
    pq.write_table(pa.Table.from_pylist(failed, schema=DEAD_LETTER_SCHEMA), tmp_path / "dead.parquet")
    again, rejected = audio_records(dead_letter_files(str(tmp_path / "dead.parquet")))
    assert again == [inputs[0], "b.wav", "c.wav"] and rejected == []
