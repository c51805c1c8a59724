"""Issue 29: language detection among candidates on short real prompts, at the engine (Whisper base).

The prompts are Asterisk's phone prompts (bench/human_corpus.py's ``prompts``: Debian packages, cached on first
use), the set bench/recognition.py measures detection on.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench import corpus, human_corpus
from voxbeam.server.engines.base import SttSettings
from voxbeam.server.engines.whisper import WhisperEngine
from voxbeam.server.engines.whisper_controls import detect

CANDIDATES = ("en", "es", "fr")


@pytest.fixture(scope="module")
def model():
    return WhisperEngine(SttSettings(WhisperEngine.resolve("base"), threads=1)).model


def _prompt(lang: str, clip_id: str) -> np.ndarray:
    try:
        found = {c.id: c for c in human_corpus.prompts(lang, log=lambda msg: print(msg, flush=True))}
    except Exception as exc:  # a network or registry problem
        pytest.fail(f"Asterisk's {lang} prompts could not be built: {type(exc).__name__}: {exc}", pytrace=False)
    pcm = corpus.read_wav(found[clip_id].path)
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


def test_silence_after_a_short_prompt_changes_no_detection(model):
    # 1.1 s of speech: the rest of Whisper's 30 s window is padding. Padded with zero features (faster-whisper's
    # detect_language: a steady sound, not silence) this prompt was heard as English (en 0.20, fr 0.13).
    audio = _prompt("fr", "asterisk-fr/vm-password")  # "mot de passe"
    alone = detect(model, audio, CANDIDATES)
    followed = detect(model, np.concatenate([audio, np.zeros(2 * 16000, dtype=np.float32)]), CANDIDATES)
    assert alone[0] == "fr", alone
    assert followed[0] == "fr" and followed[1] == pytest.approx(alone[1], abs=1e-6), (alone, followed)


@pytest.mark.parametrize(
    "clip_id",
    [
        # Allison Smith, an American voice, reading Spanish: detection alone heard these as French or English.
        "asterisk-es/conf-placeintoconf",  # fr 0.16, es 0.01
        "asterisk-es/dictate-playback_mode",  # en 0.23, es 0.04
        "asterisk-es/confbridge-menu-exit-in",  # fr 0.14, es 0.04
        "asterisk-es/conf-roll-callcomplete",  # en 0.47, es 0.37
    ],
)
def test_among_candidates_the_language_the_speech_reads_as_wins(model, clip_id):
    language, probability = detect(model, _prompt("es", clip_id), CANDIDATES)
    assert language == "es" and 0.5 < probability <= 1.0, (language, probability)
