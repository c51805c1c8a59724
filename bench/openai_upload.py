"""Memory floor of the OpenAI-compatible API (issue 31): a 200 MB upload to ``/v1/audio/transcriptions`` raises the
server's memory (the front and its workers, resident) by at most 300 MB.

    python -m bench.openai_upload [--mb 200] [--decode_s 30]

A WAV of ``--mb`` MB (a real recording, repeated) is posted with curl to a fresh ``voxbeam serve --max_upload_mb``
(1 worker); the server's memory is sampled every 0.1 s through the upload (spooled to disk) and ``--decode_s``
seconds of its decoding (streamed from the spool through the session, 100 s of audio buffered at most);
then curl is stopped, and the bench checks that the server ends the session (the client is gone) and deletes
the spooled file. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import threading
import time
import wave
from pathlib import Path

import psutil

MIB = 1 << 20


def _rss(pid: int) -> int:
    root = psutil.Process(pid)
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total


def _wav(path: Path, mb: int) -> float:
    from bench import human_corpus
    from voxbeam import audio

    clips = human_corpus.load("ci", log=lambda _: None)
    pcm = b"".join(b"".join(audio.decode_to_pcm(c.path, 16000)) for c in clips[:10])
    frames = mb * 1_000_000 // 2
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        written = 0
        while written < frames:
            piece = pcm[: (frames - written) * 2]
            w.writeframes(piece)
            written += len(piece) // 2
    return frames / 16000


def main() -> None:
    from voxbeam.server.launcher import LocalServer

    ap = argparse.ArgumentParser(prog="python -m bench.openai_upload", description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--decode_s", type=float, default=30.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wav, spool = Path(tmp) / "big.wav", Path(tmp) / "spool"
        spool.mkdir()
        audio_s = _wav(wav, args.mb)
        extra = ["--max_upload_mb", str(args.mb + 10), "--upload_dir", str(spool)]
        with LocalServer(workers=1, extra_args=extra) as srv:
            assert srv.pid is not None
            time.sleep(5)
            baseline = _rss(srv.pid)
            peak, stop = [baseline], threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    peak[0] = max(peak[0], _rss(srv.pid))
                    time.sleep(0.1)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            url = f"http://127.0.0.1:{srv.port}/v1/audio/transcriptions"
            t0 = time.monotonic()
            curl = subprocess.Popen(
                ["curl", "-sS", url, "-H", f"X-Api-Key: {srv.api_key}", "-F", f"file=@{wav}", "-o", os.devnull],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            uploaded = None
            while curl.poll() is None and time.monotonic() - t0 < 600:
                if uploaded is None and srv.health()["stt_sessions"] > 0:
                    uploaded = time.monotonic() - t0  # spooled: the session has started
                if uploaded is not None and time.monotonic() - t0 > uploaded + args.decode_s:
                    break
                time.sleep(0.2)
            curl.terminate()
            curl.wait()
            deadline = time.monotonic() + 30
            while srv.health()["stt_sessions"] and time.monotonic() < deadline:
                time.sleep(0.2)
            ended = srv.health()["stt_sessions"] == 0
            stop.set()
            sampler.join()
            left = os.listdir(spool)
    doc = {
        "upload_mb": args.mb,
        "audio_s": round(audio_s),
        "upload_s": round(uploaded, 1) if uploaded else None,
        "decoded_for_s": args.decode_s,
        "baseline_mib": baseline // MIB,
        "peak_mib": peak[0] // MIB,
        "raised_mib": (peak[0] - baseline) // MIB,
        "raised_mb": round((peak[0] - baseline) / 1e6),
        "floor_mb": 300,
        "passed": peak[0] - baseline <= 300_000_000,
        "session_ended_after_client_left": ended,
        "spool_files_left": left,
    }
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
