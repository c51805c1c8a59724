"""Throughput floor of the OpenAI-compatible API (issue 31): 8 concurrent uploads to ``/v1/audio/transcriptions``
reach at least 0.9 of the throughput of the same files through the WebSocket bulk path.

    python -m bench.openai_throughput [--files 8] [--seconds 30] [--reps 2]

One ``voxbeam serve`` (2 workers, ``--max_queue_s 600`` so that neither path is refused by admission by load and
retried); ``--files`` WAVs of ``--seconds`` of the corpus's real speech each. WebSocket: VoxBeam's client with
a pool of as many sessions, the WAVs decoded client-side as the jobs do; HTTP: the official ``openai`` client
in as many threads, the WAVs decoded server-side. The two are alternated ``--reps`` times; audio s/s each,
median. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import statistics
import tempfile
import time
import wave
from pathlib import Path

FLOOR = 0.9


def main() -> None:
    from openai import OpenAI

    from bench import human_corpus
    from voxbeam import audio
    from voxbeam.client import ClientConfig, SpeechClient
    from voxbeam.server.launcher import LocalServer

    ap = argparse.ArgumentParser(prog="python -m bench.openai_throughput", description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()
    clips = human_corpus.load("ci", log=lambda _: None)
    speech = b"".join(b"".join(audio.decode_to_pcm(c.path, 16000)) for c in clips)
    per = int(args.seconds * 16000) * 2
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(args.files):
            start = (i * per // 3) % max(2, len(speech) - per) // 2 * 2
            path = Path(tmp) / f"f{i}.wav"
            with wave.open(str(path), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(16000)
                w.writeframes((speech * 2)[start : start + per])
            paths.append(path)
        audio_s = args.files * args.seconds
        with LocalServer(workers=2, extra_args=["--max_queue_s", "600"]) as srv:
            client = OpenAI(base_url=f"http://127.0.0.1:{srv.port}/v1", api_key=srv.api_key, timeout=900)

            def post(path: Path) -> str:
                with open(path, "rb") as fh:
                    return client.audio.transcriptions.create(model="whisper-1", file=fh).text

            async def websocket() -> list[str]:
                cfg = ClientConfig(endpoints=(srv.url,), api_key=srv.api_key, pool_size=args.files)
                async with SpeechClient(cfg) as c:
                    pcms = [b"".join(audio.decode_to_pcm(str(p), 16000)) for p in paths]
                    results = await asyncio.gather(*(c.transcribe(p, sample_rate=16000) for p in pcms))
                    return [r.text for r in results]

            post(paths[0])  # warm: models loaded, a decode done
            runs: dict[str, list[float]] = {"websocket": [], "http": []}
            texts: dict[str, list[str]] = {}
            for _ in range(args.reps):
                t0 = time.monotonic()
                texts["websocket"] = asyncio.run(websocket())
                runs["websocket"].append(audio_s / (time.monotonic() - t0))
                t0 = time.monotonic()
                with concurrent.futures.ThreadPoolExecutor(args.files) as pool:
                    texts["http"] = list(pool.map(post, paths))
                runs["http"].append(audio_s / (time.monotonic() - t0))
                print(json.dumps({k: v[-1] for k, v in runs.items()}), flush=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    ratio = med["http"] / med["websocket"]
    doc = {
        "files": args.files,
        "seconds_per_file": args.seconds,
        "reps": args.reps,
        "runs_audio_s_per_s": runs,
        "median_audio_s_per_s": med,
        "http_over_websocket": round(ratio, 3),
        "floor": FLOOR,
        "passed": ratio >= FLOOR,
        "same_texts": sum(a == b for a, b in zip(texts["websocket"], texts["http"], strict=True)),
    }
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
