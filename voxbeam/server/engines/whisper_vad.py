"""Silero VAD as faster-whisper's ``get_speech_timestamps`` runs it, a few seconds of audio at a time.

``get_speech_timestamps`` scores all of its audio in one ONNX call, after two float32 copies of it: over a
bulk round's 100 s buffer that took ~47 MiB for a moment, beside a worker's decoding (issue 31's memory
floor). ``silero_timestamps`` scores the same windows in pieces, the recurrent state carried from one to the
next (the same probabilities, bit for bit), and finds speech in them as ``get_speech_timestamps`` does.

``speech_timestamps`` runs it afresh on each stretch between runs of digital silence: Silero's state after a long
one is deaf to quiet speech (see ``SILENT_RUN_S``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from faster_whisper.vad import VadOptions, get_vad_model

VAD_WINDOW = 512  # samples Silero scores at a time
VAD_CONTEXT = 64  # samples of the window before that Silero sees with each window
# Windows scored per ONNX call: ~8 s of audio, ~3 MiB of ONNX Runtime's working memory (it grows with the
# windows of a call, ~10 KiB each).
PIECE_WINDOWS = 256
# Silero starts afresh after this much digital silence (a muted line; one side of a split call while the other
# talks): after 25 s of it, it heard 10.8 s of a real person's next turn as speech, after 0.4 s 19.1 s.
SILENT_RUN_S = 1.0
SILENT_MARGIN_S = 0.4  # of the silence kept on each side of what sounds, for Silero's padding
_FRAME = 160  # 10 ms
_STEPS = 2  # dither of up to this many int16 steps either way is silence too


def vad_probabilities(session: Any, audio: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
    """Silero (faster-whisper's ONNX ``session``) over the 512-sample windows of ``audio`` after its first, each
    with the end of the one before it, the recurrent ``state`` (h, c) carried from the windows before (None:
    none): ``SileroVADModel.__call__`` over the whole audio does the same in one call. Scored afresh at each
    live push, as it was, the state started from zero every 100 ms and quiet speech scored as silence (a
    human recording's probabilities off by up to 0.9)."""
    windows = audio.reshape(-1, VAD_WINDOW)
    batch = np.concatenate([windows[:-1, -VAD_CONTEXT:], windows[1:]], axis=1)
    if state is None:
        state = (np.zeros((1, 1, 128), np.float32), np.zeros((1, 1, 128), np.float32))
    out, h, c = session.run(None, {"input": batch, "h": state[0], "c": state[1]})
    return np.asarray(out).reshape(-1), (h, c)


def speech_probabilities(audio: np.ndarray) -> np.ndarray:
    """What ``get_speech_timestamps`` scores ``audio`` (float32 in [-1, 1), or int16) with: one probability per
    window of the audio padded with zeros to whole windows (a whole window of them when it ends on one), the
    last window's last 64 samples zeroed (``SileroVADModel.__call__`` zeroes its context rows in place)."""
    n = len(audio)
    count = n // VAD_WINDOW + 1
    scale = 1 / 32768 if audio.dtype == np.int16 else 1.0  # a power of two: the same floats as the server's
    out = np.empty(count, dtype=np.float32)
    session, state = get_vad_model().session, None
    before = np.zeros(VAD_WINDOW, dtype=np.float32)  # the first window is seen after silence
    for first in range(0, count, PIECE_WINDOWS):
        last = min(count, first + PIECE_WINDOWS)
        piece = np.zeros((last - first + 1) * VAD_WINDOW, dtype=np.float32)
        piece[:VAD_WINDOW] = before
        samples = audio[first * VAD_WINDOW : last * VAD_WINDOW]
        piece[VAD_WINDOW : VAD_WINDOW + len(samples)] = samples
        if scale != 1.0:
            piece[VAD_WINDOW:] *= scale
        if last == count:
            piece[-VAD_CONTEXT:] = 0
        out[first:last], state = vad_probabilities(session, piece, state)
        before = piece[-VAD_WINDOW:]
    return out


def speech_timestamps(audio: np.ndarray, options: VadOptions) -> list[dict[str, int]]:
    """``silero_timestamps`` (16 kHz ``audio``, float32 or int16) run afresh on each stretch that sounds between
    runs of ``SILENT_RUN_S`` of digital silence."""
    out = []
    for lo, hi in sounding(audio):
        out += [{"start": r["start"] + lo, "end": r["end"] + lo} for r in silero_timestamps(audio[lo:hi], options)]
    return out


def silent(audio: np.ndarray) -> bool:
    """Whether ``audio`` (float32 or int16) is digital silence."""
    quiet = _quiet(audio)
    return not len(audio) or (audio.max() <= quiet and audio.min() >= -quiet)


def _quiet(audio: np.ndarray) -> float:
    """The loudest sample of digital silence in ``audio``'s scale."""
    return _STEPS * (1 if audio.dtype == np.int16 else 1 / 32768)


def sounding(audio: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) samples of the stretches of 16 kHz ``audio`` between runs of ``SILENT_RUN_S`` or more of
    digital silence (with ``SILENT_MARGIN_S`` of it on each side); the whole audio when it has no such run.

    Such silence holds no speech, and Silero would take about a second per minute of it to say so: most of what
    a long, sparse recording costs."""
    usable = len(audio) // _FRAME * _FRAME
    frames = audio[:usable].reshape(-1, _FRAME)
    quiet = _quiet(audio)
    loud = np.flatnonzero((frames.max(axis=1) > quiet) | (frames.min(axis=1) < -quiet))
    if not silent(audio[usable:]):
        loud = np.append(loud, len(frames))  # the last partial frame
    if not len(loud):
        return []
    run, margin = round(SILENT_RUN_S * 100), round(SILENT_MARGIN_S * 100)
    gaps = np.flatnonzero(np.diff(loud) > run)
    starts = [0 if loud[0] <= run else loud[0] - margin] + [loud[g + 1] - margin for g in gaps]
    ends = [loud[g] + 1 + margin for g in gaps] + [None if len(frames) - loud[-1] - 1 <= run else loud[-1] + 1 + margin]
    return [
        (int(a) * _FRAME, len(audio) if b is None else min(len(audio), int(b) * _FRAME))
        for a, b in zip(starts, ends, strict=True)
    ]


def silero_timestamps(audio: np.ndarray, options: VadOptions, rate: int = 16000) -> list[dict[str, int]]:
    """``faster_whisper.vad.get_speech_timestamps(audio, options)``: the same stretches of speech (sample
    ``start`` and ``end``), from the probabilities scored in pieces; its decisions, step by step."""
    return _stretches(speech_probabilities(audio), len(audio), options, rate)


def _stretches(probs: np.ndarray, n: int, options: VadOptions, rate: int) -> list[dict[str, int]]:
    threshold = options.threshold
    neg_threshold = options.neg_threshold if options.neg_threshold is not None else max(threshold - 0.15, 0.01)
    min_speech = rate * options.min_speech_duration_ms / 1000
    pad = rate * options.speech_pad_ms / 1000
    max_speech = rate * options.max_speech_duration_s - VAD_WINDOW - 2 * pad
    min_silence = rate * options.min_silence_duration_ms / 1000
    min_silence_at_max = rate * 98 / 1000
    triggered, speeches, current = False, [], {}
    temp_end = prev_end = next_start = 0  # a possible end, and where to split a stretch that grows too long
    for i, prob in enumerate(probs):  # float32 scalars: compared as get_speech_timestamps compares them
        at = VAD_WINDOW * i
        if prob >= threshold and temp_end:
            temp_end = 0
            if next_start < prev_end:
                next_start = at
        if prob >= threshold and not triggered:
            triggered = True
            current["start"] = at
            continue
        if triggered and at - current["start"] > max_speech:
            if prev_end:
                current["end"] = prev_end
                speeches.append(current)
                current = {}
                if next_start < prev_end:
                    triggered = False
                else:
                    current["start"] = next_start
                prev_end = next_start = temp_end = 0
            else:
                current["end"] = at
                speeches.append(current)
                current = {}
                prev_end = next_start = temp_end = 0
                triggered = False
                continue
        if prob < neg_threshold and triggered:
            if not temp_end:
                temp_end = at
            if at - temp_end > min_silence_at_max:
                prev_end = temp_end
            if at - temp_end < min_silence:
                continue
            current["end"] = temp_end
            if current["end"] - current["start"] > min_speech:
                speeches.append(current)
            current = {}
            prev_end = next_start = temp_end = 0
            triggered = False
    if current and n - current["start"] > min_speech:
        current["end"] = n
        speeches.append(current)
    for i, speech in enumerate(speeches):
        if i == 0:
            speech["start"] = int(max(0, speech["start"] - pad))
        if i == len(speeches) - 1:
            speech["end"] = int(min(n, speech["end"] + pad))
            continue
        silence = speeches[i + 1]["start"] - speech["end"]
        if silence < 2 * pad:
            speech["end"] += int(silence // 2)
            speeches[i + 1]["start"] = int(max(0, speeches[i + 1]["start"] - silence // 2))
        else:
            speech["end"] = int(min(n, speech["end"] + pad))
            speeches[i + 1]["start"] = int(max(0, speeches[i + 1]["start"] - pad))
    return speeches
