"""The API key never leaves the process in a readable form: logs, errors, display data, outputs.

A distinctive key goes through both jobs (header and ``?token=`` auth), a failing run and a
failing client; then every place it could leak is read back: all log records at DEBUG (ours,
websockets', Beam's), the captured stdout/stderr file descriptors (the server's too), exception
texts with tracebacks, Beam display data of the options and transforms, every byte written
under the outputs, and the server's own log file.
"""

from __future__ import annotations

import json
import logging
import traceback
import uuid
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from apache_beam.transforms.display import DisplayData

from tests.client.proxy import _Fault
from tests.reliability.conftest import SHORT_SENTENCES, ThreadedProxy, dedicated_server, files_under
from voxbeam import jobs
from voxbeam.beam import Secret, ServiceSettings, Synthesize, SynthesizeTextOptions, Transcribe, TranscribeAudioOptions
from voxbeam.client import ClientConfig, RetryPolicy, SyncSpeechClient, Timeouts
from voxbeam.errors import VoxBeamError

KEY = f"vxbKEY-{uuid.uuid4().hex}-s3cr3t/+="  # characters that URL-encode, to catch encoded leaks too
FORMS = sorted({KEY, quote(KEY, safe=""), quote_plus(KEY), KEY.split("-")[1]}, key=len)


def leaks(text: str | bytes) -> list[str]:
    if isinstance(text, bytes):
        return [f for f in FORMS if f.encode() in text]
    return [f for f in FORMS if f in text]


@pytest.fixture(scope="module")
def secret_server(tmp_path_factory):
    log = tmp_path_factory.mktemp("server-log") / "server.log"
    with dedicated_server(workers=1, api_keys=[KEY], log_path=str(log), extra_args=["--log_level", "DEBUG"]) as srv:
        yield srv, log


def _inputs(tmp_path: Path, short_wavs: list[bytes]) -> tuple[str, str]:
    audio_dir = tmp_path / "audio-in"
    audio_dir.mkdir()
    for i in range(2):
        (audio_dir / f"clip{i}.wav").write_bytes(short_wavs[i])
    records = tmp_path / "records.jsonl"
    records.write_text(
        "".join(json.dumps({"id": f"s{i}", "text": t}) + "\n" for i, t in enumerate(SHORT_SENTENCES[:2]))
    )
    return str(audio_dir), str(records)


def test_the_key_leaks_nowhere(secret_server, short_wavs, tmp_path, caplog, capfd):
    srv, server_log = secret_server
    caplog.set_level(logging.DEBUG)
    # Through caplog, so the levels are restored: a logger left at DEBUG logs every frame of the later
    # tests' clients into handlers whose streams pytest has closed by then.
    for name in ("websockets", "websockets.client", "voxbeam", "voxbeam.client"):
        caplog.set_level(logging.DEBUG, logger=name)
    audio_in, records = _inputs(tmp_path, short_wavs)
    outputs = tmp_path / "out"
    texts: list[str] = []  # exception texts and tracebacks to check

    # 1. Both jobs, with the key in a header and then in the URL.
    for auth in ("header", "query"):
        common = ["--endpoint", srv.url, "--api_key", KEY, "--auth", auth]
        stt = jobs.run("transcribe", ["--input", audio_in, "--output", str(outputs / f"stt-{auth}"), *common])
        tts = jobs.run("synthesize", ["--input", records, "--output", str(outputs / f"tts-{auth}"), *common])
        assert stt.written == 2 and tts.written == 2, (stt, tts)
        texts += stt.lines() + tts.lines()

    # 2. A run whose records all fail after the pre-flight check: connections cut mid-stream.
    with ThreadedProxy(srv.port) as tp:
        first = [True]

        def cut_all_but_the_probe():
            if first[0]:
                first[0] = False
                return None
            return _Fault("cut", 300)

        tp.proxy.policy = cut_all_but_the_probe
        failing = [
            "--input", records, "--output", str(outputs / "tts-failing"), "--endpoint", tp.url,
            "--api_key", KEY, "--auth", "query", "--max_attempts", "2",
        ]  # fmt: skip
        summary = jobs.run("synthesize", failing)
        assert summary.written == 0 and sum(summary.dead_letters.values()) == 2, summary
        texts += summary.lines()

        # 3. A client that gives up, with its traceback.
        cfg = ClientConfig(
            endpoints=(tp.url,),
            api_key=KEY,
            auth="query",
            retry=RetryPolicy(max_attempts=2, base_delay=0.01),
            timeouts=Timeouts(connect=2, ready=2, result=2, record=10, pool=10),
        )
        with SyncSpeechClient(cfg) as client:
            with pytest.raises(VoxBeamError) as info:
                client.synthesize("Hello there.")
        texts.append("".join(traceback.format_exception(info.value)))
        texts += [repr(cfg), repr(client)]

    # 4. A job that fails its pre-flight check, key in the URL.
    with pytest.raises(jobs.UsageError) as usage:
        jobs.run(
            "synthesize",
            ["--input", records, "--output", str(outputs / "x"), "--endpoint", "ws://127.0.0.1:9", "--api_key", KEY,
             "--auth", "query"]
        )  # fmt: skip
    texts.append("".join(traceback.format_exception(usage.value)))

    # 5. Display data of the options and of the transforms, and reprs.
    settings = ServiceSettings(endpoints=(srv.url,), api_key=Secret(KEY))
    for item in [
        *DisplayData.create_from_options(TranscribeAudioOptions(["--api_key", KEY])).items,
        *DisplayData.create_from_options(SynthesizeTextOptions([f"--api_key={KEY}"])).items,
        *DisplayData.create_from(Transcribe(settings)).items,
        *DisplayData.create_from(Synthesize(str(outputs / "unused"), settings)).items,
    ]:
        texts.append(f"{item.key}={item.value!r}")
    texts += [repr(settings), str(settings.api_key)]

    # Everything that was said, written or shown.
    for text in texts:
        assert not leaks(text), text
    log_text = "\n".join(r.getMessage() for r in caplog.records)
    leaked = [f"{r.name}:{r.levelname}: {r.getMessage()}"[:400] for r in caplog.records if leaks(r.getMessage())]
    assert not leaked, "\n".join(leaked)
    assert not leaks(caplog.text)
    out, err = capfd.readouterr()
    assert not leaks(out) and not leaks(err)
    for path in files_under(outputs):
        assert not leaks(Path(path).read_bytes()), path
    server_text = server_log.read_bytes()
    assert server_text, "the server wrote no log"
    assert not leaks(server_text)

    # The URL form of the key shows up only redacted, on both sides.
    assert "token=***" in log_text, "client logs should show the redacted query"
    assert b"token=***" in server_text, "the server log should show the redacted query"
    # The failing run's dead letters (with their error messages) were among the files read above.
    assert list((outputs / "tts-failing" / "dead_letters").rglob("*.parquet"))
