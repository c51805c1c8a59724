"""VoxBeam's benchmark suite: every figure is a ratio against a baseline measured in the same run.

    python -m bench [--quick] [NAME ...]

Baselines: (1) faster-whisper and (2) Piper called directly in a pool of as many processes as
the server has workers, (3) the naive client the spec's examples suggest, (4) the transport alone.
Results go to ``bench/results/<name>.json`` and ``bench/results/REPORT.md`` with PNG plots.
"""

from __future__ import annotations

# name -> (module, one-line description); run in this order.
BENCHMARKS: dict[str, tuple[str, str]] = {
    "transport": ("bench.transport", "baseline 4: audio frames over a WebSocket with no engine; the client over it"),
    "stt": ("bench.stt", "server STT throughput at 1/2/8/32 sessions, client CPU, flush p95, memory at 16"),
    "tts": ("bench.tts", "server TTS characters per second against Piper directly; time to first audio"),
    "pipeline": ("bench.pipeline", "transcription pipeline on dense speech against faster-whisper and pocketsphinx"),
    "synthesis": ("bench.synthesis", "synthesis pipeline against Piper directly"),
    "intelligibility": ("bench.intelligibility", "default voice's WER by Whisper base, eSpeak's best English beside"),
    "longfile": ("bench.longfile", "pipeline memory over time on a long file (2 hours in full mode)"),
    "fleet": ("bench.fleet", "simulated workers on the real pool against 1/2/4 stub replicas; replica memory"),
    "accuracy": ("bench.accuracy", "WER and word timings on real human speech: voxbeam vs faster-whisper directly"),
    "recognition": (
        "bench.recognition",
        "hotwords and prompt, candidate languages, translation, model tiers on real recordings (issue 29)",
    ),
    "redaction": (
        "bench.redaction",
        "per-type recall and precision of --redact on spoken personal data end to end; its CPU cost (issue 30)",
    ),
    "diarization": (
        "bench.diarization",
        "speaker count, words to speakers, DER and CPU on conversations of real people (issue 28)",
    ),
    "channels": (
        "bench.channels",
        "stereo calls of two real people with crosstalk: words on the right channel, WER vs alone, split vs mix cost",
    ),
    "client": ("bench.client_bench", "the client engineer's benchmarks (bench/client_bench.py), when present"),
    "chaos": ("bench.chaos", "transcription pipeline while the server is killed and down for 30 s and 120 s"),
    "fairness": ("bench.fairness", "one key's flood or overload against another key's 3 s request; live admission"),
    "live": ("bench.live", "live captioning: 2/4 real-time streams, beside a bulk job; flush, finals, partial lag"),
    "soak": ("bench.soak", "one replica with the k8s settings: one adversarial record, then 15 min of mixed load"),
    "streaming": ("bench.streaming", "Pub/Sub stream at 0.5x, 1.5x batch capacity: latency, drain, memory, faults"),
}
# Left out of a bare ``--quick`` run (name them to run them): client_bench's quick mode streams
# 15 minutes of audio, and chaos's kills and restarts a server, each longer than the two minutes
# --quick is for; live's streams run 3 minutes at real time; streaming's runs a stream for minutes
# on the Pub/Sub emulator.
NOT_IN_QUICK = {"client", "chaos", "live", "soak", "streaming"}
