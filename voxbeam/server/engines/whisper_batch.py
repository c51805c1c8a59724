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
from faster_whisper.vad import VadOptions, collect_chunks, get_speech_timestamps

from voxbeam.server.engines.whisper_controls import best_language
from voxbeam.server.engines.whisper_timing import RATE, WINDOW_S

# What BatchedInferencePipeline.transcribe uses when vad_filter is on (faster-whisper 1.2); its
# chunks are one 30 s window each.
PIPELINE_VAD = VadOptions(max_speech_duration_s=WINDOW_S, min_silence_duration_ms=160)
# Silence between the clips laid end to end (in no clip, so never decoded).
_GAP = np.zeros(RATE // 2, dtype=np.float32)


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
        found = get_speech_timestamps(audio, PIPELINE_VAD)
        speech.append(found)
        if found:
            chunks, metadata = collect_chunks(audio, found, max_duration=WINDOW_S)
            pieces += [(i, chunk, meta) for chunk, meta in zip(chunks, metadata, strict=True) if len(chunk)]
    out: list[list[Any]] = [[] for _ in audios]
    if not pieces:
        return out, options.get("language") or (candidates[0] if candidates else "en"), 1.0
    chosen: float | None = None
    if options.get("language") is None and candidates and pipeline.model.model.is_multilingual:
        # The pipeline's own detection (the first 30 s of speech), then the likeliest of the candidates.
        _, _, probabilities = pipeline.model.detect_language(audio=np.concatenate([c for _, c, _ in pieces]))
        options["language"], chosen = best_language(probabilities, candidates)
    starts, clips, parts, at = [], [], [], 0
    for _, chunk, _ in pieces:
        starts.append(at / RATE)
        clips.append({"start": at / RATE, "end": (at + len(chunk)) / RATE})
        parts += [chunk, _GAP]
        at += len(chunk) + len(_GAP)
    segments, info = pipeline.transcribe(np.concatenate(parts), clip_timestamps=clips, **options)
    for segment in segments:
        # Its clip: the last to start before it (times come rounded to 10 ms; the gap keeps that unambiguous).
        k = max(0, bisect.bisect_right(starts, segment.start + len(_GAP) / RATE / 2) - 1)
        i, _, meta = pieces[k]
        out[i].append(_shift(segment, meta["offset"] - starts[k]))
    restored = [list(restore_speech_timestamps(segs, speech[i], RATE)) if segs else [] for i, segs in enumerate(out)]
    return restored, info.language, float(info.language_probability) if chosen is None else chosen


def _shift(segment: Any, by: float) -> Any:
    """``segment`` (and its words) ``by`` seconds later: from the joined clips to its audio's speech time."""
    words = [dataclasses.replace(w, start=w.start + by, end=w.end + by) for w in segment.words or []]
    return dataclasses.replace(segment, start=segment.start + by, end=segment.end + by, words=words or segment.words)
