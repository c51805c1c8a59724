"""Accuracy floor of the OpenAI-compatible API (issue 31): word error rate through ``POST /v1/audio/transcriptions``
against the Beam job's (``voxbeam transcribe --endpoint``) on the same real recordings and the same server.

    python -m bench.openai_wer [--subset ci|full] [--concurrency 4] [--out results.json]

One ``voxbeam serve`` (default model, 2 workers); the job transcribes the corpus' WAVs into Parquet, the official
``openai`` client posts each WAV (``model=whisper-1``, ``response_format=json``), two at once (a 503 from
admission by load is retried after its Retry-After, as the client does by itself). Both sets of
texts are scored with :mod:`bench.wer`'s normalisation against the references; the floor is
``|WER(http) - WER(job)| <= 0.005``. Prints one JSON document (and writes it to ``--out``), with every clip
whose two texts differ.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import tempfile
import time
from pathlib import Path

FLOOR = 0.005


def main() -> None:
    from openai import OpenAI

    from bench import human_corpus, wer
    from bench.accuracy import hyps_from_rows, read_transcripts, transcribe_cli
    from voxbeam.server.launcher import LocalServer

    ap = argparse.ArgumentParser(prog="python -m bench.openai_wer", description=__doc__.split("\n\n")[0])
    ap.add_argument("--subset", default="ci", choices=["ci", "full"])
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    clips = human_corpus.load(args.subset, log=lambda _: None)
    with tempfile.TemporaryDirectory() as tmp, LocalServer(workers=2, env={"HF_HUB_OFFLINE": "1"}) as srv:
        in_dir, out_dir = Path(tmp) / "in", Path(tmp) / "out"
        by_name = human_corpus.link_into(list(clips), in_dir)
        job_wall = transcribe_cli(in_dir, out_dir, endpoint=srv.url, api_key=srv.api_key)
        job = {cid: h.text for cid, h in hyps_from_rows(read_transcripts(out_dir), by_name).items()}
        client = OpenAI(base_url=f"http://127.0.0.1:{srv.port}/v1", api_key=srv.api_key, max_retries=20, timeout=600)

        def post(clip: human_corpus.Clip) -> str:
            with open(clip.path, "rb") as fh:
                return client.audio.transcriptions.create(model="whisper-1", file=fh).text

        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
            http = dict(zip([c.id for c in clips], pool.map(post, clips), strict=True))
        http_wall = time.monotonic() - t0
    both = [c for c in clips if c.id in job]
    refs = [c.text for c in both]
    wer_job = wer.wer(refs, [job[c.id] for c in both])
    wer_http = wer.wer(refs, [http[c.id] for c in both])
    doc = {
        "subset": args.subset,
        "clips": len(clips),
        "scored": len(both),
        "audio_s": round(sum(c.duration for c in clips), 1),
        "wer_job": round(wer_job, 4),
        "wer_http": round(wer_http, 4),
        "difference": round(wer_http - wer_job, 4),
        "floor": FLOOR,
        "passed": abs(wer_http - wer_job) <= FLOOR,
        "identical_texts": sum(job[c.id] == http[c.id] for c in both),
        "differing": [{"clip": c.id, "job": job[c.id], "http": http[c.id]} for c in both if job[c.id] != http[c.id]],
        "missing_from_job": [c.id for c in clips if c.id not in job],
        "job_wall_s": round(job_wall, 1),
        "http_wall_s": round(http_wall, 1),
    }
    text = json.dumps(doc, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
