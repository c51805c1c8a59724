"""Recognition controls on the shared server (Whisper tiny.en): hotwords and a prompt fix a name it mishears in a
real recording, even with a plain session's windows decoded beside them; bad or hostile values are refused
with a code that names the field, and the worker keeps serving. Translation and candidate languages need the
multilingual model: tests/server/test_languages.py.
"""

from __future__ import annotations

import asyncio
import wave

import pytest

from tests.server import helpers as h
from tests.speech import MISHEARD_NAME, MISHEARD_NAME_CLIP, corpus_clip, says


@pytest.fixture(scope="module")
def clip() -> bytes:
    with wave.open(corpus_clip(MISHEARD_NAME_CLIP).path) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1
        return w.readframes(w.getnframes())


def _heard(msgs: list[dict]) -> str:
    return " ".join(f["text"] for f in h.finals(msgs))


def test_hotwords_and_a_prompt_fix_a_name_each_in_its_own_session(server, clip):
    # tiny.en: English only (diarization is there too when the speaker model is installed)
    assert set(server.health()["capabilities"]) - {"diarization"} == {"hotwords", "profanity", "prompt", "redact"}

    async def main():
        # At once: the 15 s clip is decoded as deferred windows, which the server batches across sessions;
        # a batch decodes with one set of options, so each session must still get its own.
        return await asyncio.gather(
            h.transcribe(server, clip, language="en-US"),
            h.transcribe(server, clip, language="en-US", hotwords="Inter-Asterisk Exchange"),
            h.transcribe(server, clip, language="en-US", prompt="Connect over the Inter-Asterisk Exchange (IAX)."),
        )

    plain, hot, prompted = (_heard(msgs) for msgs in asyncio.run(main()))
    assert not says(plain, MISHEARD_NAME), plain  # the mistake the controls are there to fix
    assert says(hot, MISHEARD_NAME), hot
    assert says(prompted, MISHEARD_NAME), prompted
    # The rest of the recording is heard as well as without them.
    for heard in (hot, prompted):
        assert len(set(h.words(plain)) - set(h.words(heard))) <= 3, (plain, heard)


MANY_CODES = [a + b + c for a in "abcdefghij" for b in "abcdefghij" for c in "abcdefghij"]  # 1000
HOSTILE = [
    ({"prompt": "x" * 501}, "INVALID_MESSAGE", "'prompt' is 501 characters; at most 500"),
    ({"prompt": 42}, "INVALID_MESSAGE", "'prompt' must be a string"),
    ({"hotwords": "IAX\x00Digium"}, "INVALID_MESSAGE", "'hotwords' holds control characters"),
    ({"languages": "en"}, "INVALID_MESSAGE", "'languages' must be a list"),
    ({"languages": ["en", 7]}, "INVALID_MESSAGE", "'languages' must be a list of language codes"),
    ({"languages": MANY_CODES}, "INVALID_MESSAGE", "at most 16"),
    ({"languages": ["en; DROP"]}, "INVALID_MESSAGE", "not a language code"),
    ({"task": "summarize"}, "INVALID_MESSAGE", "'task' must be transcribe or translate"),
    ({"task": "translate"}, "UNSUPPORTED_OPTION", "tiny.en is English-only; run the server with --stt_model base"),
    ({"language": "auto", "languages": ["en", "es"]}, "UNSUPPORTED_OPTION", "'languages'"),
]


def test_bad_and_hostile_controls_are_refused_naming_the_field_and_the_worker_serves_on(server, clip):
    async def main():
        async with await h.connect_to(server, "stt") as ws:
            for fields, code, words in HOSTILE:
                await h.send(ws, {"type": "init", **fields})
                error = await h.expect_error(ws, code)
                assert words in error["error"], (fields, error)
                assert len(error["error"]) < 300, error  # a 1000-entry list is not echoed back
            await ws.send('{"type": "init", "prompt": "a lone \\ud800 surrogate"}')
            assert "surrogate" in (await h.expect_error(ws, "INVALID_MESSAGE"))["error"]
            # The longest prompt and hotwords, in a script of several tokens per character: cut to fit
            # Whisper's context in the worker, not a failed decode.
            ready = await h.init(ws, prompt="語" * 500, hotwords="Ω" * 250, language="en-US", enable_timestamps=True)
            assert ready["type"] == "ready", ready
            await h.send_audio(ws, clip[: 16000 * 2 * 6])
            await h.send(ws, {"type": "command", "command": "flush"})
            return await h.until_flush_done(ws)

    msgs = asyncio.run(main())
    assert not [m for m in msgs if m["type"] == "error"], msgs
    assert "demonstration" in _heard(msgs), msgs  # heard as without them (the clip has no CJK to favour)
