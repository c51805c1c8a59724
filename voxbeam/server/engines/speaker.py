"""Speaker embeddings without torch: resemblyzer's GE2E speaker encoder, run in numpy.

The weights are ``resemblyzer/pretrained.pt`` from the pinned ``resemblyzer==0.1.4`` wheel
(Apache-2.0), installed with ``pip install --no-deps`` so that neither torch, librosa nor webrtcvad
comes along. The file is a torch pickle, which :mod:`voxbeam.server.engines.torch_state` reads with
an unpickler that resolves only the few names a state dict needs and never calls anything the file
names.

The front end and the network follow resemblyzer's ``audio.py`` and ``voice_encoder.py``:
40-channel mel power spectrogram (not log) of 16 kHz audio, 25 ms Hann window, 10 ms hop (librosa's
``melspectrogram`` with its defaults, Slaney mel scale and norm, zero padding when centring);
partial utterances of 160 frames at 1.3 per second; a 3-layer LSTM (40 -> 256) whose last hidden
state goes through linear 256 -> 256, ReLU and L2 normalisation; the mean of the partials,
normalised again. Deviations from ``preprocess_wav``: no resampling (the input is 16 kHz already) and
no webrtcvad trimming of long silences (callers pass speech, e.g. regions from the server's VAD);
the volume normalisation (raise to -30 dBFS, never lower) is kept, per utterance or window.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from voxbeam.server.engines.clustering import ONE_SPEAKER
from voxbeam.server.engines.models import ModelFile, PackagedModel, Part, weights_file
from voxbeam.server.engines.torch_state import load_torch_state
from voxbeam.server.errors import ModelError

RATE = 16000
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 40
PARTIAL_FRAMES = 160  # 1.6 s
PARTIALS_PER_S = 1.3
MIN_COVERAGE = 0.75
TARGET_DBFS = -30.0
EMBEDDING_SIZE = 256
_INT16_MAX = 2**15 - 1

_SHA256 = "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e"
RESEMBLYZER = PackagedModel(
    name="resemblyzer-ge2e",
    files=(ModelFile("pretrained.pt", _SHA256, (Part("resemblyzer", "pretrained.pt", _SHA256),)),),
    pip="pip install --no-deps resemblyzer==0.1.4",
    source="PyPI resemblyzer 0.1.4: GE2E speaker encoder (Resemble AI), read without torch",
    license="Apache-2.0",
)


# ---------------------------------------------------------------------------
# Front end: librosa.feature.melspectrogram(y, sr=16000, n_fft=400, hop_length=160, n_mels=40)


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    # Slaney's scale: linear below 1 kHz, logarithmic above (librosa's default, htk=False).
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    mel = hz / f_sp
    log_part = hz >= min_log_hz
    mel[log_part] = min_log_mel + np.log(hz[log_part] / min_log_hz) / logstep
    return mel


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    hz = f_sp * mel
    log_part = mel >= min_log_mel
    hz[log_part] = min_log_hz * np.exp(logstep * (mel[log_part] - min_log_mel))
    return hz


def mel_filterbank(rate: int = RATE, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """``librosa.filters.mel(sr=rate, n_fft=n_fft, n_mels=n_mels)``: (n_mels, 1 + n_fft // 2), float32."""
    fft_freqs = np.fft.rfftfreq(n_fft, d=1.0 / rate)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(np.array([0.0]))[0], _hz_to_mel(np.array([rate / 2.0]))[0], n_mels + 2))
    widths = np.diff(edges)
    ramps = np.subtract.outer(edges, fft_freqs)
    # float32 rows as librosa stores them, then Slaney's area normalisation in float32 too.
    weights = np.zeros((n_mels, len(fft_freqs)), dtype=np.float32)
    for i in range(n_mels):
        weights[i] = np.maximum(0, np.minimum(-ramps[i] / widths[i], ramps[i + 2] / widths[i + 1]))
    weights *= (2.0 / (edges[2 : n_mels + 2] - edges[:n_mels]))[:, None].astype(np.float32)
    return weights


_FILTERBANK = mel_filterbank()
# scipy.signal.get_window("hann", 400): the periodic Hann window.
_WINDOW = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float64)


