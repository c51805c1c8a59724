"""The live path's speech detection (issue 32): Silero scored push by push as its whole audio would be."""

from __future__ import annotations

import numpy as np
from faster_whisper.vad import get_vad_model

from bench import corpus
from tests.speech import corpus_clip
from voxbeam.server.engines.base import Recognized
from voxbeam.server.engines.whisper_hypothesis import Word
from voxbeam.server.engines.whisper_live import LiveSession, live_final
from voxbeam.server.engines.whisper_vad import VAD_WINDOW, vad_probabilities


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


# -- incremental live decoding (whisper_live.LiveSession), on a scripted recognizer ---------------------------

# What the speaker says: (start s, end s, word as Whisper writes it); two sentences, a short pause between them
# (no utterance end: 0.3 s), then a long one before the last.
SCRIPT = [
    (1.0, 1.3, " This"), (1.3, 1.5, " is"), (1.5, 1.7, " the"), (1.7, 2.3, " first"), (2.3, 2.9, " sentence."),
    (3.2, 3.5, " Here"), (3.5, 3.8, " comes"), (3.8, 4.0, " a"), (4.0, 4.6, " second"), (4.6, 5.1, " one."),
    (6.5, 6.9, " And"), (6.9, 7.2, " the"), (7.2, 7.7, " last"), (7.7, 8.2, " words"),
]  # fmt: skip
SPEECH = [(1.0, 2.9), (3.2, 5.1), (6.5, 8.2)]  # what Silero hears


def _scripted_pcm(seconds: float) -> bytes:
    """Loud where SCRIPT speaks, silent elsewhere: the scorer below tells them apart."""
    t = np.arange(int(seconds * 16000)) / 16000
    loud = np.zeros_like(t, dtype=bool)
    for lo, hi in SPEECH:
        loud |= (t >= lo) & (t < hi)
    return np.where(loud, 8000, 0).astype("<i2").tobytes()


def _score(audio: np.ndarray, state):
    windows = audio.reshape(-1, VAD_WINDOW)[1:]
    return np.where(np.abs(windows).mean(axis=1) > 0.05, 0.95, 0.02), state


