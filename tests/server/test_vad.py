"""Silero scored in pieces (``whisper_vad``, issue 31's memory floor) finds the speech faster-whisper's
``get_speech_timestamps`` finds scoring the whole audio at once."""

from __future__ import annotations

import numpy as np
import pytest
from faster_whisper.vad import VadOptions, get_speech_timestamps, get_vad_model

from bench import corpus
from tests.speech import corpus_clip
from voxbeam.server.engines.whisper_batch import PIPELINE_VAD
from voxbeam.server.engines.whisper_timing import SNAP_PAD_MS
from voxbeam.server.engines.whisper_vad import PIECE_WINDOWS, VAD_WINDOW, silero_timestamps, speech_probabilities

CLIPS = ["mfa/cold-corpus", "asterisk/demo-abouttotry", "mfa/cold-corpus"]


@pytest.fixture(scope="module")
def recording() -> np.ndarray:
    """Real speech with pauses, long enough for several pieces (int16, 16 kHz)."""
    pcm = b"".join(corpus.read_wav(corpus_clip(c).path) + corpus.silence(0.7) for c in CLIPS)
    samples = np.frombuffer(pcm, "<i2")
    assert len(samples) > 4 * PIECE_WINDOWS * VAD_WINDOW
    return samples


# Recordings cut off in speech, on a window's end, just after one (the last window's end, zeroed, holds
# recorded sound) and just before one.
@pytest.mark.parametrize("trim", [0, 7, 30, 511])
def test_pieces_score_as_one_call_does(recording, trim):
    samples = recording[: (len(recording) - 2 * 16000) // VAD_WINDOW * VAD_WINDOW - trim]
    audio = samples.astype(np.float32) / 32768
    padded = np.pad(audio, (0, VAD_WINDOW - len(audio) % VAD_WINDOW))  # as get_speech_timestamps pads it
    whole = get_vad_model()(padded).reshape(-1)
    assert np.array_equal(speech_probabilities(samples), whole)
    assert np.array_equal(speech_probabilities(audio), whole)
    assert (whole >= 0.5).mean() > 0.3  # (it is speech)


@pytest.mark.parametrize("options", [PIPELINE_VAD, VadOptions(min_silence_duration_ms=160, speech_pad_ms=SNAP_PAD_MS)])
@pytest.mark.parametrize(("start", "seconds"), [(0, None), (12345, 31.0), (80_000, 9.1), (0, 0.5)])
def test_pieces_find_the_speech_one_call_finds(recording, options, start, seconds):
    samples = recording[start : None if seconds is None else start + int(seconds * 16000)]
    audio = samples.astype(np.float32) / 32768
    expected = get_speech_timestamps(audio, options)
    assert silero_timestamps(samples, options) == expected
    assert silero_timestamps(audio, options) == expected
    assert seconds is not None and seconds < 1 or len(expected) >= 2
