"""Speaker turns from window embeddings, in numpy: who spoke when, and which words each said.

Windows over the speech (:func:`voxbeam.server.engines.speaker.sliding_windows`) are embedded,
clustered by average linkage on cosine distance, the dendrogram cut where clusters of at least
``min_cluster`` windows are farther apart than ``threshold`` (bounded by ``min_speakers``/``max_speakers``;
small clusters are strays, see :func:`cluster`), and each window then moved to its nearest cluster
centroid. Each instant of speech goes to the window whose centre
is nearest; turns shorter than ``min_turn_ms`` are given to their longer neighbour. Labels are
"S1", "S2", ... in order of first appearance.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from voxbeam.server.engines.speaker import RATE, SpeakerEncoder, sliding_windows

# Average-linkage cosine distance above which two clusters are taken for two speakers.
# Calibrated on simulated conversations of 1-4 speakers (see the tests' module docstring).
THRESHOLD = 0.45
# Clusters of fewer windows than this (about 3 s of speech) are taken for strays, not speakers.
MIN_CLUSTER = 4
MIN_TURN_MS = 500
WINDOW_MS = 1500
HOP_MS = 750
MIN_WINDOW_MS = 500
# Turns of one speaker closer than this are one turn (a pause inside it).
MAX_GAP_MS = 1000


class Turn(NamedTuple):
    start_ms: int
    end_ms: int
    speaker: str


def average_linkage(embeddings: np.ndarray) -> np.ndarray:
    """The average-linkage dendrogram of ``embeddings`` on cosine distance, by nearest-neighbour chains.

    Returns (n - 1, 3) rows ``(a, b, height)``: cluster ``b`` (named by one of its members) merged
    into ``a``, in the order found, which is not sorted by height. O(n^2) time, and 4 n^2 bytes of
    memory: 90 MB for an hour of speech in windows 0.75 s apart.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    n = len(x)
    if n < 2:
        return np.zeros((0, 3))
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    dist = np.clip(1.0 - x @ x.T, 0.0, 2.0).astype(np.float32)
    np.fill_diagonal(dist, np.inf)
    size = np.ones(n)
    alive = np.ones(n, dtype=bool)
    merges = np.zeros((n - 1, 3))
    chain: list[int] = []
    done = 0
    while done < n - 1:
        if not chain:
            chain.append(int(np.flatnonzero(alive)[0]))
        a = chain[-1]
        row = dist[a]
        b = int(np.argmin(row))
        # Ties go to the previous link, so the chain ends in a pair of reciprocal nearest neighbours.
        if len(chain) > 1 and row[chain[-2]] <= row[b]:
            b = chain[-2]
        if len(chain) > 1 and b == chain[-2]:
            chain.pop()
            chain.pop()
            height = row[b]
            merged = (size[a] * dist[a] + size[b] * dist[b]) / (size[a] + size[b])
            merged[~alive] = np.inf
            dist[a], dist[:, a] = merged, merged
            dist[a, a] = np.inf
            dist[b], dist[:, b] = np.inf, np.inf
            size[a] += size[b]
            alive[b] = False
            merges[done] = (a, b, height)
            done += 1
        else:
            chain.append(b)
    return merges