def mel_spectrogram(pcm: np.ndarray) -> np.ndarray:
    """resemblyzer's ``wav_to_mel_spectrogram``: (1 + len(pcm) // 160, 40) mel power frames, float32."""
    y = np.asarray(pcm, dtype=np.float32)
    padded = np.pad(y, N_FFT // 2)  # center=True with librosa's (>= 0.10) zero padding
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
    spectrum = np.fft.rfft(frames * _WINDOW, axis=-1).astype(np.complex64)
    power = spectrum.real**2 + spectrum.imag**2
    return np.asarray(power @ _FILTERBANK.T, dtype=np.float32)


def normalize_volume(pcm: np.ndarray, target_dbfs: float = TARGET_DBFS) -> np.ndarray:
    """resemblyzer's ``normalize_volume(increase_only=True)``: raised to ``target_dbfs`` RMS, never lowered."""
    y = np.asarray(pcm, dtype=np.float32)
    rms = float(np.sqrt(np.mean((y.astype(np.float64) * _INT16_MAX) ** 2))) if y.size else 0.0
    if rms == 0.0:
        return y  # silence stays silence (resemblyzer would divide by zero)
    change = target_dbfs - 20 * np.log10(rms / _INT16_MAX)
    return y if change < 0 else (y * np.float32(10 ** (change / 20))).astype(np.float32)


def partial_slices(
    n_samples: int, rate: float = PARTIALS_PER_S, min_coverage: float = MIN_COVERAGE
) -> list[tuple[int, int]]:
    """resemblyzer's ``compute_partial_slices``: mel frame ranges of the partial utterances.

    Each is PARTIAL_FRAMES long and may reach past the audio (which is then padded with zeros);
    the last is dropped when less than ``min_coverage`` of it is audio, unless it is the only one.
    """
    n_frames = int(np.ceil((n_samples + 1) / HOP))
    step = int(np.round((RATE / rate) / HOP))
    if not 0 < step <= PARTIAL_FRAMES:
        raise ValueError(f"partials per second must be in [{RATE / (HOP * PARTIAL_FRAMES)}, {RATE / HOP}]")
    starts = range(0, max(1, n_frames - PARTIAL_FRAMES + step + 1), step)
    slices = [(i, i + PARTIAL_FRAMES) for i in starts]
    last = slices[-1]
    coverage = (n_samples - last[0] * HOP) / (PARTIAL_FRAMES * HOP)
    if coverage < min_coverage and len(slices) > 1:
        slices.pop()
    return slices


# ---------------------------------------------------------------------------
# The network


@dataclass(frozen=True)
class _Layer:
    w_ih: np.ndarray  # (in, 4H), transposed for x @ w
    w_hh: np.ndarray  # (H, 4H)
    bias: np.ndarray  # (4H,), both biases summed


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    # An all-zero ReLU output would be NaN in resemblyzer; here it stays zero.
    return np.asarray(x / np.maximum(norm, 1e-12), dtype=np.float32)


class Embedder(Protocol):
    """A speaker model as diarization uses it: unit-norm embeddings of windows, and the cosine distance under
    which a file's clusters are one voice (``clustering.cluster``'s ``one_speaker``), which depends on the model."""

    one_speaker: float

    def embed_windows(self, pcm: np.ndarray, windows: Sequence[tuple[int, int]]) -> np.ndarray: ...


class SpeakerEncoder:
    """resemblyzer's ``VoiceEncoder`` in numpy: 256-d unit-norm speaker embeddings of 16 kHz mono speech.

    ``weights_path`` defaults to the installed ``resemblyzer`` package's ``pretrained.pt``; either
    way its SHA-256 is checked before it is read.
    """

    one_speaker = ONE_SPEAKER

    def __init__(self, weights_path: str | os.PathLike[str] | None = None) -> None:
        self.path = path = weights_file(RESEMBLYZER, weights_path)
        checkpoint = load_torch_state(path)
        state = checkpoint.get("model_state") if isinstance(checkpoint, dict) else None
        if not isinstance(state, dict):
            raise ModelError(f"{path}: no model_state in the checkpoint")
        self._layers = [self._layer(state, k) for k in range(3)]
        self._linear_w = np.ascontiguousarray(self._tensor(state, "linear.weight", (256, 256)).T)
        self._linear_b = self._tensor(state, "linear.bias", (256,))

    @staticmethod
    def _tensor(state: dict[str, Any], name: str, shape: tuple[int, ...]) -> np.ndarray:
        value = state.get(name)
        if not isinstance(value, np.ndarray) or value.shape != shape:
            got = getattr(value, "shape", type(value).__name__)
            raise ModelError(f"weights file: {name} should be {shape}, found {got}")
        return value.astype(np.float32)

    @classmethod
    def _layer(cls, state: dict[str, Any], k: int) -> _Layer:
        hidden = EMBEDDING_SIZE
        inputs = N_MELS if k == 0 else hidden
        w_ih = cls._tensor(state, f"lstm.weight_ih_l{k}", (4 * hidden, inputs))
        w_hh = cls._tensor(state, f"lstm.weight_hh_l{k}", (4 * hidden, hidden))
        bias = cls._tensor(state, f"lstm.bias_ih_l{k}", (4 * hidden,)) + cls._tensor(
            state, f"lstm.bias_hh_l{k}", (4 * hidden,)
        )
        # sigmoid(x) = (1 + tanh(x / 2)) / 2: halving the i, f, o rows (PyTorch's order is i, f, g, o)
        # lets one tanh per step serve all four gates, with no overflow warnings from exp.
        scale = np.full(4 * hidden, 0.5, dtype=np.float32)
        scale[2 * hidden : 3 * hidden] = 1.0
        return _Layer(
            np.ascontiguousarray((w_ih * scale[:, None]).T),
            np.ascontiguousarray((w_hh * scale[:, None]).T),
            bias * scale,
        )

    def _lstm(self, mels: np.ndarray) -> np.ndarray:
        """The last layer's final hidden state for a batch of (B, T, 40) spectrograms: (B, 256)."""
        hidden = EMBEDDING_SIZE
        batch, steps, _ = mels.shape
        x = np.ascontiguousarray(mels.transpose(1, 0, 2))  # time-major, so each step reads one block
        h = np.zeros((batch, hidden), dtype=np.float32)
        for n, layer in enumerate(self._layers):
            gates_in = (x.reshape(steps * batch, -1) @ layer.w_ih + layer.bias).reshape(steps, batch, 4 * hidden)
            h = np.zeros((batch, hidden), dtype=np.float32)
            c = np.zeros((batch, hidden), dtype=np.float32)
            last = n == len(self._layers) - 1
            out = None if last else np.empty((steps, batch, hidden), dtype=np.float32)
            gates = np.empty((batch, 4 * hidden), dtype=np.float32)
            for t in range(steps):
                np.matmul(h, layer.w_hh, out=gates)
                gates += gates_in[t]
                np.tanh(gates, out=gates)
                i = gates[:, :hidden] * 0.5 + 0.5
                f = gates[:, hidden : 2 * hidden] * 0.5 + 0.5
                o = gates[:, 3 * hidden :] * 0.5 + 0.5
                c = f * c + i * gates[:, 2 * hidden : 3 * hidden]
                h = o * np.tanh(c)
                if out is not None:
                    out[t] = h
            if out is not None:
                x = out
        return h

    def embed_partials(self, mels: np.ndarray) -> np.ndarray:
        """resemblyzer's ``forward``: (B, T, 40) mel spectrograms to (B, 256) unit-norm embeddings."""
        mels = np.asarray(mels, dtype=np.float32)
        if mels.ndim != 3 or mels.shape[2] != N_MELS:
            raise ValueError(f"expected (batch, frames, {N_MELS}) spectrograms, got {mels.shape}")
        if len(mels) == 0:
            return np.zeros((0, EMBEDDING_SIZE), dtype=np.float32)
        hidden = self._lstm(mels)
        return _l2_normalise(np.maximum(hidden @ self._linear_w + self._linear_b, 0.0))

    def embed(self, pcm: np.ndarray, *, normalize: bool = True) -> np.ndarray:
        """resemblyzer's ``embed_utterance``: one (256,) embedding of 16 kHz float speech in [-1, 1]."""
        return self.embed_windows(pcm, [(0, len(pcm))], normalize=normalize)[0]

    def embed_windows(
        self, pcm: np.ndarray, windows: Sequence[tuple[int, int]], *, normalize: bool = True
    ) -> np.ndarray:
        """One embedding per ``(start_sample, end_sample)`` window of ``pcm``: (n, 256).

        Each window is embedded as ``embed(pcm[start:end])`` would, with every window's partials
        going through the network as one batch.
        """
        y = np.asarray(pcm, dtype=np.float32)
        if y.ndim != 1:
            raise ValueError(f"expected mono samples, got shape {y.shape}")
        parts: list[np.ndarray] = []
        owners: list[int] = []
        for n, (start, end) in enumerate(windows):
            if not 0 <= start < end <= len(y):
                raise ValueError(f"window {n} ({start}, {end}) is empty or outside the {len(y)} samples")
            clip = normalize_volume(y[start:end]) if normalize else y[start:end]
            slices = partial_slices(len(clip))
            clip = np.pad(clip, (0, max(0, slices[-1][1] * HOP - len(clip))))
            mel = mel_spectrogram(clip)
            parts += [mel[a:b] for a, b in slices]
            owners += [n] * len(slices)
        if not windows:
            return np.zeros((0, EMBEDDING_SIZE), dtype=np.float32)
        partials = self.embed_partials(np.stack(parts))
        sums = np.zeros((len(windows), EMBEDDING_SIZE), dtype=np.float64)
        np.add.at(sums, np.asarray(owners), partials)
        # The mean's direction is the sum's: normalising either gives resemblyzer's embedding.
        return _l2_normalise(sums)


def sliding_windows(
    regions: Sequence[tuple[int, int]], window: int = int(1.5 * RATE), hop: int = int(0.75 * RATE)
) -> list[tuple[int, int]]:
    """Windows of ``window`` samples every ``hop`` over each ``(start, end)`` region, in samples.

    A region shorter than a window gives one window, the region itself; otherwise the last window
    ends at the region's end, so every sample is covered.
    """
    out: list[tuple[int, int]] = []
    for start, end in regions:
        if end <= start:
            continue
        if end - start <= window:
            out.append((start, end))
            continue
        s = start
        while True:
            out.append((s, s + window))
            if s + window >= end:
                break
            s = min(s + hop, end - window)
    return out
