"""Issue 24: the type hints Beam checks are true, so a Beam release that starts checking them breaks no run.

Both jobs build their pipelines with Beam's construction-time check (``pipeline_type_check``, on by
default) and run a few good and bad records with ``performance_runtime_type_check``, which checks
every element against what each transform declares. (``runtime_type_check`` cannot be used: in Beam
2.78 it fails inside Beam's own WriteToParquet, whose FinalizeWrite yields TimestampedValues where
it declares str.) The transforms are also used directly, as the README shows.
"""

from __future__ import annotations

import inspect
import json
import shutil

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.io import fileio
from apache_beam.options.pipeline_options import PipelineOptions, TypeOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from tests.jobs.helpers import EXAMPLES
from voxbeam import jobs
from voxbeam.beam import (
    DEAD_LETTERS,
    TRANSCRIPTS,
    AudioRecord,
    Secret,
    ServiceSettings,
    Transcribe,
    _dofns,
    sink,
    transforms,
)

pytestmark = pytest.mark.smoke
CHECKED = ["--performance_runtime_type_check", "--pipeline_type_check"]


def _endpoint(server):
    return ["--endpoint", server.url, "--api_key", server.api_key]


def test_every_dofn_declares_what_it_takes_and_gives():
    """Beam can only check what is declared: every DoFn says its input, its output and its dead letters."""
    settings = ServiceSettings()
    instances = [
        _dofns.TranscribeFn(settings),
        _dofns.SynthesizeFn(settings, "out", {}),
        _dofns.FirstPerKeyFn(),
        _dofns.RouteFn(),
        sink.WriteTextFilesFn("out", ()),
        sink.WriteWindowFn("out", pa.schema([]), "run", None),
    ]
    declared = {type(fn) for fn in instances}
    modules = (_dofns, sink)
    every = {c for m in modules for _, c in inspect.getmembers(m, inspect.isclass) if issubclass(c, beam.DoFn)}
    names = {m.__name__ for m in modules}
    assert {c for c in every if c.__module__ in names and not c.__name__.startswith("_")} == declared
    for fn in instances:
        hints = fn.get_type_hints()
        assert hints.input_types is not None and hints.output_types is not None, type(fn).__name__
        if isinstance(fn, (_dofns.FirstPerKeyFn, _dofns.RouteFn)):
            assert DEAD_LETTERS in hints.tagged_output_types(), type(fn).__name__
    assert Transcribe().get_type_hints().input_types is not None
    for writer in (transforms.WriteTranscripts, transforms.WriteDeadLetters, transforms.WriteManifest):
        assert writer("out", "run").get_type_hints().input_types is not None, writer.__name__


def test_synthesis_job_with_type_checks_on(server, tmp_path):
    records = tmp_path / "records.jsonl"
    records.write_text(
        "\n".join(
            [
                json.dumps({"id": "a", "text": "A first sentence."}),
                json.dumps({"id": "b", "text": "Another one.", "voice_id": "vl-nobody"}),
                json.dumps({"id": "a", "text": "The same id again."}),
                "not json",
            ]
        )
        + "\n"
    )
    out = tmp_path / "out"
    summary = jobs.run("synthesize", [str(records), "--output", str(out), *_endpoint(server), *CHECKED])
    assert summary.written == 1
    assert sorted(summary.dead_letters.elements()) == ["DUPLICATE_ID", "INVALID_INPUT", "VOICE_NOT_FOUND"]


def test_transcription_job_with_type_checks_on(server, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(f"{EXAMPLES}/jfk.wav", inputs / "jfk.wav")
    (inputs / "notes.txt.wav").write_text("this is not audio")
    out = tmp_path / "out"
    summary = jobs.run(
        "transcribe", [str(inputs), "--output", str(out), "--captions", "srt", *_endpoint(server), *CHECKED]
    )
    assert summary.written == 1 and summary.failed == 1 and summary.captions == 1


def test_transcribe_takes_readable_files_with_runtime_checks(server, tmp_path):
    """The README's MatchFiles/ReadMatches route, every element checked against the declared types."""
    options = PipelineOptions(CHECKED)
    assert options.view_as(TypeOptions).performance_runtime_type_check
    settings = ServiceSettings(endpoints=(server.url,), api_key=Secret(server.api_key))
    with beam.Pipeline(runner=FnApiRunner(), options=options) as p:
        result = (
            p | fileio.MatchFiles(f"{EXAMPLES}/jfk.wav") | fileio.ReadMatches() | Transcribe(settings, language="en")
        )
        assert_that(result[TRANSCRIPTS] | beam.Map(lambda r: r["source_uri"].rsplit("/", 1)[-1]), equal_to(["jfk.wav"]))
        assert_that(result[DEAD_LETTERS], equal_to([]), label="no dead letters")


def test_transcribe_takes_records_with_runtime_checks(server, tmp_path):
    """Records (an ``AudioRecord``, a dict) are declared inputs too, each a dead letter saying what is wrong with
    it. (tests/jobs/test_record_controls.py transcribes dict records with these checks on.)"""
    missing = str(tmp_path / "missing.wav")
    settings = ServiceSettings(endpoints=(server.url,), api_key=Secret(server.api_key))
    records = [AudioRecord(missing, hotwords="Kennedy"), {"uri": missing, "hotword": "Kennedy"}]
    with beam.Pipeline(runner=FnApiRunner(), options=PipelineOptions(CHECKED)) as p:
        result = p | beam.Create(records, reshuffle=False) | Transcribe(settings, language="en")
        assert_that(result[TRANSCRIPTS], equal_to([]))
        assert_that(
            result[DEAD_LETTERS] | beam.Map(lambda r: (r["error_code"], json.loads(r["input"]))),
            equal_to([("NOT_FOUND", {"uri": missing, "hotwords": "Kennedy"}), ("INVALID_INPUT", records[1])]),
            label="dead letters",
        )


def test_a_wrong_declaration_is_refused_when_the_pipeline_is_built():
    """The check the tests above rely on is live in this Beam: a list where GroupByKey gives an iterable fails."""

    class ListPerKeyFn(beam.DoFn):
        def process(self, keyed: tuple[str, list[int]]):  # the annotation issue 24 found
            yield keyed[0]

    p = beam.Pipeline(runner=FnApiRunner())
    grouped = p | beam.Create([("a", 1)]) | beam.GroupByKey()
    with pytest.raises(beam.typehints.TypeCheckError):
        grouped | beam.ParDo(ListPerKeyFn())
