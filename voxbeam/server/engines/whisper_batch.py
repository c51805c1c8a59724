"""Several stretches of audio decoded in one batched call, each as the pipeline would decode it alone.

``BatchedInferencePipeline.transcribe`` batches the 30 s chunks of one audio. Bulk rounds hand
over a window at a time (so any worker can take any of them), and a batch of one costs ~20 %
more CPU per window than a batch of several: the beam search gains most from company. So each
window's speech is found and packed exactly as ``transcribe`` does it (Silero VAD, then chunks of
up to 30 s), the chunks of every window are laid end to end and given to ``transcribe`` as
clips (decoded together, no second VAD pass), and each segment is taken back to its window's
time with the library's own ``restore_speech_timestamps``.
"""

from __future__ import annotations

import bisect
import dataclasses
import threading
from collections.abc import Sequence
from typing import Any

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.transcribe import restore_speech_timestamps
from faster_whisper.vad import VadOptions, collect_chunks

from voxbeam.server.engines.whisper_controls import detect
from voxbeam.server.engines.whisper_timing import RATE, WINDOW_S
from voxbeam.server.engines.whisper_vad import speech_timestamps

# What BatchedInferencePipeline.transcribe uses when vad_filter is on (faster-whisper 1.2); its
# chunks are one 30 s window each.
PIPELINE_VAD = VadOptions(max_speech_duration_s=WINDOW_S, min_silence_duration_ms=160)
# Silence between the clips laid end to end (in no clip, so never decoded).
_GAP = np.zeros(RATE // 2, dtype=np.float32)
# Speech left after a chunk's last word that is decoded again, on its own (see ``_unheard``).
UNHEARD_S = 2.0
UNHEARD_PASSES = 3


class OneWindowAtATime(WhisperModel):
    """A WhisperModel whose encoder and word aligner take a batch's windows one at a time (the beam search still
    gets them together): the same output for the same CPU time, and a fraction of the memory.

    - Self-attention over a batch of three 30 s windows took 170-260 MiB for a moment, one window 52 MiB: a
      server decoding in batches under load rose by hundreds of MB over its size at light load.
    - Word timings: CTranslate2's ``align`` runs the decoder over each window's whole text and computes the
      vocabulary's logits at every token; for three windows that was 120 MiB at once, the worker's peak
      (measured with memray, tiny.en).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._held = threading.local()

    def encode(self, features: np.ndarray) -> ctranslate2.StorageView:
        if features.ndim < 3 or features.shape[0] < 2:
            return super().encode(features)
        one = super().encode  # (a comprehension has no super() of its own)
        joined = np.concatenate([np.asarray(one(f)) for f in features])
        # A StorageView made from an array does not own its memory: the array must outlive its use, which
        # ends before this thread's pipeline encodes its next batch.
        self._held.array = joined
        return ctranslate2.StorageView.from_array(joined)

    def find_alignment(
        self,
        tokenizer: Any,
        text_tokens: list[list[int]],
        encoder_output: ctranslate2.StorageView,
        num_frames: int | list[int],
        median_filter_width: int = 7,
    ) -> list[Any]:
        if len(text_tokens) < 2:
            return super().find_alignment(tokenizer, text_tokens, encoder_output, num_frames, median_filter_width)
        encoded = np.asarray(encoder_output)  # a view: the encoder's output lives on the CPU
        frames = num_frames if isinstance(num_frames, list) else [num_frames] * len(text_tokens)
        out: list[Any] = []
        for i, tokens in enumerate(text_tokens):
            window = np.ascontiguousarray(encoded[i : i + 1])  # outlives the call that reads it
            one = ctranslate2.StorageView.from_array(window)
            out += super().find_alignment(tokenizer, [tokens], one, [frames[i]], median_filter_width)
        return out


def transcribe_many(
    pipeline: Any, audios: Sequence[np.ndarray], candidates: Sequence[str] | None = None, **options: Any
) -> tuple[list[list[Any]], str, float]:
    """Segments of each of ``audios`` (float32, 16 kHz) in its own time; the language and its probability.

    ``options`` go to ``pipeline.transcribe`` (language, batch_size, beam_size, word_timestamps...). With no
    language, ``candidates`` (when given) are the languages detection may choose from.
    """
    pieces: list[tuple[int, np.ndarray, dict[str, float]]] = []  # (audio index, chunk, its metadata)
    speech: list[list[dict[str, int]]] = []
    for i, audio in enumerate(audios):
        regions = speech_timestamps(audio, PIPELINE_VAD)
        speech.append(regions)
        if regions:
            chunks, metadata = collect_chunks(audio, regions, max_duration=WINDOW_S)
            pieces += [(i, chunk, meta) for chunk, meta in zip(chunks, metadata, strict=True) if len(chunk)]
    out: list[list[Any]] = [[] for _ in audios]
    if not pieces:
        return out, options.get("language") or (candidates[0] if candidates else "en"), 1.0
    chosen: float | None = None
    if options.get("language") is None and pipeline.model.model.is_multilingual:
        # Detected here, not by the pipeline: from the first 30 s of speech, as the pipeline would, but padded
        # with silence (whisper_controls.window_features); the likeliest of the candidates.
        speech_only = np.concatenate([c for _, c, _ in pieces])
        options["language"], chosen = detect(pipeline.model, speech_only, candidates or ())
    found, info = _decode(pipeline, pieces, options)
    if options.get("word_timestamps"):
        found = _decode_unheard(pipeline, pieces, found, {**options, "language": info.language})
    for k, segment in sorted(found, key=lambda pair: pair[1].start):
        out[pieces[k][0]].append(segment)
    restored = [list(restore_speech_timestamps(segs, speech[i], RATE)) if segs else [] for i, segs in enumerate(out)]
    return restored, info.language, float(info.language_probability) if chosen is None else chosen


def _decode(
    pipeline: Any, pieces: Sequence[tuple[int, np.ndarray, dict[str, float]]], options: dict[str, Any]
) -> tuple[list[tuple[int, Any]], Any]:
    """``pieces`` decoded together: each segment with its piece's index, in its audio's speech time."""
    starts, clips, parts, at = [], [], [], 0
    for _, chunk, _ in pieces:
        starts.append(at / RATE)
        clips.append({"start": at / RATE, "end": (at + len(chunk)) / RATE})
        parts += [chunk, _GAP]
        at += len(chunk) + len(_GAP)
    segments, info = pipeline.transcribe(np.concatenate(parts), clip_timestamps=clips, **options)
    found = []
    for segment in segments:
        # Its clip: the last to start before it (times come rounded to 10 ms; the gap keeps that unambiguous).
        k = max(0, bisect.bisect_right(starts, segment.start + len(_GAP) / RATE / 2) - 1)
        found.append((k, _shift(segment, pieces[k][2]["offset"] - starts[k])))
    return found, info


def _decode_unheard(
    pipeline: Any,
    pieces: Sequence[tuple[int, np.ndarray, dict[str, float]]],
    found: list[tuple[int, Any]],
    options: dict[str, Any],
) -> list[tuple[int, Any]]:
    """``found`` and what Whisper left out of each piece's speech after its last word, decoded again (up to
    ``UNHEARD_PASSES`` times: a rest can stop early too); segments that stopped early end at their last word."""
    tried: dict[int, float] = {}  # piece -> where its words ended when its rest was last decoded
    for _ in range(UNHEARD_PASSES):
        rest = [r for r in _unheard(pieces, found) if r[2] > tried.get(r[0], -1.0)]
        if not rest:
            break
        ends = {k: end for k, _, end in rest}
        tried.update(ends)
        found = [(k, dataclasses.replace(s, end=min(s.end, ends.get(k, s.end)))) for k, s in found]
        more, _ = _decode(pipeline, [piece for _, piece, _ in rest], options)
        found += [(rest[j][0], segment) for j, segment in more]
    return found


def _unheard(
    pieces: Sequence[tuple[int, np.ndarray, dict[str, float]]], found: Sequence[tuple[int, Any]]
) -> list[tuple[int, tuple[int, np.ndarray, dict[str, float]], float]]:
    """Each piece's speech after its last word, where more than ``UNHEARD_S`` of it is left: (piece, the rest,
    where its last word ends).

    Without timestamps Whisper writes a chunk's text in one go, and it can end it early: tiny.en heard the
    first of three people in a 23 s chunk and stopped, where decoding from the first one's end heard all.
    """
    last: dict[int, float] = {}
    for k, segment in found:
        for word in segment.words or []:
            last[k] = max(last.get(k, 0.0), word.end)
    rest = []
    for k, end in last.items():
        i, chunk, meta = pieces[k]
        cut = int((end - meta["offset"]) * RATE)
        if len(chunk) - cut > UNHEARD_S * RATE:
            rest.append((k, (i, chunk[cut:], {**meta, "offset": meta["offset"] + cut / RATE}), end))
    return rest


def _shift(segment: Any, by: float) -> Any:
    """``segment`` (and its words) ``by`` seconds later: from the joined clips to its audio's speech time."""
    words = [dataclasses.replace(w, start=w.start + by, end=w.end + by) for w in segment.words or []]
    return dataclasses.replace(segment, start=segment.start + by, end=segment.end + by, words=words or segment.words)
