"""The diarization benchmark's conversations diarized in-process, without recognition: for calibrating.

    python -m bench.diarization_offline [--seed 28] [--hop-ms 750] [--n 30]

Each conversation of :func:`bench.diarization.conversations` goes through the server's own
:class:`~voxbeam.server.engines.diarization.SpeakerTrack` (the windows a diarizing session embeds), and its
embeddings are kept in a cache (``~/.cache/voxbeam/diarization-offline``, by seed), so that clustering rules
can be tried on them in seconds. Words are stood in for by 300 ms pieces of each reference turn, labelled by
:func:`~voxbeam.server.engines.diarization.assign_words`: "words right" here is the share of the reference's
talk time on the right speaker, under the best mapping, and the count is the labels those pieces carry, as the
benchmark counts the labels of words. Not a substitute for the benchmark (no recognition, no CPU), a proxy.
"""

from __future__ import annotations

import argparse
import functools
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench import human_corpus
from bench.diarization import SEED, Conversation, _best_mapping, conversations

CACHE = Path.home() / ".cache" / "voxbeam" / "diarization-offline"
PIECE_MS = 300
SPEECH_DBFS = -45.0


class _Recorder:
    """An encoder that embeds through the real one once per window, remembering the windows it was asked for."""

    one_speaker = 0.0  # unused: track_windows stops at the clustering, which evaluate runs with the model's

    def __init__(self, encoder: Any, cache: dict[tuple[int, int], np.ndarray]) -> None:
        self.encoder, self.cache, self.track = encoder, cache, None

    def embed_windows(self, pcm: np.ndarray, windows: Sequence[tuple[int, int]]) -> np.ndarray:
        # Keyed by the session's samples: the track's windows are in its buffer's.
        self.offset = self.track._buf_start if self.track is not None else 0
        todo = [w for w in windows if (w[0] + self.offset, w[1] + self.offset) not in self.cache]
        if todo:
            for w, e in zip(todo, self.encoder.embed_windows(pcm, todo), strict=True):
                self.cache[(w[0] + self.offset, w[1] + self.offset)] = e
        return np.stack([self.cache[(a + self.offset, b + self.offset)] for a, b in windows])


def track_windows(conv: Conversation, encoder: Any, cache: dict, hop_ms: int) -> tuple[np.ndarray, list]:
    """The embeddings and windows (ms) a diarizing session of ``conv`` clusters, at ``hop_ms``."""
    from voxbeam.server.engines import diarization as di

    seen: dict[str, Any] = {}

    class Track(di.SpeakerTrack):
        def finish(self) -> list[di.Turn]:
            original = di.diarize
            di.diarize = lambda e, w, **kw: seen.update(e=e, w=list(w)) or []  # type: ignore[assignment]
            try:
                return super().finish()
            finally:
                di.diarize = original

    recorder = _Recorder(encoder, cache)
    old = di.HOP_MS
    di.HOP_MS = hop_ms
    try:
        track = Track(recorder, 16000)  # type: ignore[arg-type]
        recorder.track = track
        step = 16000 * 2
        for i in range(0, len(conv.pcm), step):
            track.push(conv.pcm[i : i + step])
        track.finish()
    finally:
        di.HOP_MS = old
    return seen["e"], seen["w"]


def load(
    seed: int, hop_ms: int, n: int = 30, sizes: Sequence[int] = (2, 3)
) -> list[tuple[Conversation, np.ndarray, list]]:
    """Each conversation of ``seed`` (of ``sizes`` speakers) with its embeddings and windows at ``hop_ms``, by the
    speaker model the server would run (cached per model)."""
    from voxbeam.server.engines import speaker_encoder

    label = _label()
    cache_dir = CACHE / label.partition("@")[0]
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"seed{seed}-n{n}{'' if tuple(sizes) == (2, 3) else '-' + ''.join(map(str, sizes))}.pkl"
    store: dict[str, dict] = pickle.loads(path.read_bytes()) if path.exists() else {}
    convs = conversations(human_corpus.load("full"), n, seed, sizes)
    encoder: Any = None
    out = []
    changed = False
    for c in convs:
        cache = store.setdefault(c.id, {})
        size = len(cache)
        if encoder is None:
            encoder = _Lazy(lambda: speaker_encoder(label))
        e, w = track_windows(c, encoder, cache, hop_ms)
        changed |= len(cache) != size
        out.append((c, e, w))
    if changed:
        path.write_bytes(pickle.dumps(store))
    return out