class _Recognizer:
    """Whisper as LocalAgreement expects it: the words the audio holds, but a word the buffer cuts short
    comes out wrong (so only an agreement of two hypotheses may commit it)."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, float, str]] = []
        self.known: list[str] = []

    def __call__(self, audio: np.ndarray, offset: float, said: str, known: tuple[str, float]) -> list[Word]:
        end = offset + len(audio) / 16000
        self.calls.append((offset, end, said))
        self.known.append(known[0])
        out = []
        for lo, hi, text in SCRIPT:
            if lo >= offset - 0.05 and hi <= end:
                out.append(Word(lo, hi, text, 0.9))
            elif lo >= offset - 0.05 and lo < end:
                out.append(Word(lo, end, " uh" + text.strip(" .").lower()[:2], 0.3))  # half heard
        # Made to start with the known words (the committed ones in the buffer), it gives what follows them.
        return out[len(known[0].split()) :]


def _final(words: list[Word]) -> Recognized:
    return live_final(words, with_words=True, language=None, probability=None)


def _run(recognizer: _Recognizer, pcm: bytes, watch: list | None = None) -> list[tuple[int, Recognized]]:
    """100 ms pushes, then the flush; each result with the push it came from (-1: the flush)."""
    session = LiveSession(recognizer, _score, _final, start=0)
    got = []
    for i in range(0, len(pcm), 3200):
        got += [(i // 3200, r) for r in session.push(pcm[i : i + 3200])]
        if watch is not None:
            watch.append(session.committed)
    return got + [(-1, r) for r in session.finish()]


def test_incremental_live_decoding_commits_agreed_words_and_gives_finals_before_the_flush():
    pcm = _scripted_pcm(10.0)
    committed: list[tuple[Word, ...]] = []
    recognizer = _Recognizer()
    got = _run(recognizer, pcm, committed)
    finals = [(push, r) for push, r in got if r.is_final]
    # Every word exactly once, none of the half-heard ones, sentence by sentence.
    assert [r.text for _, r in finals] == [
        "This is the first sentence.",
        "Here comes a second one.",
        "And the last words",
    ]
    assert [w.word for _, r in finals for w in r.words] == [t.strip(" .") for _, _, t in SCRIPT]
    assert [(w.offset_ms, w.duration_ms) for w in finals[0][1].words][:2] == [(1000, 300), (1300, 200)]
    # The first sentence is final while the second is being said (no pause long enough to end the utterance),
    # at the 0.3 s pause after it (ends 2.9 s; Silero's silence for PAUSE_S, 0.25 s), not two agreeing
    # hypotheses (0.5 s apart) later: push 36.
    first_at = finals[0][0]
    assert 31 <= first_at <= 32, finals
    # The last one when the utterance ends (0.6 s of silence), still before the flush.
    assert 0 <= finals[-1][0] <= 90, finals
    # Each hypothesis is made to start with the words committed in its buffer, and gives the rest.
    script = "".join(text for _, _, text in SCRIPT)
    assert any(recognizer.known) and all(known in script for known in recognizer.known), recognizer.known
    # What is committed only grows: no committed word is ever taken back or changed.
    for before, after in zip(committed, committed[1:], strict=False):
        assert after[: len(before)] == before
    # Partials at least every 500 ms while speech goes on (the first once a second of audio is buffered: the
    # pre-roll, 0.3 s, and 0.7 s of speech), each starting with the committed words not yet in a final.
    shown = sorted({push for push, r in got if push >= 0})
    for lo, hi in SPEECH:
        during = [p for p in shown if lo * 10 <= p <= hi * 10 + 5]
        assert during and during[0] <= lo * 10 + 7, (lo, shown)
        assert max(b - a for a, b in zip(during, during[1:], strict=False)) <= 5, (lo, shown)
    for push, r in got:
        if not r.is_final:
            assert r.text.startswith("".join(w.text for w in committed[push] if w.start >= r.offset_ms / 1000).strip())


def test_incremental_live_decoding_prompts_with_the_committed_text_and_decodes_only_the_tail_at_flush():
    recognizer = _Recognizer()
    pcm = _scripted_pcm(10.0)[: int(7.5 * 16000) * 2]  # flushed in the middle of "last"
    got = _run(recognizer, pcm)
    finals = [r for push, r in got if r.is_final]
    assert finals[-1].text.startswith("And the"), finals
    # After the first utterance was committed, decoding starts after it, the committed text as the prompt.
    late = [(offset, said) for offset, _, said in recognizer.calls if offset > 5.0]
    assert late and all(said.endswith("Here comes a second one.") for _, said in late), late
    # No hypothesis ever decodes a buffer shorter than a second (Whisper invents words then), but the flush's.
    assert all(end - offset >= 1.0 for offset, end, _ in recognizer.calls[:-1])
    # Nor more than Whisper's window.
    assert all(end - offset < 28 for offset, end, _ in recognizer.calls)


def test_a_hypothesis_is_cut_where_whisper_loops_but_not_where_a_speaker_repeats_a_word():
    from voxbeam.server.engines.whisper_live import _without_loop

    def words(text: str) -> list[Word]:
        return [Word(i * 0.3, i * 0.3 + 0.2, " " + w, 0.9) for i, w in enumerate(text.split())]

    looped = words("All right, thanks. All right, thanks.")
    assert [w.text for w in _without_loop(looped)] == [" All", " right,", " thanks."]
    said = words("here are some more words, words, words, words. And that")
    assert _without_loop(said) == said
    # A sentence of one word said twice is a loop; a loop cut short by the audio's end is one too.
    assert [w.text for w in _without_loop(words("Congratulations. Congratulations."))] == [" Congratulations."]
    cut_short = words("Press 3 to record your name. Press 3 to record your")
    assert " ".join(w.text.strip() for w in _without_loop(cut_short)) == "Press 3 to record your name."
    menu = words("Press 3 to record your name. Press 4 to record your")
    assert _without_loop(menu) == menu


def test_what_a_hypothesis_says_again_of_the_words_it_was_made_to_start_with_is_dropped():
    from voxbeam.server.engines.whisper_live import _after

    def words(text: str, start: float, each: float = 0.3) -> list[Word]:
        return [Word(start + i * each, start + (i + 0.8) * each, " " + w, 0.9) for i, w in enumerate(text.split())]

    def said(found: list[Word]) -> str:
        return " ".join(w.text.strip() for w in found)

    # The committed sentence's end again (its last word ended later than Whisper timed it).
    assert said(_after(words("Congratulations.", 0.0), words("Congratulations. You have", 0.5))) == "You have"
    assert said(_after(words("all right, thanks.", 0.0), words("right, thanks. Bye.", 1.0))) == "Bye."
    # A speaker who repeats a word, or says a phrase of a menu again at a speaker's pace, is kept.
    assert said(_after(words("some more words,", 0.0), words("words, words.", 1.2))) == "words, words."
    menu = words("Dial 3. To send this caller to voicemail.", 0.0)
    assert said(_after(menu, words("Dial 4. To send this caller to a menu.", 3.0))) == (
        "Dial 4. To send this caller to a menu."
    )
    again = words("To send this caller to a menu.", 3.0)
    assert said(_after(menu, again)) == "To send this caller to a menu."
    # Whisper going back over them, squeezed into no time (no audio holds it): nothing, decoded again later.
    cold = words("I have a cold, so this sounds different", 0.0)
    assert _after(cold, words("I have a cold, so this", 2.4, each=0.02)) == []


def test_a_flush_after_a_backlog_never_decodes_more_than_whispers_window():
    # 40 s of speech pushed while the worker was behind (no processing), then the flush: endpointed and
    # decoded in pieces, none near 30 s.
    recognizer = _Recognizer()
    session = LiveSession(recognizer, _score, _final, start=0)
    t = np.arange(40 * 16000) / 16000
    session.push(np.where((t % 4) < 3.5, 8000, 0).astype("<i2").tobytes(), process=False)
    session.finish()
    assert recognizer.calls and all(end - offset <= 21 for offset, end, _ in recognizer.calls), recognizer.calls
