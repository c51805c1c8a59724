"""``voxbeam.channels`` and ``voxbeam.client.channels`` on their own (no server): the ``auto`` rule, the crosstalk
gate, stereo decoding, and the merge of channels' transcripts (labels per channel, a word heard twice dropped
from the quieter channel); ``--channels`` reaching ``Transcribe``. Signals are noise bursts: levels are all
these parts look at."""

from __future__ import annotations

import io
import wave

import numpy as np
import pytest

from voxbeam import audio, channels
from voxbeam.beam import ServiceSettings, Transcribe
from voxbeam.client.channels import merge
from voxbeam.client.results import Segment, TranscriptResult, Word
from voxbeam.errors import UsageError
from voxbeam.jobs.args import parse
from voxbeam.jobs.kinds import Transcription

RATE = 16000


def _bursts(seconds: float, on: list[tuple[float, float]], seed: int) -> np.ndarray:
    """Noise at about -20 dBFS where ``on`` says (start, end seconds), a faint floor elsewhere."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 30, int(seconds * RATE))
    for a, b in on:
        x[int(a * RATE) : int(b * RATE)] = rng.normal(0, 3000, int(b * RATE) - int(a * RATE))
    return x


def _stereo(left: np.ndarray, right: np.ndarray, bleed_db: float = -20.0) -> np.ndarray:
    k = 10 ** (bleed_db / 20)
    return np.clip(np.stack([left + k * right, right + k * left], axis=1), -32768, 32767).astype("<i2")


def _chunks(stereo: np.ndarray, ms: int = 200) -> list[bytes]:
    step = RATE * ms // 1000
    return [stereo[i : i + step].tobytes() for i in range(0, len(stereo), step)]


TURNS_A = [(0.5, 3.0), (6.0, 8.0)]
TURNS_B = [(3.5, 5.5), (8.5, 10.0)]


def test_auto_splits_two_sides_and_mixes_duplicated_near_duplicated_panned_and_one_sided_audio():
    a, b = _bursts(11, TURNS_A, 1), _bursts(11, TURNS_B, 2)
    call = _stereo(a, b)
    assert channels.survey(_chunks(call), 2, RATE).split
    mono = _stereo(a + b, a + b, bleed_db=-200)
    noisy = _stereo(a + b, 0.9 * (a + b) + _bursts(11, [], 3), bleed_db=-200)
    panned = _stereo(a + b, 0.3 * (a + b), bleed_db=-200)
    one_sided = _stereo(a + b, np.zeros_like(a), bleed_db=-200)
    for name, x in {"mono": mono, "near": noisy, "panned": panned, "one-sided": one_sided}.items():
        survey = channels.survey(_chunks(x), 2, RATE)
        assert not survey.split, (name, survey)
    # Only the start counts: a second side after AUTO_SECONDS is not looked at.
    assert not channels.survey(_chunks(call), 2, RATE, seconds=3.0).split


def test_the_gate_silences_the_other_sides_bleed_leaves_most_of_it_out_and_keeps_overlap():
    a = _bursts(6, [(0.5, 2.5), (4.0, 5.0)], 1)
    b = _bursts(6, [(3.0, 5.0)], 2)  # 3-4 s: B alone (A's channel hears only its bleed); 4-5 s: both speak
    levels = channels.Levels(RATE)
    left = np.frombuffer(b"".join(channels.gated(_chunks(_stereo(a, b)), 2, 0, RATE, levels)), dtype="<i2")
    # Of the silenced second, 300 ms at each end is sent; the 400 ms between is left out, and put back by the map.
    skips = levels.skips[0]
    assert skips.total_ms == 400 and len(left) == len(a) - 400 * RATE // 1000
    assert [skips.original(ms) for ms in (3000, 3299, 3300, 4100)] == [3000, 3299, 3700, 4500]

    def rms(x: np.ndarray, start: float, end: float) -> float:
        return float(np.sqrt(np.mean(x[int(start * RATE) : int(end * RATE)].astype(np.float64) ** 2)))

    assert rms(left, 3.05, 3.55) == 0.0  # B's bleed only, silenced (the stream's 3.0-3.6 s is the file's 3.0-4.0 s)
    assert rms(left, 0.6, 2.4) > 2000 and rms(left, 3.7, 4.5) > 2000  # A alone, and both at once: kept
    assert levels.quieter_by(0, 1, 3100, 3900) > 15 and abs(levels.quieter_by(0, 1, 4100, 4900)) < 5
    # A stream that is not channel 0's measures no levels (channel 0's does, once), but keeps its own skips.
    right = channels.Levels(RATE)
    assert b"".join(channels.gated(_chunks(_stereo(a, b)), 2, 1, RATE, right)) and right.table().size == 0
    assert right.skips[1].total_ms > 0


def test_stereo_files_decode_with_their_channels_kept():
    stereo = _stereo(_bursts(1, [(0, 0.5)], 1), _bursts(1, [(0.5, 1)], 2))
    wav = io.BytesIO()
    with wave.open(wav, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(stereo[::2].tobytes())
    assert channels.count(io.BytesIO(wav.getvalue())) == 2
    kept = b"".join(audio.decode_to_pcm(io.BytesIO(wav.getvalue()), RATE, keep_channels=True))
    mixed = b"".join(audio.decode_to_pcm(io.BytesIO(wav.getvalue()), RATE))
    assert abs(len(kept) - 2 * len(mixed)) <= 8 and abs(len(mixed) - 2 * RATE) <= 64
    left = np.frombuffer(kept, dtype="<i2").reshape(-1, 2)
    assert left[: RATE // 2 - 400, 0].std() > 5 * left[: RATE // 2 - 400, 1].std()


def _result(words: list[tuple[str, int, str | None]], request_id: str) -> TranscriptResult:
    ws = tuple(Word(t, at, 300, 0.9, speaker) for t, at, speaker in words)
    seg = Segment(" ".join(t for t, _, _ in words), ws[0].offset_ms, 1000, 0.9, ws, ws[0].speaker)
    return TranscriptResult(seg.text, (seg,), ws, "en", 0.9, 5000, (request_id,), 1, "tiny.en")


def test_merge_tags_channels_labels_speakers_per_channel_and_drops_a_word_the_other_side_said_louder():
    levels = channels.Levels(RATE)
    table = np.full((250, 2), -30.0, dtype=np.float32)
    table[100:120, 0] = -50.0  # 2.0-2.4 s: channel 0 hears "yes" 20 dB below channel 1
    levels.add(table)
    left = _result([("Hello", 0, "S1"), ("yes", 2000, "S1")], "r0")
    right = _result([("Yes.", 2050, "S1"), ("sure", 3000, "S2")], "r1")
    levels.skips[1] = channels.Skips()
    levels.skips[1].add(2500, 1000)  # channel 1's stream left out a second at 2.5 s: "sure" was at 4 s in the file
    out = merge([left, right], levels)
    assert [(w.word, w.channel, w.speaker) for w in out.words] == [
        ("Hello", 0, "C0-S1"),
        ("Yes.", 1, "C1-S1"),
        ("sure", 1, "C1-S2"),
    ]
    assert out.words[-1].offset_ms == 4000 and out.audio_duration_ms == 6000
    assert [(s.channel, s.text) for s in out.segments] == [(0, "Hello"), (1, "Yes. sure")]
    assert out.request_ids == ("r0", "r1")
    # Same words at the same time, at like levels (both spoke): both kept.
    flat = channels.Levels(RATE)
    flat.add(np.full((300, 2), -30.0, dtype=np.float32))
    assert len(merge([left, right], flat).words) == 4


def test_the_flag_reaches_the_transform_and_bad_values_are_refused(tmp_path):
    def job(*flags: str) -> Transcription:
        return Transcription(parse("transcribe", ["in.wav", "--output", str(tmp_path / "o"), *flags]).config)

    assert job().transcribe(ServiceSettings(), None).display_data()["channels"] == "auto"
    assert job("--channels", "split").transcribe(ServiceSettings(), None).display_data()["channels"] == "split"
    with pytest.raises(UsageError) as caught:
        job("--channels", "stereo")
    assert caught.value.flag == "--channels"
    with pytest.raises(ValueError, match="channels"):
        Transcribe(channels="both")
