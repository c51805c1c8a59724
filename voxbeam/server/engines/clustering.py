"""Clustering speaker embeddings, in numpy: average linkage on cosine distance, and how many speakers.

The dendrogram is cut into each candidate count, small clusters dissolved as strays, and the count whose cut
has the best silhouette wins (see :func:`cluster`). Calibrated on the diarization benchmark's conversations:
``python -m bench.diarization_offline`` (the tests' module docstring says on which).
"""

from __future__ import annotations

import numpy as np

# Counts tried when max_speakers is not given.
MAX_SPEAKERS = 8
# Clusters of fewer windows than this are taken for strays, not speakers (with windows 1.5 s apart: 3 s).
MIN_CLUSTER = 2
# The best cut is one voice when its centroids are all closer than this (cosine distance). Calibration: the
# two halves of one speaker were 0.10-0.20 apart in 17 of 20 monologues (0.31-0.39 in three: one person's
# recordings from different rooms), two speakers' 0.22-0.54 in 60 conversations (0.25 and more but one).
ONE_SPEAKER = 0.22


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


class _Tree:
    """The average-linkage dendrogram of embeddings, to be cut into k clusters for several k."""

    def __init__(self, x: np.ndarray, min_cluster: int) -> None:
        self.x, self.min_cluster = x, min_cluster
        self.merges = average_linkage(x)
        # Average linkage never merges below an earlier merge, so merges in height order replay the dendrogram.
        self.order = np.argsort(self.merges[:, 2], kind="stable")
        size = np.ones(len(x), dtype=int)
        self.between = np.zeros(len(self.merges), dtype=bool)  # a merge of two clusters of min_cluster or more
        for i in self.order:
            a, b = int(self.merges[i, 0]), int(self.merges[i, 1])
            self.between[i] = size[a] >= min_cluster and size[b] >= min_cluster
            size[a] += size[b]

    def cut(self, k: int, least: int) -> np.ndarray:
        """A cluster number per embedding: the dendrogram cut into ``k`` clusters, strays dissolved.

        The cut leaves out the k - 1 highest merges between clusters of ``min_cluster`` or more (then, if there
        are too few, the highest others). A stray (noise, a cough, two voices at once) is a small cluster far
        from the rest: its merge is high, but it does not take a speaker's place in the cut. Clusters under
        ``min_cluster`` are then dissolved (keeping at least ``least``) and every embedding goes to its
        nearest remaining centroid.
        """
        n = len(self.x)
        highest = self.order[::-1]
        between = self.between[highest]
        skip = {int(i) for i in [*highest[between], *highest[~between]][: k - 1]}
        parent = np.arange(n)

        def root(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for i in self.order:
            if int(i) not in skip:
                parent[root(int(self.merges[i, 1]))] = root(int(self.merges[i, 0]))
        labels = np.unique([root(i) for i in range(n)], return_inverse=True)[1]
        counts = np.bincount(labels)
        by_size = np.argsort(-counts, kind="stable")
        keep = [int(c) for c in by_size if counts[c] >= self.min_cluster]
        if len(keep) < least:
            keep = [int(c) for c in by_size[:least]]
        moved = _nearest_centroid(self.x, labels, keep)
        result: np.ndarray = np.unique(moved, return_inverse=True)[1]
        return result if result.max() + 1 >= least else labels


def silhouette(embeddings: np.ndarray, labels: np.ndarray) -> float:
    """The mean silhouette of ``labels`` on cosine distance (0 for an embedding alone in its cluster).

    A mean cosine distance to a cluster is one minus the dot product with the cluster's sum over its size, so
    this takes O(n k) dot products, not the n x n distances.
    """
    unit = _unit(embeddings)
    k = int(labels.max()) + 1
    if k < 2:
        return 0.0
    sums = np.zeros((k, unit.shape[1]))
    np.add.at(sums, labels, unit)
    sizes = np.bincount(labels, minlength=k).astype(np.float64)
    dots = unit @ sums.T  # (n, k)
    rows = np.arange(len(unit))
    own = sizes[labels]
    # Within: the distance to the others of its own cluster (its own dot product with itself is 1).
    a = 1.0 - (dots[rows, labels] - 1.0) / np.maximum(own - 1, 1)
    mean = 1.0 - dots / sizes
    mean[rows, labels] = np.inf
    b = mean.min(axis=1)
    s = np.where(own > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-12), 0.0)
    return float(s.mean())


def cluster(
    embeddings: np.ndarray,
    *,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
    min_cluster: int = MIN_CLUSTER,
    one_speaker: float = ONE_SPEAKER,
) -> np.ndarray:
    """A cluster number per embedding, 0 ... k - 1, k within the bounds.

    The dendrogram is cut (``_Tree.cut``) into each k from 2 to ``max_speakers`` (``MAX_SPEAKERS`` when not
    given), and the cut of highest :func:`silhouette` wins (the smaller k on a tie). When no two of that cut's
    centroids are ``one_speaker`` (cosine distance) apart, it is one voice: one speaker, or as few as
    ``min_speakers`` allows.
    Only merges between two clusters of at least ``min_cluster`` embeddings are speakers' merges; smaller
    clusters are strays.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    n = len(x)
    if n == 0:
        return np.zeros(0, dtype=int)
    high = min(max_speakers or MAX_SPEAKERS, n)
    low = min(max(1, min_speakers or 1), high)
    tree = _Tree(x, min_cluster)
    if low == high:
        return tree.cut(low, low)
    best, best_score = np.zeros(n, dtype=int), -np.inf
    for k in range(max(2, low), high + 1):
        labels = tree.cut(k, low)
        score = silhouette(x, labels) if labels.max() > 0 else -np.inf
        if score > best_score:
            best, best_score = labels, score
    centroids = _unit(np.stack([x[best == c].sum(axis=0) for c in range(int(best.max()) + 1)]))
    if float(np.max(1.0 - centroids @ centroids.T)) < one_speaker:
        return tree.cut(low, low) if low > 1 else np.zeros(n, dtype=int)
    return best


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _nearest_centroid(x: np.ndarray, labels: np.ndarray, keep: list[int]) -> np.ndarray:
    """Each embedding's nearest (cosine) centroid among the clusters ``keep``."""
    if len(keep) < 2:
        return np.zeros(len(x), dtype=int)
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    centroids = np.stack([unit[labels == c].mean(axis=0) for c in keep])
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    return np.asarray(np.argmax(unit @ centroids.T, axis=1))
