"""Speaker turns from window embeddings, in numpy: who spoke when, and which words each said.

Windows over the speech (:func:`voxbeam.server.engines.speaker.sliding_windows`), each cut to its longest
stretch without a pause (:func:`speech_span`), are embedded and clustered
(:func:`voxbeam.server.engines.clustering.cluster`: average linkage on cosine distance, the count by
silhouette within ``min_speakers``/``max_speakers``, small clusters dissolved as strays). Each instant of
speech goes to the window whose centre is nearest; turns shorter than ``min_turn_ms`` are given to their
longer neighbour. Labels are "S1", "S2", ... in order of first appearance.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from voxbeam.server.engines.clustering import MIN_CLUSTER, ONE_SPEAKER, cluster
from voxbeam.server.engines.speaker import RATE, Embedder, sliding_windows

# A turn shorter than this is given to its neighbour: more than one window's worth, so that one window
# (a stray, or two voices at a change) never makes a turn of its own.
MIN_TURN_MS = 1600
WINDOW_MS = 1500
HOP_MS = 1500
MIN_WINDOW_MS = 500
# Turns of one speaker closer than this are one turn (a pause inside it).
MAX_GAP_MS = 1000


class Turn(NamedTuple):
    start_ms: int
    end_ms: int
    speaker: str


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
    min_speakers: int = 1,
) -> list[Turn]:
    """Speaker turns from labelled windows (ms): nearest-centre ownership, short turns absorbed (but not a
    speaker's only turn while that would leave fewer than ``min_speakers``)."""
    if len(windows_ms) != len(labels):
        raise ValueError(f"{len(windows_ms)} windows but {len(labels)} labels")
    order = sorted(range(len(windows_ms)), key=lambda i: tuple(windows_ms[i]))
    windows = [(int(windows_ms[i][0]), int(windows_ms[i][1])) for i in order]
    spans = _owned(windows)
    turns = _merge([[lo, hi, int(labels[i])] for (lo, hi), i in zip(spans, order, strict=True) if hi > lo], max_gap_ms)
    # The shortest turn with a neighbour within max_gap_ms takes the longer such neighbour's speaker;
    # neighbours of one speaker are merged at once, so each pass leaves one turn fewer.
    while True:
        kept = set()
        if len({t[2] for t in turns}) <= min_speakers:
            kept = {s for s in {t[2] for t in turns} if sum(t[2] == s for t in turns) == 1}
        near = {
            i: _neighbours(turns, i, max_gap_ms)
            for i, t in enumerate(turns)
            if t[1] - t[0] < min_turn_ms and t[2] not in kept
        }
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
    one_speaker: float = ONE_SPEAKER,
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
        embeddings,
        min_speakers=min_speakers,
        max_speakers=max_speakers,
        min_cluster=min_cluster,
        one_speaker=one_speaker,
    )
    return make_turns(
        windows_ms, labels, min_turn_ms=min_turn_ms, max_gap_ms=max_gap_ms, min_speakers=min_speakers or 1
    )


def speaker_turns(
    encoder: Embedder,
    pcm: np.ndarray,
    regions: Sequence[tuple[int, int]] | None = None,
    *,
    window_ms: int = WINDOW_MS,
    hop_ms: int = HOP_MS,
    min_window_ms: int = MIN_WINDOW_MS,
    **options: Any,
) -> list[Turn]:
    """Speaker turns of 16 kHz mono ``pcm`` over its speech ``regions`` (samples; all of it when None).

    ``options`` go to :func:`diarize` (``min_speakers``, ``max_speakers``, ``one_speaker``, ...).
    Regions shorter than ``min_window_ms`` are left out: too short to tell a voice by. Each window is embedded
    over its :func:`speech_span`, as a session's are.
    """
    spans = [(0, len(pcm))] if regions is None else regions
    per_ms = RATE // 1000
    windows = [
        speech_span(pcm, *w)
        for w in sliding_windows(spans, window_ms * per_ms, hop_ms * per_ms)
        if w[1] - w[0] >= min_window_ms * per_ms
    ]
    if not windows:
        return []
    embeddings = encoder.embed_windows(pcm, windows)
    options.setdefault("one_speaker", encoder.one_speaker)
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
# So long a run of such 10 ms frames is a pause; a window holding one is embedded over its longest stretch
# without one, so that the voices either side of a change are not mixed in one embedding.
PAUSE_MS = 200
# Windows embedded together: the LSTM's steps cost less per window in a batch (16 ms alone, 8.8 ms in 16, 7.8 ms
# in 32, on one core here); the audio kept meanwhile is at most 32 windows' hops (48 s, 3 MB).
EMBED_BATCH = 32