@functools.cache
def _label() -> str:
    """The speaker model the server would run (its ``diarizer`` label), looked up and hashed once."""
    from voxbeam.server.engines import diarizer

    label, said = diarizer()
    if label is None:
        raise SystemExit(said)
    return label


class _Lazy:
    def __init__(self, make: Callable[[], Any]) -> None:
        self.make, self.obj = make, None

    def embed_windows(self, pcm: np.ndarray, windows: Sequence[tuple[int, int]]) -> np.ndarray:
        if self.obj is None:
            self.obj = self.make()
        return self.obj.embed_windows(pcm, windows)


def pieces(conv: Conversation) -> list[tuple[int, int, str]]:
    """The stand-ins for words: PIECE_MS pieces of each reference turn, those with speech in them (a turn's own
    pauses carry no words)."""
    x = np.frombuffer(conv.pcm, dtype="<i2").astype(np.float64) / 32768
    out = []
    for a, b, s in conv.turns:
        for t in range(a, b - PIECE_MS // 2, PIECE_MS):
            piece = x[t * 16 : min(t + PIECE_MS, b) * 16]
            if 20 * np.log10(max(float(np.sqrt(np.mean(piece**2))), 1e-10)) > SPEECH_DBFS:
                out.append((t, min(t + PIECE_MS, b), s))
    return out


def score(conv: Conversation, turns: Sequence[Any]) -> tuple[int, float]:
    """The number of speakers the pieces carry, and the share of pieces on the right speaker."""
    from voxbeam.server.engines.diarization import assign_words

    ps = pieces(conv)
    labels = assign_words([(a, b) for a, b, _ in ps], turns)
    pairs = [(h or "?", r) for h, (_, _, r) in zip(labels, ps, strict=True)]
    mapping = _best_mapping(pairs)
    return len({h for h, _ in pairs}), sum(mapping[h] == r for h, r in pairs) / len(pairs)


def evaluate(data: Sequence[tuple[Conversation, np.ndarray, list]], **options: Any) -> dict[str, Any]:
    """Count right, words right (count free and given) over ``data``, diarized with ``options``."""
    from voxbeam.server.engines import speaker_loader
    from voxbeam.server.engines.diarization import diarize

    options.setdefault("one_speaker", speaker_loader(_label()).one_speaker)  # type: ignore[attr-defined]
    found, free, given = [], [], []
    for c, e, w in data:
        k = len(c.speakers)
        n, right = score(c, diarize(e, w, **options))
        found.append(n)
        free.append(right)
        given.append(score(c, diarize(e, w, min_speakers=k, max_speakers=k, **options))[1])
    truth = [len(c.speakers) for c, _, _ in data]
    talk = [sum(b - a for a, b, _ in c.turns) for c, _, _ in data]
    return {
        "count_right": sum(f == t for f, t in zip(found, truth, strict=True)),
        "n": len(data),
        "words_free": float(np.average(free, weights=talk)),
        "words_given": float(np.average(given, weights=talk)),
        "found": found,
        "truth": truth,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.diarization_offline", description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, action="append", help=f"conversations' seed (default {SEED}); repeatable")
    p.add_argument("--hop-ms", type=int, help="windows' hop (default the server's)")
    p.add_argument("--n", type=int, default=30, help="conversations per seed")
    p.add_argument("--speakers", type=int, nargs="+", default=[2, 3], help="speakers per conversation")
    args = p.parse_args(argv)
    from voxbeam.server.engines.diarization import HOP_MS

    hop = args.hop_ms or HOP_MS
    for seed in args.seed or [SEED]:
        r = evaluate(load(seed, hop, args.n, args.speakers))
        wrong = [(f, t) for f, t in zip(r["found"], r["truth"], strict=True) if f != t]
        print(
            f"seed {seed} hop {hop} ms: count right {r['count_right']}/{r['n']}, words right {r['words_free']:.3f} "
            f"free, {r['words_given']:.3f} given; wrong (found, true): {wrong}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
