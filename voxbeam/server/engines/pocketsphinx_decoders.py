"""pocketsphinx decoders in a worker process: how one is made (the bundled en-US model, and the
one-word search that estimates an utterance's cepstral mean), and the pool that keeps one reserved
for whole utterances and lends the others to live ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

SAMPLE_RATE = 16000
CMN_SEARCH = "cmn"
# The smallest grammar there is: the cheap pass only needs the front end's cepstral mean.
_CMN_GRAMMAR = "#JSGF V1.0;\ngrammar cmn;\npublic <s> = a;\n"


def new_decoder() -> Any:
    """A pocketsphinx decoder with the bundled en-US model (and the one-word search for CMN)."""
    from pocketsphinx import Decoder

    # No dither: the noise floor (added by the stream, deterministically) does its job better.
    decoder = Decoder(samprate=SAMPLE_RATE, dither=False, loglevel="FATAL")
    decoder.add_jsgf_string(CMN_SEARCH, _CMN_GRAMMAR)
    return decoder


class DecoderPool:
    """A worker's decoders: one reserved for whole utterances, up to ``size - 1`` lent to live ones.

    The worker runs one request at a time and a whole utterance is decoded within one request,
    so a single reserved decoder never makes a final wait. Decoders are created on first need
    (each costs ~90 MB and ~0.6 s).
    """

    def __init__(self, size: int, factory: Callable[[], Any] = new_decoder) -> None:
        if size < 1:
            raise ValueError("a decoder pool needs at least one decoder")
        self.size = size
        self._factory = factory
        self._reserved: Any = None
        self._free: list[Any] = []
        self._lendable = 0

    @property
    def created(self) -> int:
        return self._lendable + (self._reserved is not None)

    @property
    def lent(self) -> int:
        return self._lendable - len(self._free)

    def reserved(self) -> Any:
        if self._reserved is None:
            self._reserved = self._factory()
        return self._reserved

    def lend(self) -> Any | None:
        """A decoder for a live utterance, or None when all are lent (the utterance is then decoded whole)."""
        if self._free:
            return self._free.pop()
        if self._lendable < self.size - 1:
            self._lendable += 1
            return self._factory()
        return None

    def give_back(self, decoder: Any) -> None:
        self._free.append(decoder)
