"""voxbeam.bleep: spans replaced exactly, everything else kept, and a container PyAV cannot write falls back."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from tests import speech
from voxbeam import audio, bleep
from voxbeam.errors import AudioError

RATE = 16000


def _samples(data: bytes) -> tuple[np.ndarray, str]:
    """(channels x samples, s16 as ints) and the container's name."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        to_s16 = av.AudioResampler(format="s16p", layout=stream.codec_context.layout.name, rate=RATE)
        blocks = [f.to_ndarray() for frame in container.decode(stream) for f in to_s16.resample(frame)]
        blocks += [f.to_ndarray() for f in to_s16.resample(None)]
        return np.concatenate(blocks, axis=1), container.format.name


def _sine(seconds: float = 1.0, hz: float = 440) -> bytes:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.5 * 32767 * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


def test_silence_replaces_the_spans_on_every_channel_and_nothing_else():
    flac = speech.stereo_flac(_sine(), RATE)
    done = bleep.bleep(io.BytesIO(flac), [(200, 400), (700, 750)], "silence", extension="flac")
    assert (done.extension, done.codec, done.sample_rate, done.channels) == ("flac", "flac", RATE, 2)
    assert done.container_kept and done.content_type == "audio/flac"
    copy, container = _samples(done.data)
    original, _ = _samples(flac)
    assert container == "flac" and copy.shape == original.shape == (2, RATE)
    replaced = np.zeros(RATE, dtype=bool)
    replaced[200 * 16 : 400 * 16] = replaced[700 * 16 : 750 * 16] = True
    assert not copy[:, replaced].any()
    assert np.array_equal(copy[:, ~replaced], original[:, ~replaced])  # lossless in, lossless out: bit-exact


def test_spans_are_widened_merged_and_clipped():
    assert bleep.widen([(1000, 1200), (100, 300), (1400, 1500), (50, 40)], 150) == [(0, 450), (850, 1650)]


def test_a_codec_pyav_cannot_write_falls_back_to_flac(monkeypatch):
    monkeypatch.setitem(bleep._ENCODERS, "pcm_s16le", "no_such_encoder")
    wav = audio.encode(_sine(0.5), RATE, "wav")
    done = bleep.bleep(io.BytesIO(wav), [(100, 200)], "tone", extension="wav")
    assert (done.extension, done.content_type, done.container_kept) == ("flac", "audio/flac", False)
    copy, container = _samples(done.data)
    assert container == "flac" and copy.shape == (1, RATE // 2)


def test_what_is_not_audio_is_an_audio_error():
    with pytest.raises(AudioError) as caught:
        bleep.bleep(io.BytesIO(b"not audio at all" * 64), [(0, 100)], "tone", extension="wav")
    assert caught.value.code == audio.NOT_AUDIO
