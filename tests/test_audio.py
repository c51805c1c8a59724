"""PyAV decoding, resampling and encoding."""

import io
import math
import struct

import av
import numpy as np
import pytest

from voxbeam import audio
from voxbeam.errors import AudioError


def tone(seconds=1.0, rate=16000, freq=440.0):
    n = int(seconds * rate)
    return b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * freq * i / rate))) for i in range(n))


@pytest.mark.parametrize("fmt", ["wav", "mp3", "flac", "opus"])
@pytest.mark.parametrize("rate", [8000, 22050, 44100])
def test_encode_then_decode_keeps_duration(fmt, rate):
    data = audio.encode(tone(1.5, rate), rate, fmt)
    assert abs(audio.duration_ms(data) - 1500) <= 60


def test_decode_streams_bounded_chunks_at_target_rate():
    data = audio.encode(tone(3.0, 44100), 44100, "flac")
    chunks = list(audio.decode_to_pcm(io.BytesIO(data), rate=16000, chunk_ms=200))
    assert all(len(c) == 6400 for c in chunks[:-1])
    assert abs(sum(map(len, chunks)) / 2 / 16000 - 3.0) < 0.02


def test_stereo_input_is_mixed_to_mono():
    buf = io.BytesIO()
    with av.open(buf, "w", format="wav") as out:
        st = out.add_stream("pcm_s16le", rate=16000, layout="stereo")
        left = np.frombuffer(tone(1.0), dtype="<i2")
        interleaved = np.stack([left, left]).T.reshape(1, -1).copy()
        frame = av.AudioFrame.from_ndarray(interleaved, format="s16", layout="stereo")
        frame.sample_rate = 16000
        frame.pts = 0
        for pkt in st.encode(frame):
            out.mux(pkt)
        for pkt in st.encode(None):
            out.mux(pkt)
    assert abs(audio.duration_ms(buf.getvalue()) - 1000) <= 5


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", audio.EMPTY_AUDIO),
        (b"this is plain text pretending to be audio\n" * 20, audio.NOT_AUDIO),
    ],
)
def test_unusable_inputs_get_codes(data, code):
    with pytest.raises(AudioError) as info:
        audio.duration_ms(data)
    assert info.value.code == code


def test_truncated_mp3_is_detected():
    data = audio.encode(tone(4.0, 22050), 22050, "mp3")
    with pytest.raises(AudioError) as info:
        audio.duration_ms(data[: len(data) // 2])
    assert info.value.code == audio.CORRUPT_AUDIO


def test_streaming_resampler_matches_one_shot():
    pcm = tone(1.0, 44100)
    rs = audio.PcmResampler(44100, 16000)
    pieces = b"".join(rs.push(pcm[i : i + 4410]) for i in range(0, len(pcm), 4410)) + rs.flush()
    assert abs(len(pieces) - len(audio.resample(pcm, 44100, 16000))) <= 64
    assert abs(len(pieces) / 2 - 16000) <= 64
