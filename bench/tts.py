"""Server TTS: characters per second at several concurrent sessions against eSpeak NG called
directly (baseline 2) with the same number of processes and the same texts in flight.
"""

from __future__ import annotations

import asyncio
import io
import math
import time
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench import baselines, corpus
from bench._common import CpuMeter, MemSampler, Result, log, median, ratio
from bench._context import Context

NAME = "tts"
TARGET_THROUGHPUT = 0.8
VOICE_ID = "vl-andrew"  # eSpeak NG en-us+klatt4 at 175 wpm: what baseline 2 renders
# eSpeak NG's own output rate: asked of the server, it yields the same audio as baseline 2 (no
# resampling), so the ratio measures the server. 16 kHz, which needs resampling, is measured too.
NATIVE_RATE = 22050
OTHER_RATE = 16000


@dataclass
class SynthRun:
    wall: float
    client_cpu: float
    server_cpu: float
    chars: int
    audio_seconds: float
    server_peak_rss: float


def wav_seconds(data: bytes) -> float:
    with wave.open(io.BytesIO(data), "rb") as w:
        return w.getnframes() / w.getframerate()


async def _synthesize_all(cfg: Any, texts: Sequence[str], concurrency: int, server_pid: int, rate: int) -> SynthRun:
    from voxbeam.client import SpeechClient

    seconds = [0.0] * len(texts)
    async with SpeechClient(cfg) as client:
        await asyncio.gather(*(client.synthesize("Ready.", voice_id=VOICE_ID) for _ in range(concurrency)))
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(len(texts)):
            queue.put_nowait(i)

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                result = await client.synthesize(texts[i], voice_id=VOICE_ID, format="wav", sample_rate=rate)
                seconds[i] = wav_seconds(result.audio)

        meter = CpuMeter([server_pid]).start()
        with MemSampler([server_pid], interval=0.5) as mem:
            c0, t0 = time.process_time(), time.monotonic()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            wall, cpu = time.monotonic() - t0, time.process_time() - c0
        server_cpu = meter.stop()
    return SynthRun(wall, cpu, server_cpu, sum(len(t) for t in texts), sum(seconds), mem.peak_rss)


def server_run(ctx: Context, texts: Sequence[str], concurrency: int, rate: int = NATIVE_RATE) -> SynthRun:
    from bench.stt import PATIENT
    from voxbeam.client import Timeouts

    server = ctx.server()
    ctx.wait_idle()
    config = ctx.client_config(pool_size=concurrency, timeouts=Timeouts(**PATIENT))
    return asyncio.run(_synthesize_all(config, texts, concurrency, server.pid, rate))