def speech_span(pcm: np.ndarray, start: int, end: int, least: int = MIN_WINDOW_MS * RATE // 1000) -> tuple[int, int]:
    """The longest stretch of ``pcm[start:end]`` (samples) without a pause; the whole when that is under ``least``."""
    frame = RATE // 100
    n = (end - start) // frame
    if n == 0:
        return start, end
    x = pcm[start : start + n * frame].astype(np.float64).reshape(n, frame)
    quiet = 10 * np.log10(np.mean(x**2, axis=1) + 1e-20) <= SILENT_DBFS
    edges = np.diff(np.concatenate([[0], quiet.astype(np.int8), [0]]))
    runs = zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True)
    pauses: list[int] = [v for a, b in runs if (b - a) * 10 >= PAUSE_MS for v in (a, b)]
    if not pauses:
        return start, end
    # Stretches between pauses, in samples; the last reaches the window's end (the part under a frame).
    bounds = [start, *[start + v * frame for v in pauses], end]
    stretches: list[tuple[int, int]] = list(zip(bounds[::2], bounds[1::2], strict=True))
    lo, hi = max(stretches, key=lambda se: se[1] - se[0])
    return (lo, hi) if hi - lo >= least else (start, end)


class SpeakerTrack:
    """A recognition session's speakers, embedded as its audio arrives and clustered when it ends.

    ``push`` takes PCM s16le mono at ``sample_rate`` and embeds the windows of ``WINDOW_MS`` (every
    ``HOP_MS``; each over its :func:`speech_span`) once their audio is in, ``EMBED_BATCH`` at a time, so memory
    holds one embedding per window (1 KiB per 1.5 s), not the audio. ``finish`` embeds the last windows,
    clusters, and returns the turns (ms from the session's start); the track then starts afresh at 0, as the
    recognition session does.
    """

    def __init__(
        self,
        encoder: Embedder,
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
            turns = diarize(
                np.stack(self._embeddings),
                self._windows,
                one_speaker=self.encoder.one_speaker,
                **self.bounds,  # type: ignore[arg-type]
            )
        self._reset()
        return turns

    def _take(self, pcm: bytes) -> None:
        if pcm:
            x = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
            self._buf = np.concatenate([self._buf, x])

    def _embed(self, spans: list[tuple[int, int]]) -> None:
        if spans:
            self._covered = spans[-1][1]
        kept = []
        for a, b in [(a - self._buf_start, b - self._buf_start) for a, b in spans]:
            rms = float(np.sqrt(np.mean(self._buf[a:b] ** 2))) if b > a else 0.0
            if b > a and 20 * np.log10(max(rms, 1e-10)) > SILENT_DBFS:
                lo, hi = speech_span(self._buf, a, b)
                kept.append(((lo, hi), (lo + self._buf_start, hi + self._buf_start)))
        if not kept:
            return
        vectors = self.encoder.embed_windows(self._buf, [k[0] for k in kept])
        per_ms = RATE // 1000
        for vector, (_, (a, b)) in zip(vectors, kept, strict=True):
            self._embeddings.append(vector)
            self._windows.append((a // per_ms, b // per_ms))
