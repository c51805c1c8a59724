"""Live decoding: words committed as they become stable, finals sentence by sentence while speech goes on.

LocalAgreement-2, as in ufal/whisper_streaming: while Silero hears an utterance, the audio not yet cut off
(the buffer, from the last committed sentence end) is decoded again every ``STEP_S`` of new audio, with the
committed text before it as Whisper's prompt and the committed words in the buffer as the start it must
write (so it hears them and goes on after them, never saying them twice). Whole sentences two consecutive
hypotheses agree on are committed: the newest hypothesis' words, with their times, one final each (``text``
as Whisper wrote it, ``words`` timed); once the buffer holds ``KEEP_S`` it is cut in a pause after them, so
it stays short and cheap to decode. Partials show the committed words not yet in a final and the newest
hypothesis' tail: their committed part never changes.

When Silero hears a pause (``PAUSE_S``), what was said before it is committed at once, from a hypothesis
that heard the pause: a final comes a pause and a decode after its last word, not two agreeing decodes
later. When it hears the utterance end (``END_SILENCE_S`` of silence), or at ``flush``, the last hypothesis
is committed whole: decoded again only when it did not already hear the end of the speech. A buffer never
reaches Whisper's 30 s window: past ``MAX_BUFFER_S`` it is cut at its last committed word, and 5 s later
an utterance no two hypotheses agreed on is ended there, as ``--max_utterance`` ends one by utterance.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from voxbeam.audio import BYTES_PER_SAMPLE
from voxbeam.server.engines.base import Recognized, WordTiming
from voxbeam.server.engines.whisper_hypothesis import Word
from voxbeam.server.engines.whisper_timing import MIN_WORD_S, RATE, clean_word, ms
from voxbeam.server.engines.whisper_utterance import (
    END_SILENCE_S,
    PAD_S,
    SILENCE_THRESHOLD,
    SPEECH_THRESHOLD,
    WINDOW,
    ScoredAudio,
    Scorer,
)

STEP_S = 0.5  # new audio between two hypotheses while speech goes on
# Whisper invents words for less (at the end of speech, what there is is decoded).
MIN_DECODE_S = 1.0
MIN_SPEECH_S = 0.25  # an utterance with less speech is not decoded (Silero's own shortest speech)
# A hypothesis that heard this much silence after the last speech has heard the speech end: at the end of
# the utterance it is committed as it is, not decoded again.
HEARD_END_S = 0.25
# A pause this long in an utterance commits what was said before it (the utterance goes on: the buffer is kept).
PAUSE_S = 0.25
LOOP_WORDS = 3  # the fewest words said again that are taken for Whisper going back (see ``_after``)
MAX_BUFFER_S = 15.0
CUT_SLACK_S = 0.15  # how far before a sentence's last word ends the buffer may be cut after it
# While an utterance goes on, its buffer is cut at sentence ends only past this long: more audio before the
# words being decided helped Whisper (tiny.en, human speech: WER 0.13 -> 0.115 against 0.06 in bulk).
KEEP_S = 8.0
BACKLOG_S = 5.0  # audio not yet endpointed that the flush endpoints before decoding the tail
PROMPT_CHARS = 200  # committed text before the buffer given as the prompt (whisper_streaming's)
_SENTENCE_END = (".", "?", "!", "。", "？", "！")  # noqa: RUF001 - full-width sentence ends

# (audio float32, its offset in the session s, prompt text, (the committed text the audio starts with, where it
# ends in the audio, s)) -> the hypothesis' words after that text, in session time.
Decoder = Callable[[np.ndarray, float, str, tuple[str, float]], list[Word]]
# Committed words (one sentence or the end of an utterance) -> their final.
Finalizer = Callable[[list[Word]], Recognized]


class LiveSession(ScoredAudio):
    """One live recognition session's audio and words (see the module's docstring)."""

    def __init__(
        self, decode: Decoder, score: Scorer, finalize: Finalizer, *, start: int, max_buffer_s: float = MAX_BUFFER_S
    ) -> None:
        super().__init__(score, start=start)
        self._decode, self._finalize = decode, finalize
        self._max_buffer_s = max_buffer_s
        self._scanned = 0  # windows the endpointing has seen
        self._open = False  # an utterance goes on (speech heard, its end not yet)
        self._silence = 0  # windows of silence since its last speech
        self._speech_windows = 0  # windows of speech in it
        self._speech_end = 0.0  # where the last speech heard ends (s)
        self._decoded_to = 0.0  # where the audio of the last hypothesis ends (s)
        self._said = ""  # text committed before the buffer (the prompt's end)
        self._in_buffer: list[Word] = []  # committed words inside the buffer
        self._pending: list[Word] = []  # committed words not yet in a final
        self._tentative: list[Word] = []  # the last hypothesis after its committed words
        self._committed_end = start / RATE
        self._known_end = self._committed_end  # where the audio after the committed words begins (s)
        self._boundary: Word | None = None  # the last final's last word, while the buffer is not yet cut after it
        self._committed: list[Word] = []  # every word committed in this recognition session
        self.decode_seconds = 0.0  # wall time spent decoding (tests and benchmarks read it)

    @property
    def committed(self) -> tuple[Word, ...]:
        """Every word committed so far, in order: it only ever grows (what partials show first)."""
        return tuple(self._committed)

    def push(self, pcm: bytes, *, process: bool = True) -> list[Recognized]:
        """Buffer ``pcm``; with ``process``, endpoint it, decode when due and give what that commits and a partial."""
        self._pcm += pcm
        if not process:  # the worker is behind: catch up later, all at once
            return []
        self._score_new()
        out: list[Recognized] = []
        end_windows = int(END_SILENCE_S * RATE / WINDOW)
        pause_windows = int(PAUSE_S * RATE / WINDOW)
        while self._scanned < len(self._probs):
            i, self._scanned = self._scanned, self._scanned + 1
            p = self._probs[i]
            if p >= SPEECH_THRESHOLD:
                self._open, self._silence = True, 0
                self._speech_end = self._time(i + 1)
                self._speech_windows += 1
            elif self._open:
                self._silence = self._silence + 1 if p < SILENCE_THRESHOLD else 0
                if self._silence >= end_windows or self._time(i + 1) - self._start / RATE >= self._max_buffer_s + 5:
                    out += self._close(i + 1)  # (or a buffer never cut: speech without agreement, a backlog)
                elif self._silence == pause_windows:
                    out += self._pause(i + 1)
        # (within a window of STEP_S: 100 ms pushes then give a hypothesis every fifth push, not sixth)
        due = self._time(len(self._probs)) - self._decoded_to >= STEP_S - WINDOW / RATE
        if self._open and due and self._silence < pause_windows:
            out += self._hypothesis(len(self._probs))
        if not self._open and not self._tentative:
            self._cut(self._time(len(self._probs)) - PAD_S)  # silence: only the pre-roll is kept
        return out

    def finish(self) -> list[Recognized]:
        """Every remaining final (the end of the recognition session)."""
        # A backlog (pushed while the worker was behind) is endpointed first: no decode outgrows the window.
        out = self.push(b"") if self.backlog_s >= BACKLOG_S else []
        self._score_new()
        heard = any(p >= SPEECH_THRESHOLD for p in self._probs[self._scanned :])
        if self._open or heard or self._tentative:
            end = len(self._pcm) // BYTES_PER_SAMPLE
            if self._decoded_to < self._speech_end + HEARD_END_S or heard:
                self._agree(self._decode_buffer(end), everything=True)
            else:
                self._agree([], everything=True)
        return out + self._finals(everything=True)

    # -- decoding -------------------------------------------------------------------------

    def _hypothesis(self, windows: int) -> list[Recognized]:
        """Decode the buffer up to ``windows``, commit what the last two hypotheses agree on, cut the buffer."""
        end = windows * WINDOW
        if end / RATE < MIN_DECODE_S:
            return []
        self._agree(self._decode_buffer(end), everything=False)
        out = self._finals(everything=False)
        if self._time(windows) - self._start / RATE > self._max_buffer_s:
            self._cut_committed()
        partial = self._pending + self._tentative
        if partial:
            text = "".join(w.text for w in partial).strip()
            first = partial[0].start
            out.append(Recognized(text, False, ms(first), ms(partial[-1].end - first)))
        return out

    def _pause(self, windows: int) -> list[Recognized]:
        """Silero hears a pause (``PAUSE_S``): what was said before it is committed, as a hypothesis that heard
        the pause has it (one is enough: no word before a pause is cut short by the buffer's end)."""
        if windows * WINDOW / RATE < MIN_DECODE_S:
            return []
        self._commit_heard(windows)
        # What follows starts after the pause (Whisper's word ends can fall short of it: the word came twice;
        # and what it wrote nothing for before the pause, it is not asked again).
        self._known_end = max(self._committed_end, self._speech_end)
        return self._finals(everything=True)

    def _close(self, windows: int) -> list[Recognized]:
        """The utterance ended (Silero heard ``END_SILENCE_S`` of silence by ``windows``): commit it whole."""
        self._open, self._silence = False, 0
        blip, self._speech_windows = self._speech_windows * WINDOW / RATE < MIN_SPEECH_S, 0
        if blip and not self._tentative and not self._pending:  # a click or a breath: Whisper would make words of it
            return []
        self._commit_heard(windows)
        out = self._finals(everything=True)
        self._cut(self._time(windows) - PAD_S)  # (what follows may be more of a backlog)
        return out

    def _commit_heard(self, windows: int) -> None:
        """Commit the whole hypothesis of the buffer up to ``windows``: the last one when it heard the speech end."""
        if self._decoded_to < self._speech_end + HEARD_END_S:
            self._agree(self._decode_buffer(windows * WINDOW), everything=True)
        else:
            self._agree([], everything=True)

    def _decode_buffer(self, end: int) -> list[Word]:
        """The hypothesis for the buffer's first ``end`` samples: the words after its committed ones, which
        Whisper is made to start with (it hears the audio before the words to decide, and says none again)."""
        end = min(end, len(self._pcm) // BYTES_PER_SAMPLE)
        audio = np.frombuffer(self._pcm, "<i2", count=end).astype(np.float32) / 32768.0
        self._decoded_to = (self._start + end) / RATE
        began = time.perf_counter()
        known = ("".join(w.text for w in self._in_buffer), self._known_end - self._start / RATE)
        words = self._decode(audio, self._start / RATE, self._said[-PROMPT_CHARS:].strip(), known)
        self.decode_seconds += time.perf_counter() - began
        return _after(self._in_buffer, [w for w in words if w.key])

    def _agree(self, words: list[Word], *, everything: bool) -> None:
        """Commit the whole sentences of the longest common prefix (by ``Word.key``) of ``words`` and the last
        hypothesis (``everything``: all of ``words``, or with none, all of the last hypothesis)."""
        if not words and everything:
            words, self._tentative = self._tentative, []
        new, agreed = words, len(words)
        if not everything:
            agreed = 0
            while agreed < min(len(new), len(self._tentative)) and new[agreed].key == self._tentative[agreed].key:
                agreed += 1
            # Whole sentences only: a sentence's first words, agreed while it was still being said, were
            # decided on less audio (tiny.en on human speech: WER 0.15 committing word by word, 0.14 so).
            agreed = max((i + 1 for i in range(agreed) if _ends_sentence(new[i].text)), default=0)
        commit, self._tentative = new[:agreed], new[agreed:]
        # Committed words follow each other: a word Whisper starts inside the one committed before it starts
        # where that one ends (finals never overlap).
        for i, w in enumerate(commit):
            after = commit[i - 1].end if i else self._committed_end
            if w.start < after:
                commit[i] = Word(after, max(w.end, after + MIN_WORD_S), w.text, w.probability)
        if commit:
            self._committed += commit
            self._pending += commit
            self._in_buffer += commit
            self._committed_end = self._known_end = commit[-1].end

    # -- finals and the buffer ------------------------------------------------------------

    def _finals(self, *, everything: bool) -> list[Recognized]:
        """A final for each committed sentence (``everything``: and the rest); the buffer cut after the last."""
        out: list[Recognized] = []
        while self._pending:
            ends = [i for i, w in enumerate(self._pending) if _ends_sentence(w.text)]
            n = ends[0] + 1 if ends else (len(self._pending) if everything else 0)
            if not n:
                break
            sentence, self._pending = self._pending[:n], self._pending[n:]
            out.append(self._finalize(sentence))
            self._boundary = sentence[-1]
        keep = self._open and self._time(len(self._probs)) - self._start / RATE < KEEP_S
        if self._boundary is not None and not keep and self._cut_after(self._boundary):
            self._boundary = None
        if everything:
            self._tentative = []
        return out

    def _cut_after(self, word: Word, *, forced: bool = False) -> bool:
        """Cut the buffer between ``word`` and the next once that is known, in a pause Silero heard there: at
        its quietest window. Whisper's word times are off by a tenth of a second or two, so without a pause a
        cut would cost the next word its start: the buffer is then kept (``forced``: cut at the quietest
        window anyway). False when it must wait."""
        following = [w for w in self._in_buffer + self._tentative if w.start > word.start]
        if not following and self._open:
            return False
        lo = int(round((word.end - CUT_SLACK_S) * RATE)) - self._start
        if following:
            hi = int(round(max(word.end, following[0].start) * RATE)) - self._start
        else:
            hi = min(lo + int(2 * CUT_SLACK_S * RATE), (len(self._probs) - 1) * WINDOW)
        first, last = max(0, lo // WINDOW), min(len(self._probs) - 1, hi // WINDOW)
        if last < first:
            return last < 0  # (already cut past it)
        quietest = min(range(first, last + 1), key=lambda i: self._probs[i])
        if self._probs[quietest] >= SILENCE_THRESHOLD and not forced:
            return True  # no pause: this sentence stays in the buffer
        self._cut(self._time(quietest))
        return True

    def _cut_committed(self) -> None:
        """A buffer too long: cut it after its last committed word (in the gap before the next one)."""
        if self._in_buffer:
            self._cut_after(self._in_buffer[-1], forced=True)

    def _cut(self, at_s: float) -> None:
        """Drop the audio before ``at_s`` (whole windows, before any uncommitted word) from the buffer."""
        limit = min(at_s, self._tentative[0].start) if self._tentative else at_s
        drop = max(0, min(int(limit * RATE) - self._start, len(self._probs) * WINDOW) // WINDOW)
        if not drop:
            return
        del self._pcm[: drop * WINDOW * BYTES_PER_SAMPLE]
        del self._probs[:drop]
        self._scanned = max(0, self._scanned - drop)
        self._start += drop * WINDOW
        gone = [w for w in self._in_buffer if (w.start + w.end) / 2 < self._start / RATE]
        self._said += "".join(w.text for w in gone)
        self._said = self._said[-4 * PROMPT_CHARS :]
        self._in_buffer = self._in_buffer[len(gone) :]

    def _time(self, windows: int) -> float:
        """Session time (s) at the end of ``windows`` windows of the buffer."""
        return (self._start + windows * WINDOW) / RATE


def live_final(words: list[Word], *, with_words: bool, language: str | None, probability: float | None) -> Recognized:
    """Committed words as a final: Whisper's text, and the spoken words timed when ``with_words``."""
    timed = tuple(
        WordTiming(clean, ms(w.start), max(0, ms(w.end - w.start)), round(w.probability, 4))
        for w in words
        if (clean := clean_word(w.text))
    )
    return Recognized(
        text="".join(w.text for w in words).strip(),
        is_final=True,
        offset_ms=ms(words[0].start),
        duration_ms=max(0, ms(words[-1].end - words[0].start)),
        confidence=round(min(1.0, max(0.0, sum(w.probability for w in words) / len(words))), 4),
        words=timed if with_words else None,
        language=language,
        language_probability=None if language is None or probability is None else round(probability, 4),
    )


def _without_loop(words: list[Word]) -> list[Word]:
    """``words`` up to where a run of them comes again at once: Whisper looping over audio it has run out of
    ("Alright, thanks. Alright, thanks.", "Congratulations. Congratulations."), not a speaker (who repeats a
    word: "words, words, words, words" is no run of two, nor a sentence)."""
    keys = _keys(words)
    for i in range(len(keys)):
        for n in range(1, (len(keys) - i) // 2 + 1):
            run = keys[i : i + n]
            if run == keys[i + n : i + 2 * n] and (len(set(run)) > 1 or _ends_sentence(words[i + n - 1].text)):
                return words[: i + n]
    # A loop cut short by the audio's end: a sentence's first words again, after it ("Press 3 to record your
    # name. Press 3 to record your").
    for i in range(len(keys) - 1):
        tail = len(keys) - i - 1
        if _ends_sentence(words[i].text) and tail >= LOOP_WORDS:
            first = max((j + 1 for j in range(i) if _ends_sentence(words[j].text)), default=0)
            if keys[i + 1 :] == keys[first : first + tail]:
                return words[: i + 1]
    return words


def _after(known: list[Word], new: list[Word]) -> list[Word]:
    """``new``, the words Whisper wrote after the ``known`` ones it was made to start with, without what it
    said of them again (a commit's last word may end later than timed, or Whisper doubts the known words)
    and without a loop."""
    again = True
    while again:  # their last words again ("Congratulations. Congratulations."), not a speaker's "words, words"
        again = False
        for n in range(min(len(known), len(new)), 0, -1):
            if _keys(new[:n]) == _keys(known[-n:]) and (n > 1 or _ends_sentence(new[0].text)):
                new, again = new[n:], True
                break
    # Words of them again, squeezed into a fraction of the time they took (a speaker's repeat takes about as
    # long): taken for none, and decoded again with more audio.
    n, start = LOOP_WORDS, _keys(new[:LOOP_WORDS])
    for i in range(len(known) - n + 1) if len(start) == n else ():
        if _keys(known[i : i + n]) == start and _span(new[:n]) < _span(known[i : i + n]) / 2:
            return []
    return _without_loop([*known, *new])[len(known) :]  # (a loop may start in the known words)


def _keys(words: list[Word]) -> list[str]:
    return [w.key for w in words]


def _span(words: list[Word]) -> float:
    return words[-1].end - words[0].start


def _ends_sentence(text: str) -> bool:
    """Whether a word as Whisper wrote it ends a sentence ("one." but not "the...": a voice trailing off)."""
    text = text.strip()
    return text.endswith(_SENTENCE_END) and not text.endswith("..")