def cluster(
    embeddings: np.ndarray,
    *,
    threshold: float = THRESHOLD,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
    min_cluster: int = MIN_CLUSTER,
) -> np.ndarray:
    """A cluster number per embedding, 0 ... k - 1, k chosen by ``threshold`` within the bounds.

    Only merges between two clusters of at least ``min_cluster`` embeddings count: k is one more than
    the number of those above ``threshold``, and the cut leaves out the k - 1 highest of them (then, if
    there are too few, the highest others). A stray (noise, a cough, two voices at once) is a small
    cluster far from the rest: its merge is high, but it neither adds a speaker nor keeps two voices
    together by taking a speaker's place in the cut. Clusters under ``min_cluster`` are then dissolved
    and every embedding goes to its nearest remaining centroid.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    n = len(x)
    if n == 0:
        return np.zeros(0, dtype=int)
    low = max(1, min_speakers or 1)
    merges = average_linkage(x)
    # Average linkage never merges below an earlier merge, so merges in height order replay the dendrogram.
    order = np.argsort(merges[:, 2], kind="stable")
    size = np.ones(n, dtype=int)
    between = np.zeros(len(merges), dtype=bool)  # a merge of two clusters of min_cluster or more
    for i in order:
        a, b = int(merges[i, 0]), int(merges[i, 1])
        between[i] = size[a] >= min_cluster and size[b] >= min_cluster
        size[a] += size[b]
    k = 1 + int(np.sum(between & (merges[:, 2] > threshold)))
    k = min(max(k, low), max_speakers or n, n)
    highest = order[::-1]
    skip = {int(i) for i in [*highest[between[highest]], *highest[~between[highest]]][: k - 1]}
    parent = np.arange(n)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in order:
        if int(i) not in skip:
            parent[root(int(merges[i, 1]))] = root(int(merges[i, 0]))
    labels = np.unique([root(i) for i in range(n)], return_inverse=True)[1]
    counts = np.bincount(labels)
    by_size = np.argsort(-counts, kind="stable")
    keep = [int(c) for c in by_size if counts[c] >= min_cluster]
    if len(keep) < min(low, k):
        keep = [int(c) for c in by_size[: min(low, k)]]
    moved = _nearest_centroid(x, labels, keep)
    result: np.ndarray = np.unique(moved, return_inverse=True)[1]
    return result if result.max() + 1 >= min(low, k) else labels


def _nearest_centroid(x: np.ndarray, labels: np.ndarray, keep: list[int]) -> np.ndarray:
    """Each embedding's nearest (cosine) centroid among the clusters ``keep``."""
    if len(keep) < 2:
        return np.zeros(len(x), dtype=int)
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    centroids = np.stack([unit[labels == c].mean(axis=0) for c in keep])
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    return np.asarray(np.argmax(unit @ centroids.T, axis=1))


