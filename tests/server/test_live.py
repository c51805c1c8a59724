"""The live path's speech detection (issue 32): Silero scored push by push as its whole audio would be."""

from __future__ import annotations

import numpy as np
from faster_whisper.vad import get_vad_model

from bench import corpus
from tests.speech import corpus_clip
from voxbeam.server.engines.whisper_timing import VAD_WINDOW, vad_probabilities


def test_speech_scored_in_100_ms_pushes_scores_as_the_whole_recording_does():
    # A speaker with a cold, recorded quietly: scored afresh at each push (Silero's recurrent state lost),
    # most of it came out as silence and a live session heard no speech for seconds.
    clip = corpus_clip("mfa/cold-corpus")
    pcm = corpus.silence(0.5) + corpus.read_wav(clip.path)[: 16000 * 2 * 8]
    audio = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768
    audio = audio[: len(audio) // VAD_WINDOW * VAD_WINDOW]
    vad = get_vad_model()
    whole = vad(audio).reshape(-1)

    scored: list[float] = []
    state = None
    for end in range(1600, len(audio) + 1600, 1600):  # 100 ms pushes, as a live client sends them
        available = min(end, len(audio)) // VAD_WINDOW
        done = len(scored)
        if available > done:
            chunk = audio[max(0, done - 1) * VAD_WINDOW : available * VAD_WINDOW]
            chunk = chunk if done else np.concatenate([np.zeros(VAD_WINDOW, np.float32), chunk])
            probs, state = vad_probabilities(vad.session, chunk, state)
            scored.extend(probs)
    assert len(scored) == len(whole)
    assert np.abs(np.array(scored) - whole).max() < 1e-4
    assert (whole >= 0.5).mean() > 0.3  # (the clip is speech)
