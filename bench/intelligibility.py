"""Intelligibility of the default voice, judged by an engine that did not make the audio.

Sixty English sentences written for this benchmark (not in ``bench/corpus.py`` or ``tests/``, and
not used to pick any voice) are rendered by ``voxbeam synthesize`` (``voxbeam.jobs.run("synthesize")``
in a child process, against the run's LocalServer, WAV at 16 kHz): with the default voice (no
``--voice_id``: Piper ``vl-joe``) and, in the same job (a ``voice_id`` per record), with every
English eSpeak NG voice of the catalog. Each voice's files are transcribed by faster-whisper
called directly with the multilingual Whisper ``base`` model (``voxbeam[multilingual]``; the
server's own model is ``tiny.en``), English, beam 5, and scored by word error rate after
``corpus.normalize`` (lower case, digits and ordinals as words, punctuation dropped).

To keep the run short, a voice's sentences are transcribed in windows of up to 28 s (whole
sentences, half a second of silence between them), one Whisper decode per window instead of one
padded 30 s window per sentence; the WER is over all words of the voice.

eSpeak's best English voice is found in two steps (full mode): every English eSpeak voice of
the catalog on the first 10 sentences, then the two best of those on all sixty; the best of the
two is reported beside the default voice. It is picked by its WER on these same sentences, which
flatters eSpeak: the comparison is conservative.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from bench import corpus
from bench._common import Result, log, ratio
from bench._context import Context, run_job

NAME = "intelligibility"
TARGET_WER = 0.04
DEFAULT_VOICE = corpus.VOICE_ID
RATE = 16000
WINDOW_S = 28.0
GAP_S = 0.5
# eSpeak voices are screened on the first sentences; the best few are scored on all of them.
SCREEN_SENTENCES = 10
FINALISTS = 2

SENTENCES = (
    "My grandmother grows tomatoes and peppers in her back garden.",
    "The bus driver waited until everyone had found a seat.",
    "Could you pass me the salt and the black pepper?",
    "We painted the kitchen a pale shade of yellow last spring.",
    "The library will be closed on Monday for repairs.",
    "He carried two heavy boxes up the narrow stairs.",
    "Our neighbors adopted a small brown puppy from the shelter.",
    "The museum opens its new exhibition on ancient maps next week.",
    "She wrote a short letter to thank her former teacher.",
    "I left my umbrella on the train this morning.",
    "The bakery on the corner sells fresh bread every day.",
    "Turn left at the traffic lights and park behind the bank.",
    "The pilot announced that we would land in twenty minutes.",
    "Please remember to water the plants while I am away.",
    "The soup needs a little more salt and some fresh herbs.",
    "Twelve students signed up for the photography course.",
    "They walked along the beach until the sun went down.",
    "The old bridge was rebuilt with steel and concrete.",
    "A strong wind knocked over the fence in our yard.",
    "Do you know what time the pharmacy closes tonight?",
    "He fixed the broken chair with glue and a few nails.",
    "The concert was so loud that my ears were ringing.",
    "We ordered a large pizza with mushrooms and olives.",
    "The nurse checked his temperature and blood pressure.",
    "Fresh snow covered the mountains after the storm.",
    "My cousin is studying chemistry at the university.",
    "The farmer sold eggs and honey at the weekly market.",
    "Please write your name at the top of the page.",
    "The elevator is out of order, so take the stairs.",
    "She found an old photograph hidden inside the book.",
    "The team practiced for three hours in the rain.",
    "We need forty chairs for the meeting on Thursday.",
    "The river flooded the fields after a week of heavy rain.",
    "Can you help me carry the groceries to the car?",
    "The waiter brought us water and a basket of bread.",
    "He always drinks a glass of orange juice with breakfast.",
    "The airport was crowded because of the holiday weekend.",
    "Our flight to Chicago was delayed by two hours.",
    "The scientist explained her findings in simple words.",
    "I borrowed a ladder from the man who lives next door.",
    "The cat slept all afternoon on the warm windowsill.",
    "The mechanic said the brakes need to be replaced.",
    "We watched a documentary about whales and dolphins.",
    "The hotel room had a lovely view of the harbor.",
    "Please do not forget to lock the back door.",
    "The price of the tickets includes lunch and a guided tour.",
    "She has been learning to play the violin since she was seven.",
    "The garden party was cancelled because of the thunderstorm.",
    "He sent the package by express mail on Tuesday.",
    "The children built a sandcastle with a deep moat.",
    "Our office moved to the fifth floor of a new building.",
    "The recipe calls for two cups of flour and one egg.",
    "A young deer crossed the road in front of our car.",
    "The doctor told him to rest and drink plenty of water.",
    "We stayed at a small cabin near the lake for a week.",
    "The shop around the corner repairs watches and clocks.",
    "My phone battery died in the middle of the call.",
    "The firefighters rescued a kitten from the tall tree.",
    "Everyone clapped when the band played its final song.",
    "The train to the coast leaves from platform six.",
)


def english_espeak_voices(health: dict[str, Any]) -> list[str]:
    """The catalog's eSpeak NG voices for English (en-US first, then en-GB), by id."""
    voices = health.get("voices") or []
    found = [
        v
        for v in voices
        if isinstance(v, dict) and v.get("engine") == "espeak" and str(v.get("language", "")).startswith("en")
    ]
    found.sort(key=lambda v: (v.get("language") != "en-US", str(v.get("id"))))
    return [str(v["id"]) for v in found]


