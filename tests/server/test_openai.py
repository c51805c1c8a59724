"""Issue 31: the OpenAI-compatible HTTP API of `voxbeam serve`, through the official `openai` client and `curl`,
on the shared server (and the tiers server for translation): models, errors in OpenAI's shape, auth before
the body, the upload cap, transcriptions in every response format and as server-sent events, the same
transcript as the WebSocket bulk path gives, and speech in every format, streamed."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import subprocess
import urllib.error
import urllib.request
from typing import Any

import av
import pytest

from tests.speech import corpus_clip
from voxbeam import audio

openai = pytest.importorskip("openai")

CLIP = "pocketsphinx/librivox-0870"  # 7.1 s of a real reader: "and mister john dashwood had then leisure..."
SHORT = "asterisk/confbridge-unlocked"  # 2.1 s: "The conference is now unlocked."


def base(srv: Any) -> str:
    return f"http://127.0.0.1:{srv.port}/v1"


def client(srv: Any, key: str | None = None) -> Any:
    return openai.OpenAI(base_url=base(srv), api_key=key or srv.api_key, max_retries=0, timeout=120)


def curl(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run(["curl", "-sS", "--max-time", "120", *args], capture_output=True, timeout=150)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def http(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def openai_error(doc: dict[str, Any]) -> dict[str, Any]:
    assert set(doc) == {"error"} and set(doc["error"]) == {"message", "type", "param", "code"}, doc
    return doc["error"]


@pytest.fixture(scope="module")
def clip() -> Any:
    return corpus_clip(CLIP)


@pytest.fixture(scope="module")
def short() -> Any:
    return corpus_clip(SHORT)


def test_models_are_listed_and_found_and_other_paths_are_openai_404s(server):
    c = client(server)
    ids = [m.id for m in c.models.list()]
    assert {"tiny.en", "whisper-1", "tts-1"} <= set(ids), ids
    assert c.models.retrieve("whisper-1").id == "whisper-1"
    tts = c.models.retrieve("tts-1").model_dump()
    assert {"alloy", "vl-joe"} <= {v["name"] for v in tts["voices"]}, tts
    with pytest.raises(openai.NotFoundError):
        c.models.retrieve("no-such-model")
    for path in ("/v1/nothing", "/nothing", "/v1/audio"):
        status, doc = http(f"http://127.0.0.1:{server.port}{path}")
        assert status == 404 and openai_error(doc)["type"] == "invalid_request_error", (path, doc)


def test_a_wrong_or_missing_key_is_a_401_before_any_body_is_read(server):
    with pytest.raises(openai.AuthenticationError):
        client(server, "not-the-key-0000000000000000").models.list()
    status, doc = http(base(server) + "/models")
    assert status == 401 and openai_error(doc)["code"] == "invalid_api_key"
    status, _ = http(base(server) + "/models", {"X-Api-Key": server.api_key})
    assert status == 200
    # Headers that promise 100 MB, and no body: the 401 comes at once, and the connection is closed.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 100000000\r\nAuthorization: Bearer wrong-key-000000000000000\r\n\r\n"
        )
        head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 401"), head


def test_an_upload_over_the_cap_is_a_413_before_it_is_read(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 900000000\r\nAuthorization: Bearer " + server.api_key.encode() + b"\r\n\r\n"
        )
        head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 413"), head
    assert b'"file_too_large"' in head


def test_the_same_file_gives_the_same_transcript_over_http_as_over_the_websocket(server, clip):
    from voxbeam.client import ClientConfig, SpeechClient

    async def over_websocket() -> str:
        pcm = b"".join(audio.decode_to_pcm(clip.path, 16000))
        async with SpeechClient(ClientConfig(endpoints=(server.url,), api_key=server.api_key)) as c:
            return (await c.transcribe(pcm, sample_rate=16000)).text

    with open(clip.path, "rb") as fh:
        got = client(server).audio.transcriptions.create(
            model="whisper-1", file=fh, response_format="verbose_json", timestamp_granularities=["word", "segment"]
        )
    assert got.text == asyncio.run(over_websocket())
    assert "dashwood" in got.text.lower(), got.text
    assert got.language == "english" and 6.5 < got.duration < 7.5, got
    assert got.words and got.segments and got.words[-1].end <= got.duration + 0.1, got


def test_every_response_format_and_the_plain_spelling_of_the_granularities(server, short):
    """(The `[]` spelling is the openai client's, above.)"""
    url, auth = base(server) + "/audio/transcriptions", f"Authorization: Bearer {server.api_key}"
    outputs = {}
    for fmt in ("text", "srt", "vtt"):
        form = ["-F", f"file=@{short.path}", "-F", "model=whisper-1", "-F", f"response_format={fmt}"]
        outputs[fmt] = curl(url, "-H", auth, *form).stdout.decode()
    assert "unlocked" in outputs["text"].lower(), outputs
    assert outputs["srt"].startswith("1\n00:00:0") and " --> " in outputs["srt"], outputs["srt"]
    assert outputs["vtt"].startswith("WEBVTT\n\n00:00:0"), outputs["vtt"]
    form = ["-F", f"file=@{short.path}", "-F", "response_format=verbose_json", "-F", "timestamp_granularities=word"]
    doc = json.loads(curl(url, "-H", auth, *form).stdout)
    assert doc["words"] and "segments" not in doc and doc["text"] == outputs["text"].strip(), doc


def test_stream_true_sends_each_final_as_an_event_then_the_whole_text(server, short):
    done = curl(
        "-N", base(server) + "/audio/transcriptions", "-H", f"X-Api-Key: {server.api_key}",
        "-F", f"file=@{short.path}", "-F", "stream=true",
    )  # fmt: skip
    events = [json.loads(line[6:]) for line in done.stdout.decode().splitlines() if line.startswith("data: ")]
    assert events[-1]["type"] == "transcript.text.done" and "unlocked" in events[-1]["text"].lower(), events
    assert all(e["type"] == "transcript.text.delta" for e in events[:-1]) and events[:-1], events
    assert "".join(e["delta"] for e in events[:-1]) == events[-1]["text"]


def test_bad_requests_are_400s_in_openai_shape(server, short, tmp_path):
    c = client(server)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio at all" * 100)
    cases = [
        ({"file": junk.open("rb")}, "file"),
        ({"file": open(short.path, "rb"), "temperature": 0.7}, "temperature"),  # noqa: SIM115
        ({"file": open(short.path, "rb"), "language": "de"}, None),  # noqa: SIM115 (tiny.en: English)
    ]
    for kwargs, param in cases:
        with pytest.raises(openai.BadRequestError) as info:
            c.audio.transcriptions.create(model="whisper-1", **kwargs)
        kwargs["file"].close()
        error = info.value.body
        assert isinstance(error, dict) and error.get("message"), error
        if param:
            assert error["param"] == param, error
    # Translation needs a multilingual model, and this server has only tiny.en.
    with open(short.path, "rb") as fh, pytest.raises(openai.BadRequestError) as info:
        c.audio.translations.create(model="whisper-1", file=fh)
    assert "multilingual" in str(info.value), info.value


@pytest.mark.second_model
def test_translation_with_the_multilingual_model(tiers, short):
    with open(short.path, "rb") as fh:
        got = client(tiers).audio.translations.create(model="whisper-1", file=fh, response_format="verbose_json")
    assert got.task == "translate" and got.language == "english" and "unlocked" in got.text.lower(), got


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
def test_speech_in_every_format_streams_a_file_that_decodes(server, fmt):
    c = client(server)
    text = "Hello there. This is the second sentence."
    with c.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=text, response_format=fmt
    ) as response:
        chunks = list(response.iter_bytes())
    data = b"".join(chunks)
    if fmt == "pcm":
        seconds = len(data) / 2 / 24000
    else:
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.audio[0]
            samples = sum(f.samples for f in container.decode(stream))
            seconds = samples / stream.rate
    assert 1.0 < seconds < 10.0, (fmt, seconds)


def test_speech_with_our_voice_ids_and_curl_and_its_errors(server, tmp_path):
    out = tmp_path / "out.wav"
    body = json.dumps({"model": "tts-1", "voice": "vl-andrew", "input": "One two three.", "response_format": "wav"})
    curl(base(server) + "/audio/speech", "-H", f"Authorization: Bearer {server.api_key}",
         "-H", "Content-Type: application/json", "-d", body, "-o", str(out))  # fmt: skip
    assert out.read_bytes()[:4] == b"RIFF" and audio.duration_ms(out.read_bytes()) > 500
    c = client(server)
    with pytest.raises(openai.BadRequestError) as info:
        c.audio.speech.create(model="tts-1", voice="nobody", input="Hi.")
    assert info.value.body["param"] == "voice", info.value.body
    with pytest.raises(openai.BadRequestError) as info:
        c.audio.speech.create(model="tts-1", voice="alloy", input="Hi.", speed=4.0)
    assert info.value.body["param"] == "speed", info.value.body
