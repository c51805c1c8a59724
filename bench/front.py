"""The HTTP front's cost to the WebSocket bulk path: the same bulk STT sessions against `voxbeam serve` from
two source trees, run alternately in one process (old, new, old, new...), so the machine's load falls on both.

    python -m bench.front --old /tmp/voxbeam-c5319ad [--new .] [--reps 3] [--seconds 60] [--streams 8]

``--old`` is a tree holding the `voxbeam` package of the front to compare against (``git archive c5319ad
voxbeam | tar -x -C DIR``). For each run: audio seconds per second over all streams (the floor: new/old >= 0.97),
and the front process's own CPU seconds (not its workers') per audio second: the front's cost, which
decoding time does not hide. Real human speech (the corpus' ci subset, bench/human_corpus.py), each stream
the clips one after another up to ``--seconds``. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

import psutil


def _speech(seconds: float) -> bytes:
    from bench import human_corpus
    from voxbeam import audio

    clips = human_corpus.load("ci", log=lambda _: None)
    out = bytearray()
    while len(out) < seconds * 32000:
        for clip in clips:
            out += b"".join(audio.decode_to_pcm(clip.path, 16000))
            if len(out) >= seconds * 32000:
                break
    return bytes(out[: int(seconds * 32000) // 2 * 2])


async def _transcribe(url: str, key: str, pcm: bytes, streams: int) -> float:
    from voxbeam.client import ClientConfig, SpeechClient

    cfg = ClientConfig(endpoints=(url,), api_key=key, pool_size=streams)
    async with SpeechClient(cfg) as client:
        t0 = time.monotonic()
        await asyncio.gather(*(client.transcribe(pcm, sample_rate=16000) for _ in range(streams)))
        return time.monotonic() - t0


def _run(tree: Path, pcm: bytes, streams: int) -> dict[str, float]:
    from voxbeam.server.launcher import LocalServer

    with LocalServer(workers=2, env={"PYTHONPATH": str(tree)}) as srv:
        assert srv.pid is not None
        front = psutil.Process(srv.pid)
        asyncio.run(_transcribe(srv.url, srv.api_key, pcm[:32000], 1))  # warm: models loaded, a decode done
        cpu0 = sum(front.cpu_times()[:2])
        wall = asyncio.run(_transcribe(srv.url, srv.api_key, pcm, streams))
        cpu = sum(front.cpu_times()[:2]) - cpu0
    audio_s = streams * len(pcm) / 32000
    return {"audio_s_per_s": audio_s / wall, "front_cpu_per_audio_s": cpu / audio_s, "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.front", description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", type=Path, required=True, help="a tree with the old front's voxbeam package")
    ap.add_argument("--new", type=Path, default=Path.cwd(), help="a tree with the new front's (default: .)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=60.0, help="audio per stream")
    ap.add_argument("--streams", type=int, default=8)
    args = ap.parse_args()
    pcm = _speech(args.seconds)
    runs: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
    for _ in range(args.reps):
        for name in ("old", "new"):
            runs[name].append(_run(getattr(args, name).resolve(), pcm, args.streams))
            print(name, json.dumps(runs[name][-1]), flush=True)
    med = {n: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for n, rs in runs.items()}
    doc = {
        "config": {"reps": args.reps, "seconds_per_stream": args.seconds, "streams": args.streams, "workers": 2},
        "runs": runs,
        "median": med,
        "throughput_new_over_old": med["new"]["audio_s_per_s"] / med["old"]["audio_s_per_s"],
        "front_cpu_new_over_old": med["new"]["front_cpu_per_audio_s"] / med["old"]["front_cpu_per_audio_s"],
    }
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