def _model() -> tuple[Any, str]:
    """faster-whisper with the multilingual base model (tiny.en where base is not installed)."""
    from faster_whisper import WhisperModel

    from voxbeam.server.engines.whisper import WhisperEngine
    from voxbeam.server.errors import ModelError

    try:
        path, name = WhisperEngine.resolve("base").path, "base"
    except ModelError:
        path, name = WhisperEngine.resolve("tiny.en").path, "tiny.en"
    model = WhisperModel(path, device="cpu", compute_type="int8", cpu_threads=os.cpu_count() or 1)
    return model, name


def windows(pcms: list[bytes], texts: list[str]) -> list[tuple[bytes, str]]:
    """Whole sentences packed into windows of at most WINDOW_S seconds, GAP_S apart."""
    gap = b"\0\0" * int(GAP_S * RATE)
    limit = int(WINDOW_S * RATE) * 2
    out: list[tuple[bytes, str]] = []
    cur: list[bytes] = []
    said: list[str] = []
    for pcm, text in zip(pcms, texts, strict=True):
        size = sum(len(p) + len(gap) for p in cur)
        if cur and size + len(pcm) + len(gap) > limit:
            out.append((gap + gap.join(cur) + gap, " ".join(said)))
            cur, said = [], []
        cur.append(pcm[:limit])
        said.append(text)
    if cur:
        out.append((gap + gap.join(cur) + gap, " ".join(said)))
    return out


def transcribe(model: Any, pcm: bytes) -> str:
    import numpy as np

    audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    segments, _ = model.transcribe(
        audio,
        language="en",
        beam_size=5,
        vad_filter=False,
        condition_on_previous_text=False,
        without_timestamps=True,
    )
    return " ".join(s.text.strip() for s in segments)


def run(ctx: Context) -> Result:
    res = Result(NAME, ctx.quick)
    ctx.server()
    sentences = list(SENTENCES[:20] if ctx.quick else SENTENCES)
    espeak = english_espeak_voices(ctx.health())
    candidates = espeak[:1] if ctx.quick else espeak
    if not candidates:
        res.errors.append("the server's catalog has no English eSpeak NG voice")
    voices = [DEFAULT_VOICE, *candidates]
    records = _records(voices, sentences)
    src = ctx.workdir / "intelligibility-in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    out = ctx.workdir / "intelligibility-out"
    argv = ["--input", str(src), "--output", str(out), "--audio_format", "wav", "--sample_rate", str(RATE)]
    log(f"intelligibility: voxbeam synthesize, {len(sentences)} sentences x {len(voices)} voices")
    job = run_job(ctx, "synthesize", argv + ctx.endpoint_args())
    if job.out.get("written") != len(records):
        res.errors.append(f"the job wrote {job.out.get('written')} of {len(records)} records: {job.out}")
    screen = len(sentences) if ctx.quick else SCREEN_SENTENCES
    res.config = _config(sentences, voices, screen, job.wall)
    audio_dir = _audio_dir(out)
    model, model_name = _model()
    res.config["transcriber"] = f"faster-whisper, Whisper {model_name} (int8), not the model the server runs"
    scored, screening, finalists = _score_voices(model, audio_dir, voices, candidates, sentences, screen)
    wers = {v: corpus.wer(*scored[v]) for v in [DEFAULT_VOICE, *finalists]}
    for voice, wer in wers.items():
        res.measure(f"wer_{voice}", wer, "WER", f"{voice}: word error rate over {len(sentences)} sentences")
        log(f"intelligibility: {voice} WER {wer:.3f}")
    for voice, wer in screening.items():
        res.measure(f"screening_wer_{voice}", wer, "WER", f"{voice}: word error rate over the first {screen} sentences")
    res.series["wer"] = wers
    res.series["screening_wer"] = screening
    res.series["hypotheses"] = {v: scored[v][1] for v in wers}
    _compare(res, wers, finalists, candidates, len(sentences), model_name, ctx.quick)
    from bench import plots

    shown = {**{f"{v} (all {len(sentences)})": w for v, w in wers.items()}}
    if not ctx.quick:
        shown |= {f"{v} (first {screen})": w for v, w in screening.items()}
    res.plots.append(
        plots.bars(
            ctx.plots_dir / "intelligibility_wer.png",
            shown,
            f"word error rate (Whisper {model_name})",
            "Intelligibility of the voices",
        )
    )
    return res