def _owned(windows: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The part of each (sorted) window nearer its centre than any overlapping window's."""
    spans = []
    for i, (start, end) in enumerate(windows):
        lo, hi = start, end
        if i > 0 and windows[i - 1][1] > start:
            prev = windows[i - 1]
            lo = max(start, min(prev[1], (prev[0] + prev[1] + start + end) // 4))
        if i + 1 < len(windows) and windows[i + 1][0] < end:
            nxt = windows[i + 1]
            hi = max(nxt[0], min(end, (start + end + nxt[0] + nxt[1]) // 4))
        spans.append((lo, max(lo, hi)))
    return spans


def _merge(turns: list[list[int]], max_gap_ms: int) -> list[list[int]]:
    out: list[list[int]] = []
    for t in turns:
        if out and out[-1][2] == t[2] and t[0] - out[-1][1] <= max_gap_ms:
            out[-1][1] = max(out[-1][1], t[1])
        else:
            out.append(list(t))
    return out


def _neighbours(turns: list[list[int]], i: int, max_gap_ms: int) -> list[int]:
    out = []
    if i > 0 and turns[i][0] - turns[i - 1][1] <= max_gap_ms:
        out.append(i - 1)
    if i + 1 < len(turns) and turns[i + 1][0] - turns[i][1] <= max_gap_ms:
        out.append(i + 1)
    return out


def make_turns(
    windows_ms: Sequence[tuple[int, int]],
    labels: Sequence[int] | np.ndarray,
    *,
    min_turn_ms: int = MIN_TURN_MS,
    max_gap_ms: int = MAX_GAP_MS,
) -> list[Turn]:
    """Speaker turns from labelled windows (ms): nearest-centre ownership, short turns absorbed."""
    if len(windows_ms) != len(labels):
        raise ValueError(f"{len(windows_ms)} windows but {len(labels)} labels")
    order = sorted(range(len(windows_ms)), key=lambda i: tuple(windows_ms[i]))
    windows = [(int(windows_ms[i][0]), int(windows_ms[i][1])) for i in order]
    spans = _owned(windows)
    turns = _merge([[lo, hi, int(labels[i])] for (lo, hi), i in zip(spans, order, strict=True) if hi > lo], max_gap_ms)
    # The shortest turn with a neighbour within max_gap_ms takes the longer such neighbour's speaker;
    # neighbours of one speaker are merged at once, so each pass leaves one turn fewer.
    while True:
        near = {i: _neighbours(turns, i, max_gap_ms) for i, t in enumerate(turns) if t[1] - t[0] < min_turn_ms}
        near = {i: js for i, js in near.items() if js}
        if not near:
            break
        i = min(near, key=lambda j: turns[j][1] - turns[j][0])
        into = max(near[i], key=lambda j: turns[j][1] - turns[j][0])
        turns[i][2] = turns[into][2]
        turns = _merge(turns, max_gap_ms)
    names: dict[int, str] = {}
    for t in turns:
        names.setdefault(t[2], f"S{len(names) + 1}")
    return [Turn(t[0], t[1], names[t[2]]) for t in turns]


def diarize(
    embeddings: np.ndarray,
    windows_ms: Sequence[tuple[int, int]],
    *,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
    threshold: float = THRESHOLD,
    min_cluster: int = MIN_CLUSTER,
    min_turn_ms: int = MIN_TURN_MS,
    max_gap_ms: int = MAX_GAP_MS,
) -> list[Turn]:
    """Speaker turns ``(start_ms, end_ms, "S<n>")`` from one embedding per window of ``windows_ms``."""
    if len(embeddings) != len(windows_ms):
        raise ValueError(f"{len(embeddings)} embeddings but {len(windows_ms)} windows")
    if min_speakers is not None and max_speakers is not None and min_speakers > max_speakers:
        raise ValueError(f"min_speakers {min_speakers} > max_speakers {max_speakers}")
    labels = cluster(
        embeddings, threshold=threshold, min_speakers=min_speakers, max_speakers=max_speakers, min_cluster=min_cluster
    )
    return make_turns(windows_ms, labels, min_turn_ms=min_turn_ms, max_gap_ms=max_gap_ms)


def speaker_turns(
    encoder: SpeakerEncoder,
    pcm: np.ndarray,
    regions: Sequence[tuple[int, int]] | None = None,
    *,
    window_ms: int = WINDOW_MS,
    hop_ms: int = HOP_MS,
    min_window_ms: int = MIN_WINDOW_MS,
    **options: Any,
) -> list[Turn]:
    """Speaker turns of 16 kHz mono ``pcm`` over its speech ``regions`` (samples; all of it when None).

    ``options`` go to :func:`diarize` (``min_speakers``, ``max_speakers``, ``threshold``, ...).
    Regions shorter than ``min_window_ms`` are left out: too short to tell a voice by.
    """
    spans = [(0, len(pcm))] if regions is None else regions
    per_ms = RATE // 1000
    windows = [
        w for w in sliding_windows(spans, window_ms * per_ms, hop_ms * per_ms) if w[1] - w[0] >= min_window_ms * per_ms
    ]
    if not windows:
        return []
    embeddings = encoder.embed_windows(pcm, windows)
    return diarize(embeddings, [(a // per_ms, b // per_ms) for a, b in windows], **options)


def assign_words(words: Sequence[tuple[int, int]], turns: Sequence[Turn]) -> list[str | None]:
    """The speaker of each timed word ``(start_ms, end_ms)``: the turn it overlaps most, else the nearest.

    ``None`` for every word when there are no turns.
    """
    if not turns:
        return [None] * len(words)
    starts = np.array([t.start_ms for t in turns], dtype=np.int64)
    ends = np.array([t.end_ms for t in turns], dtype=np.int64)
    out: list[str | None] = []
    for start, end in words:
        overlap = np.minimum(ends, end) - np.maximum(starts, start)
        best = int(np.argmax(overlap))
        if overlap[best] <= 0:
            # No overlap: the nearest turn by the gap between the intervals.
            best = int(np.argmin(np.maximum(starts - end, start - ends)))
        out.append(turns[best].speaker)
    return out


# Windows quieter than this (dBFS) hold no voice to tell: silence between turns, a muted line.
SILENT_DBFS = -50.0
# Windows embedded together: the LSTM's steps cost less per window in a batch (32 ms alone, 19.5 ms in 16, on
# one core here); the audio kept meanwhile is at most 16 windows' hops (12 s).
EMBED_BATCH = 16


class SpeakerTrack:
    """A recognition session's speakers, embedded as its audio arrives and clustered when it ends.

    ``push`` takes PCM s16le mono at ``sample_rate`` and embeds the windows of ``WINDOW_MS`` (every
    ``HOP_MS``) once their audio is in, ``EMBED_BATCH`` at a time, so memory holds one embedding per window
    (1 KiB per 0.75 s), not the audio. ``finish`` embeds the last windows, clusters, and returns the turns
    (ms from the session's start); the track then starts afresh at 0, as the recognition session does.
    """

    def __init__(
        self,
        encoder: SpeakerEncoder,
        sample_rate: int,
        *,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
    ) -> None:
        # Imported here: the wire module's resampler (PyAV) only where a session diarizes.
        from voxbeam.audio import PcmResampler

        self.encoder = encoder
        self.bounds = {"min_speakers": min_speakers, "max_speakers": max_speakers}
        self._resampler = PcmResampler(sample_rate, RATE)
        self._reset()

    def _reset(self) -> None:
        self._buf = np.zeros(0, dtype=np.float32)
        self._buf_start = 0  # the session's sample at _buf[0]
        self._next = 0  # where the next window starts
        self._covered = 0  # where the last window embedded ended
        self._pending: list[tuple[int, int]] = []  # windows whose audio is in, embedded EMBED_BATCH at a time
        self._embeddings: list[np.ndarray] = []
        self._windows: list[tuple[int, int]] = []

    def push(self, pcm: bytes) -> None:
        self._take(self._resampler.push(pcm))
        window, hop = WINDOW_MS * RATE // 1000, HOP_MS * RATE // 1000
        while self._next + window <= self._buf_start + len(self._buf):
            self._pending.append((self._next, self._next + window))
            self._next += hop
        if len(self._pending) >= EMBED_BATCH:
            self._embed(self._pending)
            self._pending = []
        keep = self._pending[0][0] if self._pending else self._next
        if keep > self._buf_start:
            self._buf, self._buf_start = self._buf[keep - self._buf_start :], keep

    def finish(self) -> list[Turn]:
        self._take(self._resampler.flush())
        end = self._buf_start + len(self._buf)
        window, least = WINDOW_MS * RATE // 1000, MIN_WINDOW_MS * RATE // 1000
        covered = self._pending[-1][1] if self._pending else self._covered
        if end - covered >= least:  # audio no window reached: the last one ends at the end
            self._pending.append((max(self._buf_start, end - window), end))
        self._embed(self._pending)
        turns: list[Turn] = []
        if self._embeddings:
            turns = diarize(np.stack(self._embeddings), self._windows, **self.bounds)  # type: ignore[arg-type]
        self._reset()
        return turns

    def _take(self, pcm: bytes) -> None:
        if pcm:
            x = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
            self._buf = np.concatenate([self._buf, x])

    def _embed(self, spans: list[tuple[int, int]]) -> None:
        if spans:
            self._covered = spans[-1][1]
        local = [(a - self._buf_start, b - self._buf_start) for a, b in spans]
        kept = []
        for (a, b), span in zip(local, spans, strict=True):
            rms = float(np.sqrt(np.mean(self._buf[a:b] ** 2))) if b > a else 0.0
            if b > a and 20 * np.log10(max(rms, 1e-10)) > SILENT_DBFS:
                kept.append(((a, b), span))
        if not kept:
            return
        vectors = self.encoder.embed_windows(self._buf, [k[0] for k in kept])
        per_ms = RATE // 1000
        for vector, (_, (a, b)) in zip(vectors, kept, strict=True):
            self._embeddings.append(vector)
            self._windows.append((a // per_ms, b // per_ms))