def run(ctx: Context) -> Result:
    res = Result(NAME, ctx.quick)
    ctx.server()
    procs = ctx.server_workers or ctx.workers
    levels = (1, 8) if ctx.quick else (1, 2, 8, 32)
    texts = corpus.texts(200 if ctx.quick else 600, 2)
    reps = 1 if ctx.quick else 2
    res.config = {
        "server_workers": procs,
        "baseline_processes": procs,
        "levels": list(levels),
        "texts": len(texts),
        "characters": sum(map(len, texts)),
        "voice_id": VOICE_ID,
        "espeak_voice": corpus.VOICE,
        "wpm": corpus.WPM,
        "format": f"wav at {NATIVE_RATE} Hz, eSpeak's own rate (server); raw PCM at that rate (baseline)",
        "repeats": reps,
    }
    res.notes.append(
        "Baseline 2 renders raw PCM at eSpeak NG's own rate (22050 Hz) and returns only its length; the server "
        "renders the same audio, wraps a WAV file, base64-encodes and sends it, and the client decodes it. "
        f"At {OTHER_RATE} Hz the server also resamples (PyAV), which costs about a quarter of eSpeak's own time: "
        "that figure is listed too, against the same baseline."
    )
    tasks = [(t, corpus.VOICE, corpus.WPM) for t in texts]
    chars = sum(map(len, texts))
    curves: dict[str, list[float]] = {"sessions": [], "server": [], "baseline": [], "baseline_full_pool": []}
    client_cpu = server_cpu = 0.0
    with baselines.EnginePool("tts", procs) as pool:
        full = pool.run(tasks)
        full_tput = chars / full.wall
        res.measure("baseline2_full_pool_chars_per_s", full_tput, "chars / s", "baseline 2, all processes busy")
        res.measure("baseline2_chars_per_cpu_s", chars / full.cpu, "chars / CPU s", "baseline 2")
        res.measure("baseline2_audio_seconds", full.units, "s", "audio baseline 2 rendered")
        last: SynthRun | None = None
        for c in levels:
            base_t: list[float] = []
            serv_t: list[float] = []
            for _ in range(reps):
                b = pool.run(tasks, in_flight=min(c, procs))
                base_t.append(chars / b.wall)
                last = server_run(ctx, texts, c)
                serv_t.append(last.chars / last.wall)
                client_cpu += last.client_cpu
                server_cpu += last.server_cpu
                log(f"tts c={c}: baseline {base_t[-1]:.0f} chars/s, server {serv_t[-1]:.0f} chars/s")
            assert last is not None
            bt, st = median(base_t), median(serv_t)
            res.measure(f"server_c{c}_chars_per_s", st, "chars / s", f"server, {c} sessions")
            res.measure(f"baseline2_c{c}_chars_per_s", bt, "chars / s", f"baseline 2, {min(c, procs)} in flight")
            res.measure(
                f"server_c{c}_chars_per_server_cpu_s",
                last.chars / last.server_cpu if last.server_cpu else math.nan,
                "chars / CPU s",
                f"server efficiency at {c} sessions",
            )
            res.measure(f"server_c{c}_peak_rss_mib", last.server_peak_rss / 2**20, "MiB", f"server RSS, {c} sessions")
            res.compare(
                f"throughput_c{c}",
                f"TTS server chars/s at {c} sessions vs baseline 2 ({min(c, procs)} in flight, {procs} processes)",
                ratio(st, bt),
                TARGET_THROUGHPUT,
                subject=f"server_c{c}_chars_per_s",
                baseline=f"baseline2_c{c}_chars_per_s",
            )
            curves["sessions"].append(c)
            curves["server"].append(st)
            curves["baseline"].append(bt)
            curves["baseline_full_pool"].append(full_tput)
        assert last is not None
        res.measure("server_audio_seconds", last.audio_seconds, "s", "audio the server rendered (same texts)")
        c = max(levels)
        other = server_run(ctx, texts, c, OTHER_RATE)
        res.measure(f"server_c{c}_{OTHER_RATE}_chars_per_s", other.chars / other.wall, "chars / s", f"{OTHER_RATE} Hz")
        res.compare(
            f"throughput_c{c}_{OTHER_RATE}hz",
            f"TTS server chars/s at {c} sessions, {OTHER_RATE} Hz (resampled) vs baseline 2",
            ratio(other.chars / other.wall, res.value(f"baseline2_c{c}_chars_per_s")),
            None,
            subject=f"server_c{c}_{OTHER_RATE}_chars_per_s",
            baseline=f"baseline2_c{c}_chars_per_s",
            note="informational: includes resampling that baseline 2 does not do",
        )
        res.compare(
            "same_work",
            "audio seconds rendered by the server / by baseline 2 (sanity check: same voice and rate)",
            ratio(last.audio_seconds, full.units),
            None,
            subject="server_audio_seconds",
            baseline="baseline2_audio_seconds",
        )
    res.measure("client_cpu_s", client_cpu, "CPU s", "SpeechClient process CPU over all levels")
    res.measure("server_cpu_s", server_cpu, "CPU s", "server tree CPU over all levels")
    res.compare(
        "client_cpu_share",
        "client CPU / server CPU (TTS, all levels)",
        ratio(client_cpu, server_cpu),
        None,
        "<=",
        subject="client_cpu_s",
        baseline="server_cpu_s",
        note="informational: the 2% target is stated for transcription",
    )
    res.series["throughput"] = curves
    from bench import plots

    res.plots.append(plots.throughput(ctx.plots_dir / "tts_throughput.png", curves, "TTS", "characters / wall s"))
    return res
