"""Speaker diarization on conversations of real people (issue 28's mono floors), through ``voxbeam serve``.

Material: the human corpus (``bench/human_corpus.py``), its 12 speakers. Each conversation takes 2 or 3
speakers and alternates their turns: pieces of their recordings of 2 to 20 s (a longer recording is cut at
its quietest 50 ms between 8 and 20 s), 0.3 to 0.8 s apart, no speaker twice in a row, each piece once.
The reference is where each turn was placed. Speakers are drawn from a seeded generator over every pair and
triple with enough material; a share of the conversations (``SAME_SOURCE``) takes its speakers from one
recording source (one package: the same microphones and rooms), so that clustering cannot score by
separating recording conditions instead of voices.

Each conversation is one recognition session (``SpeechClient.transcribe``, language en), three times:
without diarization (the baseline: its server CPU), diarized with the count left to the server, and with the
count given (``min_speakers = max_speakers``). Figures:

- the number of speakers right when not given (floor: 80 % of conversations), as the words' labels say;
  beside it, how many conversations have words of every speaker (where recognition left out all of one
  speaker's words, no label can count them) and the count right among those;
- words to the right speaker under the best mapping of labels (floor: 90 %), both ways: a word counts where
  its middle falls inside a reference turn;
- DER over the reference's speech, 10 ms frames, with the transcript's segments (each has its speaker) as
  the system's turns, one speaker's joined across pauses of up to a second: missed speech, false alarm and
  confusion, no collar (what recognition leaves out counts as missed);
- the server's CPU with diarization against without (ceiling: +15 %).

``VOXBEAM_BENCH_DIARIZATION_SEED`` (default ``SEED``) draws other conversations from the same material: the
clustering's constants were calibrated on one seed's, so figures on another are held out.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench import human_corpus
from bench._common import CpuMeter, Result, log
from bench._context import Context, calibrated, wait_idle

NAME = "diarization"
RATE = 16000
CONVERSATIONS = {True: 8, False: 30}  # quick, full
SAME_SOURCE = 0.3
TURNS = (6, 10)
MIN_TURN_S, MAX_TURN_S, CUT_FROM_S = 2.0, 20.0, 8.0
GAP_S = (0.3, 0.8)
MAX_CONVERSATION_S = 240.0  # one session: under the client's 300 s segments
TARGET_COUNT = 0.80
TARGET_WORDS = 0.90
TARGET_CPU = 1.15
SEED = 28
# The server's --diarization: auto (its best speaker model installed), campplus or ge2e.
MODEL_ENV = "VOXBEAM_BENCH_DIARIZATION_MODEL"
SEED_ENV = "VOXBEAM_BENCH_DIARIZATION_SEED"
CONCURRENCY = 2


@dataclass(frozen=True)
class Conversation:
    id: str
    pcm: bytes
    turns: tuple[tuple[int, int, str], ...]  # (start_ms, end_ms, speaker)
    same_source: bool

    @property
    def speakers(self) -> set[str]:
        return {s for _, _, s in self.turns}


def _samples(path: str) -> np.ndarray:
    with wave.open(path, "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def _pieces(samples: np.ndarray) -> list[np.ndarray]:
    """A recording as turns of MIN_TURN_S..MAX_TURN_S, cut at quiet points."""
    from voxbeam.audio import quietest_cut

    out = []
    while len(samples) > MAX_TURN_S * RATE:
        lo, hi = int(CUT_FROM_S * RATE), int(MAX_TURN_S * RATE)
        cut = lo + quietest_cut(samples[lo:hi].tobytes(), RATE) // 2
        out.append(samples[:cut])
        samples = samples[cut:]
    out.append(samples)
    return [p for p in out if len(p) >= MIN_TURN_S * RATE]


def conversations(
    clips: Sequence[human_corpus.Clip], n: int, seed: int = SEED, sizes: Sequence[int] = (2, 3)
) -> list[Conversation]:
    """``n`` conversations of 2-3 (``sizes``) corpus speakers (see the module's docstring), drawn with ``seed``."""
    pool: dict[str, list[np.ndarray]] = {}
    source: dict[str, str] = {}
    for c in sorted(clips, key=lambda c: c.id):
        pool.setdefault(c.speaker, []).extend(_pieces(_samples(c.path)))
        source[c.speaker] = c.source
    rng = random.Random(seed)

    def groups(least: int) -> list[tuple[str, ...]]:
        speakers = sorted(s for s, p in pool.items() if len(p) >= least)
        return [g for k in sizes for g in itertools.combinations(speakers, k)]

    # Same-source speakers mostly have one piece each (a turn), so those conversations are short.
    same = [g for g in groups(1) if len({source[s] for s in g}) == 1 and sum(len(pool[s]) for s in g) >= 4]
    other = groups(3)
    out = []
    for i in range(n):
        group = rng.choice(same if same and i < round(n * SAME_SOURCE) else other)
        left = {s: rng.sample(pool[s], len(pool[s])) for s in group}
        pcm, turns, now, last = [], [], 0, None
        for _ in range(rng.randint(*TURNS)):
            choices = [s for s in group if (s != last or len(group) == 1) and left[s]]
            if not choices or now > MAX_CONVERSATION_S * RATE:
                break
            last = rng.choice(choices)
            piece = left[last].pop()
            gap = np.zeros(int(rng.uniform(*GAP_S) * RATE), dtype="<i2")
            pcm += [gap, piece]
            now += len(gap)
            turns.append((now * 1000 // RATE, (now + len(piece)) * 1000 // RATE, last))
            now += len(piece)
        if len({s for _, _, s in turns}) == len(group):
            one_source = len({source[s] for s in group}) == 1
            out.append(Conversation(f"c{i:02d}", np.concatenate(pcm).tobytes(), tuple(turns), one_source))
    return out


def _transcribe(server: Any, convs: Sequence[Conversation], given: bool | None) -> tuple[dict[str, Any], float]:
    """Each conversation's result (None: no diarization; else the count given or not); the server's CPU."""
    from voxbeam.client import ClientConfig, SpeechClient, Timeouts

    wait_idle(server)
    config = ClientConfig(
        endpoints=(server.url,),
        api_key=server.api_key,
        pool_size=CONCURRENCY,
        timeouts=Timeouts(result=1800, record=1800),
    )
    meter = CpuMeter([server.pid]).start()

    async def main() -> dict[str, Any]:
        gate = asyncio.Semaphore(CONCURRENCY)
        async with SpeechClient(config) as client:

            async def one(c: Conversation) -> tuple[str, Any]:
                k = len(c.speakers)
                speakers = None if given is None else (k, k) if given else (None, None)
                async with gate:
                    return c.id, await client.transcribe(c.pcm, language="en", timestamps=True, speakers=speakers)

            return dict(await asyncio.gather(*(one(c) for c in convs)))

    results = asyncio.run(main())
    return results, meter.stop()


def _best_mapping(pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    """System label -> reference speaker, one to one, maximising the pairs that agree."""
    hyp = sorted({h for h, _ in pairs})
    ref = sorted({r for _, r in pairs})
    best: dict[str, str] = {}
    best_n = -1
    for perm in itertools.permutations(ref + [""] * max(0, len(hyp) - len(ref)), len(hyp)):
        mapping = dict(zip(hyp, perm, strict=True))
        n = sum(mapping[h] == r for h, r in pairs)
        if n > best_n:
            best, best_n = mapping, n
    return best


def _speaker_at(turns: Sequence[tuple[int, int, str]], ms: int) -> str | None:
    return next((s for a, b, s in turns if a <= ms < b), None)


def _turns(segments: Sequence[Any], mapping: dict[str, str]) -> list[tuple[int, int, str]]:
    """The system's turns: its segments, one speaker's joined across pauses up to the server's ``MAX_GAP_MS``
    (as its own turns are), labels mapped to the reference's."""
    from voxbeam.server.engines.diarization import MAX_GAP_MS

    turns: list[tuple[int, int, str]] = []
    for s in sorted(segments, key=lambda s: s.offset_ms):
        who = mapping.get(s.speaker or "", "?")
        if turns and turns[-1][2] == who and s.offset_ms - turns[-1][1] <= MAX_GAP_MS:
            turns[-1] = (turns[-1][0], max(turns[-1][1], s.offset_ms + s.duration_ms), who)
        else:
            turns.append((s.offset_ms, s.offset_ms + s.duration_ms, who))
    return turns


def score(conv: Conversation, result: Any) -> dict[str, float]:
    """Speaker count, words right (and how many were placed), DER's parts in ms for one conversation."""
    words = [w for w in result.words if w.speaker]
    placed = [(w.speaker, _speaker_at(conv.turns, w.offset_ms + w.duration_ms // 2)) for w in words]
    pairs = [(h, r) for h, r in placed if r is not None]
    mapping = _best_mapping(pairs) if pairs else {}
    right = sum(mapping.get(h) == r for h, r in pairs)
    end = max(conv.turns[-1][1], max((s.offset_ms + s.duration_ms for s in result.segments), default=0))
    frames = np.arange(0, end, 10)
    ref = [_speaker_at(conv.turns, int(t)) for t in frames]
    hyp_turns = _turns(result.segments, mapping)
    hyp = [_speaker_at(hyp_turns, int(t)) for t in frames]
    speech = sum(r is not None for r in ref)
    missed = sum(r is not None and h is None for r, h in zip(ref, hyp, strict=True))
    false_alarm = sum(r is None and h is not None for r, h in zip(ref, hyp, strict=True))
    confusion = sum(r is not None and h is not None and r != h for r, h in zip(ref, hyp, strict=True))
    return {
        "count_right": float(len({w.speaker for w in words}) == len(conv.speakers)),
        "found": len({w.speaker for w in words}),
        # Reference speakers with a word in the transcript: one recognition left out can have no label.
        "heard": len({r for _, r in pairs}),
        "words": len(pairs),
        "words_right": right,
        "speech": speech,
        "der_errors": missed + false_alarm + confusion,
    }


def _report(res: Result, key: str, what: str, convs: Sequence[Conversation], results: dict[str, Any]) -> None:
    scores = [score(c, results[c.id]) for c in convs]
    words = sum(s["words"] for s in scores)
    right = sum(s["words_right"] for s in scores) / words if words else float("nan")
    der = sum(s["der_errors"] for s in scores) / max(1, sum(s["speech"] for s in scores))
    res.compare(f"{key}_words_right", f"words on the right speaker, {what}", right, TARGET_WORDS, ">=", unit="share")
    res.measure(f"{key}_der", der, "share", f"DER (missed + false alarm + confusion over speech), {what}")
    if key == "count_free":
        res.series["conversations"] = [
            {
                "id": c.id,
                "speakers": len(c.speakers),
                "found": s["found"],
                "heard": s["heard"],
                "same_source": c.same_source,
                "least_talk_s": round(min(sum(b - a for a, b, w in c.turns if w == x) for x in c.speakers) / 1000, 1),
            }
            for c, s in zip(convs, scores, strict=True)
        ]
        count = sum(s["count_right"] for s in scores) / len(scores)
        res.compare("speaker_count_right", "conversations whose speaker count is right", count, TARGET_COUNT, ">=")
        same = [s["count_right"] for s, c in zip(scores, convs, strict=True) if c.same_source]
        if same:
            res.measure("speaker_count_right_same_source", sum(same) / len(same), "share", "of same-source ones")
        heard = [s["count_right"] for s, c in zip(scores, convs, strict=True) if s["heard"] == len(c.speakers)]
        res.measure(
            "speakers_all_heard", len(heard) / len(scores), "share", "conversations with words of every speaker"
        )
        if heard:
            what = "of those with words of every speaker (the rest cannot be right)"
            res.measure("speaker_count_right_all_heard", sum(heard) / len(heard), "share", what)


def _said(result: Any) -> list[str]:
    return [w.word.lower().strip(".,?!") for w in result.words]


def run(ctx: Context) -> Result:
    res = Result(NAME, ctx.quick)
    seed = int(os.environ.get(SEED_ENV, SEED))
    convs = conversations(human_corpus.load("full", log=log), CONVERSATIONS[ctx.quick], seed)
    audio_s = sum(len(c.pcm) for c in convs) / 2 / RATE
    res.config = {
        "conversations": len(convs),
        "seed": seed,
        "same_source": sum(c.same_source for c in convs),
        "audio_seconds": round(audio_s, 1),
        "speakers": {k: sum(len(c.speakers) == k for c in convs) for k in (2, 3)},
        "turns": sum(len(c.turns) for c in convs),
    }
    log(f"diarization: {len(convs)} conversations, {audio_s:.0f} s")
    model = os.environ.get(MODEL_ENV, "auto")
    res.config["speaker_model"] = model
    if model == "auto":
        return _run(res, ctx.server(), convs)
    with ctx.other_server(["--diarization", model], f"diarization-{model}") as server:
        return _run(res, server, convs)


def _run(res: Result, server: Any, convs: Sequence[Conversation]) -> Result:
    calibrated(server)
    plain, plain_cpu = _transcribe(server, convs, None)
    free, free_cpu = _transcribe(server, convs, False)
    given, _ = _transcribe(server, convs, True)
    _report(res, "count_free", "count not given", convs, free)
    _report(res, "count_given", "count given", convs, given)
    res.compare(
        "cpu_vs_plain",
        "server CPU transcribing with diarization (count not given) over the same without",
        free_cpu / plain_cpu,
        TARGET_CPU,
        "<=",
        subject="diarized",
        baseline="transcription alone",
    )
    same_words = sum(_said(plain[c.id]) == _said(free[c.id]) for c in convs) / len(convs)
    res.measure("same_words_as_plain", same_words, "share", "conversations whose diarized words are the plain ones")
    missing = [c.id for c in convs if not plain[c.id].words]
    if missing:
        res.errors.append(f"no words for {missing}")
    return res
