"""A bundle that fails after its objects were written, then is retried: no duplicate rows or objects.

How the runner's retry is simulated, honestly: the FnApiRunner does not retry failed bundles
(Dataflow does), so the test does what a runner does. A DoFn fused after Synthesize / Transcribe
raises the first time it sees some records (it remembers in files under a temp dir, which
survive the failed attempt, as external state does on a real worker). The Synthesize step of
that bundle has already rendered and written its audio objects, so the pipeline fails with
objects on disk and no manifest or transcripts committed. Then the very same pipeline runs
again, as a runner re-executes a failed bundle: the same records reach the same DoFns and
write to the same deterministic object names. A whole-pipeline rerun re-executes a superset
of any single bundle retry, so what holds for it holds for the bundle.

The final state must have exactly one object per record (rewritten in place, not copied under
a new name, no temporary leftovers) and exactly one manifest / transcript / dead-letter row per
record in the committed output.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from tests.reliability.conftest import TINY_SENTENCES, dead_letter_key, read_parquet_rows
from voxbeam import audio
from voxbeam.beam import (
    DEAD_LETTERS,
    MANIFEST,
    TRANSCRIPTS,
    Secret,
    ServiceSettings,
    Synthesize,
    Transcribe,
    WriteDeadLetters,
    WriteManifest,
    WriteTranscripts,
)
from voxbeam.beam._workers import close_worker_clients

RUN = "retried"


class FailOnceFn(beam.DoFn):
    """Passes rows through, but the first attempt fails at the first row whose ``key`` is in ``fail``.

    The failure is remembered in ``state_dir/failed`` (holding the row's key), which outlives the
    failed attempt as a worker's external state would; later attempts pass everything.
    """

    def __init__(self, state_dir: str, key: str, fail: set[str]) -> None:
        self._marker = os.path.join(state_dir, "failed")
        self._key = key
        self._fail = set(fail)

    def process(self, row: dict[str, Any]):
        value = str(row[self._key])
        if value in self._fail and not os.path.exists(self._marker):
            Path(self._marker).write_text(value)
            raise RuntimeError(f"simulated worker failure after {value} was processed")
        yield row


def build_synthesis(p: beam.Pipeline, settings: ServiceSettings, records, out: str, state: str, fail) -> None:
    synth = p | "Records" >> beam.Create(records) | Synthesize(os.path.join(out, "audio"), settings)
    synth[MANIFEST] | "FailSomeRows" >> beam.ParDo(FailOnceFn(state, "id", fail)) | WriteManifest(out, RUN)
    synth[DEAD_LETTERS] | WriteDeadLetters(out, RUN)


def build_transcription(p: beam.Pipeline, settings: ServiceSettings, files, out: str, state: str, fail) -> None:
    stt = p | "Files" >> beam.Create(files) | Transcribe(settings)
    stt[TRANSCRIPTS] | "FailSomeRows" >> beam.ParDo(FailOnceFn(state, "source_uri", fail)) | WriteTranscripts(out, RUN)
    stt[DEAD_LETTERS] | WriteDeadLetters(out, RUN)


def run_as_a_retrying_runner_would(build, settings, inputs, out: str, state: str, fail: set[str]) -> dict[str, int]:
    """Attempt 1 fails in a fused step after the work was done; attempt 2 re-executes the same work.

    Returns what attempt 1 left under ``out`` (relative name -> inode).
    """
    args = (settings, inputs, out, state, fail)
    with pytest.raises(Exception, match="simulated worker failure"):
        with beam.Pipeline(runner=FnApiRunner()) as p:
            build(p, *args)
    before = snapshot(out)
    close_worker_clients()  # the retry may run on another worker: no pooled session carries over
    with beam.Pipeline(runner=FnApiRunner()) as p:
        build(p, *args)
    return before


def snapshot(out: str) -> dict[str, int]:
    """Every file under ``out`` (relative name -> inode) between the failed attempt and the retry."""
    return {str(p.relative_to(out)): p.stat().st_ino for p in Path(out).rglob("*") if p.is_file()}


def committed(out: str, kind: str) -> list[dict[str, Any]]:
    return read_parquet_rows(os.path.join(out, kind, f"run={RUN}", "*.parquet"))


def test_a_failed_synthesis_bundle_retried_leaves_one_object_and_one_row_per_record(server, tmp_path):
    settings = ServiceSettings(endpoints=(server.url,), api_key=Secret(server.api_key))
    records = [{"id": f"r{i:02d}", "text": TINY_SENTENCES[i % len(TINY_SENTENCES)]} for i in range(24)]
    records.append({"id": "bad", "text": "Hello.", "voice_id": "vl-nobody"})
    out, state = str(tmp_path / "out"), tmp_path / "state"
    state.mkdir()

    first = run_as_a_retrying_runner_would(build_synthesis, settings, records, out, str(state), {"r03", "r17"})

    objects_first = {k: v for k, v in first.items() if k.startswith("audio/")}
    failed_at = (state / "failed").read_text()
    assert f"audio/{failed_at}.wav" in objects_first, "the failing bundle wrote its object before it failed"
    assert not [k for k in first if k.startswith(f"{MANIFEST}/run={RUN}/part")], "a failed run commits no rows"
    good = [r for r in records if r["id"] != "bad"]
    audio_dir = Path(out, "audio")
    assert sorted(p.name for p in audio_dir.iterdir()) == sorted(f"{r['id']}.wav" for r in good)
    # The retry rewrote each object under its own name (a new inode from the atomic rename), not a copy.
    assert all((Path(out) / k).stat().st_ino != ino for k, ino in objects_first.items())

    manifest = committed(out, MANIFEST)
    assert Counter(m["id"] for m in manifest) == Counter(r["id"] for r in good)
    for m in manifest:
        data = Path(m["uri"]).read_bytes()
        assert len(data) == m["bytes"] and abs(audio.duration_ms(data) - m["duration_ms"]) <= 30
    assert [dead_letter_key(d) for d in committed(out, DEAD_LETTERS)] == ["bad"]


def test_a_failed_transcription_bundle_retried_leaves_one_row_per_file(server, tiny_wavs, tmp_path):
    settings = ServiceSettings(endpoints=(server.url,), api_key=Secret(server.api_key))
    src = tmp_path / "in"
    src.mkdir()
    files = []
    for i in range(6):
        path = src / f"f{i}.wav"
        path.write_bytes(tiny_wavs[i % len(tiny_wavs)])
        files.append(str(path))
    files.append(str(src / "missing.wav"))
    out, state = str(tmp_path / "out"), tmp_path / "state"
    state.mkdir()

    first = run_as_a_retrying_runner_would(build_transcription, settings, files, out, str(state), {files[2]})

    assert not [k for k in first if k.startswith(f"{TRANSCRIPTS}/run={RUN}/part")], "a failed run commits no rows"
    transcripts = committed(out, TRANSCRIPTS)
    assert Counter(t["source_uri"] for t in transcripts) == Counter(files[:-1])
    assert all(t["text"] for t in transcripts)
    assert [dead_letter_key(d) for d in committed(out, DEAD_LETTERS)] == [files[-1]]
