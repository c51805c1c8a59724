"""Issue 32, item 3: `voxbeam caption FILE` plays audio to a server at real time and prints its partials and finals.

Against the shared server, on real human speech (the corpus' ci subset), through real sockets: the command runs
in-process (its own parser, pre-flight, session and printing) and, for Ctrl-C, as the subprocess a user runs.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.client.spec_server import ThreadedSpecServer, transcript_for
from tests.jobs.helpers import ROOT, assert_usage_error, voxbeam
from tests.speech import corpus_clip, normalize
from voxbeam import audio, cli
from voxbeam.client.config import ClientConfig
from voxbeam.client.live import advertises_live
from voxbeam.jobs.caption import caption_main

# 3.3 s of a LibriVox reader: "he might even have been made amiable himself".
CLIP = "pocketsphinx/librivox-0930"
# 7.1 s: "and mister john dashwood had then leisure to consider how much there might be prudently in his power ...".
LONG_CLIP = "pocketsphinx/librivox-0870"


def _service(server) -> list[str]:
    return ["--endpoint", server.url, "--api_key", server.api_key]


def _run(capsys, *argv: str, stdin: io.BytesIO | None = None) -> tuple[int, str, str]:
    status = caption_main(list(argv), stdin=stdin)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _measured(server, within_s: float = 120.0) -> None:
    """Waits until the server has measured its speed: its workers do that in the background after a start,
    and a live stream meanwhile falls behind and gets no partials (as it would from a busy server)."""
    deadline = time.monotonic() + within_s
    while server.health().get("audio_capacity") is None and time.monotonic() < deadline:
        time.sleep(0.5)


def test_a_clip_at_real_time_gives_partials_then_a_final_with_its_words_as_json_lines(server, capsys):
    clip = corpus_clip(CLIP)
    _measured(server)
    status, out, err = _run(capsys, clip.path, *_service(server), "--format", "jsonl", "--language", "en")
    assert status == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert {e["type"] for e in events} <= {"partial", "final"}
    finals = [e for e in events if e["type"] == "final"]
    partials = [e for e in events if e["type"] == "partial"]
    assert finals and events[-1]["type"] == "final", out
    # Paced at real time the server treats it as live: partials while the words come, before the final.
    assert partials and events.index(partials[0]) < events.index(finals[0]), out
    heard = normalize(" ".join(f["text"] for f in finals))
    assert {"might", "amiable", "himself"} <= set(heard), heard
    for e in events:
        assert 0 <= e["start_ms"] <= e["end_ms"] <= clip.duration * 1000 + 500, e
        assert isinstance(e["latency_ms"], int) and e["latency_ms"] >= 0, e
    assert finals[-1]["language"] in (None, "en") and 0 < finals[-1]["confidence"] <= 1
    assert f"{len(finals)} finals, {len(partials)} partials" in err
    # It advertises live streams: the init said "realtime": true (--realtime auto at real time).
    assert asyncio.run(advertises_live(ClientConfig(endpoints=(server.url,))))


def test_raw_pcm_on_stdin_at_its_own_rate_as_fast_as_it_goes_prints_one_line_per_event(server, capsys):
    pcm = b"".join(audio.decode_to_pcm(corpus_clip(CLIP).path, 8000))
    status, out, err = _run(
        capsys, "-", "--sample_rate", "8000", "--speed", "max", *_service(server), stdin=io.BytesIO(pcm)
    )
    assert status == 0, err
    lines = out.splitlines()
    assert lines and all(line.startswith(("partial: ", "final: [")) for line in lines), out
    finals = [line for line in lines if line.startswith("final: ")]
    assert "amiable" in normalize(" ".join(finals)), out
    assert "\x1b" not in out and "\r" not in out  # not a terminal: no rewriting


@pytest.mark.parametrize(
    ("argv", "flag", "words"),
    [
        (["{missing}"], "FILE", "does not exist"),
        (["{text_file}"], "FILE", "not an audio file"),
        (["-", "--sample_rate", "100"], "--sample_rate", "between 8000 and 48000"),
        (["{clip}", "--speed", "-1"], "--speed", "at least 0"),
        (["{clip}", "--speed", "fast"], "--speed", "not a number"),
        (["{clip}", "--format", "xml"], "--format", "invalid choice"),
        (["{clip}", "--realtime", "maybe"], "--realtime", "invalid choice"),
        (["{clip}", "--endpoint", "http://localhost:1"], "--endpoint", "not a ws:// or wss:// URL"),
        (["{clip}", "--endpoint", "ws://a:1,ws://b:2"], "--endpoint", "one URL"),
        (["{clip}", "--frobnicate", "3"], "", "unrecognized arguments: --frobnicate"),
    ],
)
def test_bad_input_is_one_line_naming_the_flag_and_exit_2(argv, flag, words, tmp_path, capsys):
    text_file = tmp_path / "notes.wav"
    text_file.write_text("not audio at all\n" * 20)
    paths = {"missing": str(tmp_path / "nope.wav"), "text_file": str(text_file), "clip": corpus_clip(CLIP).path}
    status, out, err = _run(capsys, *(a.format(**paths) for a in argv))
    assert status == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {flag}"), err
    assert words in lines[0], lines[0]
    assert out == ""


def test_any_spec_compatible_service_gets_every_byte_in_order_and_nothing_it_does_not_know(capsys):
    """The protocol double of tests/client: its "recognition" is the audio's length and digest, so a chunk lost,
    doubled or reordered by the pacing shows; it has no /healthz, so it is sent no ``realtime``."""
    pcm = b"".join(audio.decode_to_pcm(corpus_clip(CLIP).path, 16000))[:40_001]  # an odd byte: dropped
    with ThreadedSpecServer() as srv:
        argv = ["-", "--endpoint", srv.url, "--api_key", srv.api_key, "--speed", "max", "--format", "jsonl"]
        status, out, err = _run(capsys, *argv, stdin=io.BytesIO(pcm))
        assert not asyncio.run(advertises_live(ClientConfig(endpoints=(srv.url,))))  # so no "realtime" in init
    assert status == 0, err
    *partials, final = [json.loads(line) for line in out.splitlines()]
    # Its partials (every fifth chunk: 100 ms chunks, then) carry no times, so no latency either.
    assert [p["text"] for p in partials] == ["500 ms so far", "1000 ms so far"], partials
    assert all(p["type"] == "partial" and p["latency_ms"] is None for p in partials)
    assert final["type"] == "final" and final["text"] == transcript_for(pcm[:40_000], 16000)
    assert final["end_ms"] == 1250 and final["latency_ms"] >= 0


def test_a_refused_key_names_the_flag(server, capsys):
    status, _, err = _run(capsys, corpus_clip(CLIP).path, "--endpoint", server.url, "--api_key", "wrong-key-0123")
    assert status == 2 and "error: --api_key" in err and "rejected" in err, err
    assert "wrong-key-0123" not in err


def test_the_voxbeam_command_lists_caption_and_its_usage_errors_exit_2(tmp_path, capsys):
    assert cli.main(["--help"]) == 0 and "caption FILE" in capsys.readouterr().out
    assert_usage_error(voxbeam("caption", str(tmp_path / "nope.ogg")), "FILE", "does not exist")


def test_ctrl_c_flushes_prints_the_final_for_what_was_sent_and_exits_130(server):
    env = {**os.environ, "VOXNEXUS_API_KEY": server.api_key, "PYTHONPATH": ROOT}
    proc = subprocess.Popen(
        [sys.executable, "-m", "voxbeam", "caption", corpus_clip(LONG_CLIP).path, "--endpoint", server.url]
        + ["--format", "jsonl"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # the first line comes once the audio starts
        assert line.startswith("captioning"), line
        time.sleep(3.0)  # about "and mister john dashwood had then"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    finals = [e for e in map(json.loads, out.splitlines()) if e["type"] == "final"]
    assert finals, (out, err)
    heard = normalize(" ".join(f["text"] for f in finals))
    assert "dashwood" in heard or "john" in heard, heard
    assert "prudently" not in heard, heard  # said after 4 s: never sent
    assert "interrupted" in err and "Traceback" not in err
