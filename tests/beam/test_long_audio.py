"""A 2-hour file through Transcribe: one row, absolute monotonic word offsets, every sentence found."""

from __future__ import annotations

import glob
import os
import wave

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from tests import speech
from voxbeam.beam import (
    DEAD_LETTERS,
    TRANSCRIPTS,
    Secret,
    ServiceSettings,
    Transcribe,
    WriteDeadLetters,
    WriteTranscripts,
)

RATE = 16000
HOURS = 2.0
# Sparse speech keeps the engine work small (the recognizer skips silence; one file is one
# session, on one worker), while the client still streams, segments and offsets the whole two hours.
EVERY_S = 300.0


def write_long_wav(path, clips):
    """Two hours of silence with a sentence every EVERY_S seconds (the first at 7.3 s), streamed to disk."""
    total = int(HOURS * 3600 * RATE)
    onsets = []
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        written = 0
        k = 0
        while True:
            onset = int((7.3 + k * EVERY_S) * RATE)
            clip = clips[k % len(clips)]
            if onset + len(clip) // 2 > total:
                break
            w.writeframes(b"\0\0" * (onset - written))
            w.writeframes(clip)
            written = onset + len(clip) // 2
            onsets.append((onset / RATE, speech.SENTENCES[k % len(clips)]))
            k += 1
        w.writeframes(b"\0\0" * (total - written))
    return total / RATE, onsets


@pytest.mark.timeout(900)
def test_two_hour_file(server, tmp_path):
    clips = speech.render(server, speech.SENTENCES[:4])
    path = tmp_path / "two_hours.wav"
    seconds, onsets = write_long_wav(path, clips)
    out = tmp_path / "out"
    settings = ServiceSettings(endpoints=(server.url,), api_key=Secret(server.api_key), record_timeout=1800)
    with beam.Pipeline(runner=FnApiRunner()) as p:
        result = p | beam.Create([str(path)]) | Transcribe(settings)
        result[TRANSCRIPTS] | WriteTranscripts(str(out), "long")
        result[DEAD_LETTERS] | WriteDeadLetters(str(out), "long")
    rows = [
        r
        for f in glob.glob(os.path.join(out, TRANSCRIPTS, "run=long", "*.parquet"))
        for r in pq.read_table(f).to_pylist()
    ]
    assert len(rows) == 1
    row = rows[0]
    assert abs(row["audio_duration_ms"] - seconds * 1000) <= 50
    assert len(row["request_ids"]) >= int(seconds // 300)  # recognised in segments
    words = row["words"]
    offsets = [w["offset_ms"] for w in words]
    assert offsets == sorted(offsets)
    assert words[-1]["offset_ms"] + words[-1]["duration_ms"] <= row["audio_duration_ms"]
    # Every sentence shows up at its true place in the file, not at its place within a segment.
    found = 0
    for onset_s, _text in onsets:
        near = [o for o in offsets if onset_s * 1000 - 300 <= o <= onset_s * 1000 + 1500]
        found += bool(near)
    assert found >= 0.95 * len(onsets), (found, len(onsets))
    hyps = []
    for onset_s, _text in onsets:
        hyps.append(
            " ".join(w["word"] for w in words if onset_s * 1000 - 300 <= w["offset_ms"] <= onset_s * 1000 + 4000)
        )
    assert speech.wer([t for _, t in onsets], hyps) <= 0.35
