"""Baseline 4, the transport alone: base64 JSON audio frames over a local WebSocket to a server
that only parses and acknowledges them (no engine), and VoxBeam's client over that same server.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from bench import baselines, corpus
from bench._common import CpuMeter, Result, log, median, ratio
from bench._context import Context

NAME = "transport"
STREAMS = 8


async def _client_over(url: str, pcms: Sequence[bytes], concurrency: int) -> tuple[float, float]:
    """VoxBeam's SpeechClient against the ack server: (wall, client CPU) for all PCMs."""
    from voxbeam.client import ClientConfig, SpeechClient

    cfg = ClientConfig(endpoints=(url,), api_key="bench", pool_size=concurrency)
    async with SpeechClient(cfg) as client:
        await asyncio.gather(*(client.transcribe(corpus.silence(0.1)) for _ in range(concurrency)))
        c0, t0 = time.process_time(), time.monotonic()
        await asyncio.gather(*(client.transcribe(p, sample_rate=corpus.STT_RATE) for p in pcms))
        return time.monotonic() - t0, time.process_time() - c0


def run(ctx: Context) -> Result:
    res = Result(NAME, ctx.quick)
    seconds_per_stream = 60.0 if ctx.quick else 600.0
    reps = 3 if ctx.quick else 5
    speech = corpus.utterance(list(corpus.SENTENCES[:8]))
    per = int(seconds_per_stream * corpus.STT_RATE) * 2
    pcm = (speech * (per // len(speech) + 1))[:per]
    pcms = [pcm] * STREAMS
    audio_s = STREAMS * seconds_per_stream
    res.config = {
        "streams": STREAMS,
        "seconds_per_stream": seconds_per_stream,
        "chunk_ms": 100,
        "ack_every_frames": baselines.ACK_EVERY,
        "repeats": reps,
        "frame_bytes": len(corpus.chunks(pcm, 100)[0]),
    }
    raw_t: list[float] = []
    raw_cpu: list[float] = []
    ack_cpu: list[float] = []
    cli_t: list[float] = []
    cli_cpu: list[float] = []
    with baselines.AckServer() as ack:
        for _ in range(reps):
            meter = CpuMeter([ack.pid]).start()
            wall, cpu = baselines.raw_transport(ack.url, pcms)
            ack_cpu.append(meter.stop())
            raw_t.append(audio_s / wall)
            raw_cpu.append(cpu)
            wall, cpu = asyncio.run(_client_over(ack.url, pcms, STREAMS))
            cli_t.append(audio_s / wall)
            cli_cpu.append(cpu)
            log(f"transport: raw {raw_t[-1]:.0f} audio s/s, client {cli_t[-1]:.0f} audio s/s")
    raw, cli = median(raw_t), median(cli_t)
    res.measure("raw_audio_s_per_s", raw, "audio s / s", f"pre-encoded frames, {STREAMS} connections (baseline 4)")
    res.measure("raw_mb_per_s", raw * corpus.STT_RATE * 2 * 4 / 3 / 1e6, "MB / s", "base64 payload on the wire")
    res.measure(
        "raw_sender_cpu_s_per_audio_hour", median(raw_cpu) / audio_s * 3600, "CPU s / audio h", "baseline 4 sender"
    )
    res.measure(
        "ack_server_cpu_s_per_audio_hour", median(ack_cpu) / audio_s * 3600, "CPU s / audio h", "parsing frames"
    )
    res.measure("client_audio_s_per_s", cli, "audio s / s", f"SpeechClient, {STREAMS} sessions, same server")
    res.measure(
        "client_cpu_s_per_audio_hour",
        median(cli_cpu) / audio_s * 3600,
        "CPU s / audio h",
        "SpeechClient CPU: encoding, framing, sending, flow control",
    )
    res.compare(
        "client_vs_transport",
        "VoxBeam client over the transport-only server vs the transport alone (audio s/s)",
        ratio(cli, raw),
        None,
        subject="client_audio_s_per_s",
        baseline="raw_audio_s_per_s",
        note="informational: how much of the wire's capacity the client's framing and flow control keep",
    )
    res.series["raw_audio_s_per_s"] = raw_t
    res.series["client_audio_s_per_s"] = cli_t
    return res