def _records(voices: list[str], sentences: list[str]) -> list[dict[str, Any]]:
    """One synthesis record per voice and sentence, ids ``<voice>-<index>``."""
    records = []
    for voice in voices:
        for i, text in enumerate(sentences):
            record: dict[str, Any] = {"id": f"{voice}-{i:03d}", "text": text}
            if voice != DEFAULT_VOICE:  # the default voice is what the job picks with no voice_id
                record["voice_id"] = voice
            records.append(record)
    return records


def _config(sentences: list[str], voices: list[str], screen: int, job_wall: float) -> dict[str, Any]:
    return {
        "sentences": len(sentences),
        "voices": voices,
        "default_voice": f"{DEFAULT_VOICE} (records without voice_id)",
        "renderer": 'voxbeam synthesize (voxbeam.jobs.run("synthesize")) against the run\'s LocalServer, wav 16 kHz',
        "transcriber": "",
        "transcriber_call": "WhisperModel(<model>, cpu, int8).transcribe(window, language='en', beam_size=5, "
        "vad_filter=False, condition_on_previous_text=False, without_timestamps=True)",
        "window_s": WINDOW_S,
        "espeak_screening": f"every English eSpeak voice on the first {screen} sentences; the {FINALISTS} best on all",
        "normalisation": "bench.corpus.normalize: lower case; digits, ordinals and % as words; hyphens as spaces; "
        "other punctuation dropped; nothing else mapped (no spelling variants, no contractions)",
        "synthesis_job_wall_s": round(job_wall, 1),
    }


def _score_voices(
    model: Any, audio_dir: Path, voices: list[str], candidates: list[str], sentences: list[str], screen: int
) -> tuple[dict[str, tuple[list[str], list[str]]], dict[str, float], list[str]]:
    """Transcribe every voice on the first ``screen`` sentences, then the default voice and the best
    eSpeak candidates on the rest. Returns (references, hypotheses) by voice, window by window, the
    candidates' screening WERs, and the finalists."""
    scored: dict[str, tuple[list[str], list[str]]] = {}  # voice -> (references, hypotheses), window by window

    def score(voice: str, lo: int, hi: int) -> None:
        pcms = []
        for i in range(lo, hi):
            path = audio_dir / f"{voice}-{i:03d}.wav"
            pcms.append(corpus.read_wav(str(path)) if path.exists() else b"")
        refs, hyps = scored.setdefault(voice, ([], []))
        for pcm, ref in windows(pcms, sentences[lo:hi]):
            refs.append(ref)
            hyps.append(transcribe(model, pcm))

    t0 = time.monotonic()
    for voice in voices:
        score(voice, 0, screen)
    screening = {v: corpus.wer(*scored[v]) for v in candidates}
    finalists = sorted(candidates, key=lambda v: screening[v])[:FINALISTS]
    for voice in [DEFAULT_VOICE, *finalists]:
        if screen < len(sentences):
            score(voice, screen, len(sentences))
    log(f"intelligibility: transcribed in {time.monotonic() - t0:.0f} s")
    return scored, screening, finalists


def _compare(
    res: Result,
    wers: dict[str, float],
    finalists: list[str],
    candidates: list[str],
    n_sentences: int,
    model_name: str,
    quick: bool,
) -> None:
    """The default voice's WER against the target, and against eSpeak's best finalist."""
    res.compare(
        "wer_default_voice",
        f"word error rate of the default voice ({DEFAULT_VOICE}, Piper) on {n_sentences} new sentences, "
        f"transcribed by Whisper {model_name}",
        wers[DEFAULT_VOICE],
        TARGET_WER,
        "<=",
        subject=f"wer_{DEFAULT_VOICE}",
        unit="WER",
        note="quick mode scores the first 20 sentences only" if quick else "",
    )
    if finalists:
        best = min(finalists, key=lambda v: wers[v])
        res.config["best_espeak_voice"] = best
        res.compare(
            "wer_best_espeak",
            f"word error rate of eSpeak NG's best English voice ({best}, of {len(candidates)}) on the same sentences",
            wers[best],
            None,
            "<=",
            subject=f"wer_{best}",
            unit="WER",
            note="picked by its WER on these sentences" + (" (quick mode tries one voice)" if quick else ""),
        )
        res.compare(
            "wer_default_vs_best_espeak",
            f"word error rate of {DEFAULT_VOICE} / of {best}",
            ratio(wers[DEFAULT_VOICE], wers[best]),
            None,
            "<=",
            subject=f"wer_{DEFAULT_VOICE}",
            baseline=f"wer_{best}",
        )


def _audio_dir(out: Path) -> Path:
    """Where the job wrote its audio objects (``<output>/audio/run=<run id>/``: one run per output)."""
    found = sorted((out / "audio").rglob("*.wav"))
    return found[0].parent if found else out / "audio"
