"""The `voxbeam` command and the pipelines' mains: errors before work, incremental runs, embedded server."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from tests import speech
from tests.jobs.helpers import EXAMPLES, ROOT, assert_usage_error, voxbeam
from voxbeam import audio, jobs
from voxbeam.jobs.args import build_parser
from voxbeam.server.launcher import LocalServer


def test_unknown_flag(tmp_path):
    assert_usage_error(voxbeam("transcribe", EXAMPLES, "--output", str(tmp_path), "--frobnicate", "3"), "--frobnicate")


def test_missing_input(tmp_path):
    proc = voxbeam("transcribe", str(tmp_path / "nothing-here" / "*.wav"), "--output", str(tmp_path / "o"))
    assert_usage_error(proc, "--input", "no files match")


def test_unwritable_output(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a directory should be")
    assert_usage_error(voxbeam("transcribe", EXAMPLES, "--output", str(blocker / "out")), "--output")


def test_refused_endpoint(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connections are refused
        proc = voxbeam(
            "transcribe",
            EXAMPLES,
            "--output",
            str(tmp_path / "o"),
            "--endpoint",
            f"ws://127.0.0.1:{port}",
            "--api_key",
            "whatever",
        )
    assert_usage_error(proc, "--endpoint", "cannot connect", "connection refused")
    assert not os.path.exists(tmp_path / "o" / "transcripts")


def test_rejected_key_is_reported_without_the_key(server, tmp_path):
    wrong = "wrong-key-0123456789"
    proc = voxbeam(
        "transcribe", EXAMPLES, "--output", str(tmp_path / "o"), "--endpoint", server.url, "--api_key", wrong
    )
    assert_usage_error(proc, "--api_key", "rejected")
    assert wrong not in proc.stderr + proc.stdout


def test_bad_synthesis_flags(tmp_path):
    assert_usage_error(voxbeam("synthesize", str(tmp_path / "none.txt"), "--output", str(tmp_path)), "--input")
    lines = tmp_path / "lines.txt"
    lines.write_text("hello\n")
    assert_usage_error(
        voxbeam("synthesize", str(lines), "--output", str(tmp_path / "o"), "--sample_rate", "100"), "--sample_rate"
    )


def test_pipeline_help_lists_options():
    for main in ("transcribe_audio.py", "synthesize_text.py"):
        proc = subprocess.run(
            [sys.executable, os.path.join(ROOT, "pipelines", main), "--help"], capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr
        assert "--input" in proc.stdout and "--output" in proc.stdout and "--endpoint" in proc.stdout


def transcribed_uris(output):
    rows = []
    for f in glob.glob(os.path.join(output, "transcripts", "run=*", "*.parquet")):
        rows += pq.read_table(f).column("source_uri").to_pylist()
    return rows


def test_skip_existing_transcribes_only_new_files(server, tmp_path):
    spoken = speech.render(server, speech.SENTENCES[:3])
    src = tmp_path / "in"
    src.mkdir()
    for i in range(2):
        (src / f"f{i}.wav").write_bytes(audio.encode(speech.silence(0.3) + spoken[i], 16000, "wav"))
    out = str(tmp_path / "out")
    argv = [
        "--input",
        str(src),
        "--output",
        out,
        "--endpoint",
        server.url,
        "--api_key",
        server.api_key,
        "--skip_existing",
        "true",
    ]

    first = jobs.run("transcribe", argv)
    assert first.written == 2 and first.skipped == 0
    second = jobs.run("transcribe", argv)
    assert second.written == 0 and second.skipped == 2 and not second.dead_letters
    assert sorted(transcribed_uris(out)) == sorted(str(p) for p in src.iterdir())

    (src / "f2.wav").write_bytes(audio.encode(speech.silence(0.3) + spoken[2], 16000, "wav"))
    third = jobs.run("transcribe", argv)
    assert third.written == 1 and third.skipped == 2
    uris = transcribed_uris(out)
    assert len(uris) == 3 and len(set(uris)) == 3
    assert len(glob.glob(os.path.join(out, "transcripts", "run=*"))) == 2  # one dated partition per run that wrote

    # A changed file (new mtime and size) is transcribed again.
    (src / "f0.wav").write_bytes(audio.encode(speech.silence(0.6) + spoken[0], 16000, "wav"))
    fourth = jobs.run("transcribe", argv)
    assert fourth.written == 1 and fourth.skipped == 2


def test_second_run_says_nothing_new(server, tmp_path):
    src = tmp_path / "in"
    shutil.copytree(EXAMPLES, src)
    out = str(tmp_path / "out")
    args = ["transcribe", str(src), "--output", out, "--endpoint", server.url, "--skip_existing", "true"]
    env = {"VOXNEXUS_API_KEY": server.api_key}
    assert voxbeam(*args, env=env).returncode == 0
    again = voxbeam(*args, env=env)
    assert again.returncode == 0, again.stderr
    assert "nothing new" in again.stdout


@pytest.mark.smoke
@pytest.mark.timeout(400)
def test_readme_main_command_on_the_embedded_server(tmp_path):
    """`voxbeam transcribe examples/audio --output OUT` with no endpoint: the embedded server does the work."""
    out = str(tmp_path / "out")
    proc = voxbeam("transcribe", "examples/audio", "--output", out, timeout=380)
    assert proc.returncode == 0, proc.stderr
    assert "5 rows written" in proc.stdout and "wall time" in proc.stdout
    assert "done" in proc.stderr  # the progress line
    rows = []
    for f in glob.glob(os.path.join(out, "transcripts", "run=*", "*.parquet")):
        rows += pq.read_table(f).to_pylist()
    text = {os.path.basename(r["source_uri"]): r["text"] for r in rows}
    # Real human speech (examples/README.md): the default engine gets nearly every word.
    refs = {
        "jfk.wav": "and so my fellow americans ask not what your country can do for you "
        "ask what you can do for your country",
        "austen-0870.flac": "and mister john dashwood had then leisure to consider "
        "how much there might be prudently in his power to do for them",
        "austen-0920.mp3": "had he married a more amiable woman "
        "he might have been made still more respectable than he was",
        "austen-0890.ogg": "unless to be rather cold hearted and rather selfish is to be ill disposed",
        "austen-0930.m4a": "he might even have been made amiable himself",
    }
    assert set(text) == set(refs)
    assert speech.wer([refs[k] for k in sorted(refs)], [text[k] for k in sorted(refs)]) <= 0.12, text
    assert {r["language"] for r in rows} == {"en"} and all(r["model"].startswith("whisper/tiny.en@") for r in rows)


def test_descriptions_name_the_default_engines(capsys):
    """`voxbeam --help`, the server package and `voxbeam serve --help` name the engines a plain start runs."""
    from voxbeam import cli, server
    from voxbeam.server.cli import build_parser
    from voxbeam.server.config import ServerConfig
    from voxbeam.server.voices import load_catalog

    stt = ServerConfig().stt_engine
    tts = load_catalog(None)[0].default.engine
    names = {"whisper": "Whisper", "piper": "Piper"}
    assert (stt, tts) == ("whisper", "piper"), "the defaults moved: update the descriptions and this test"
    cli.main(["--help"])
    serve_line = next(line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("serve"))
    first_doc_line = (server.__doc__ or "").splitlines()[0]
    for text in (serve_line, first_doc_line, build_parser().description or ""):
        assert names[stt] in text and names[tts] in text, text


def test_a_generated_key_can_follow_its_flag_on_the_command_line():
    # A key that starts with '-' is read by argparse as a flag: `--api_key KEY` then fails with
    # "expected one argument" (it did, once in CI).
    for _ in range(1000):
        key = LocalServer().api_key
        args, _ = build_parser("transcribe").parse_known_args(["--api_key", key])
        assert args.api_key == key
