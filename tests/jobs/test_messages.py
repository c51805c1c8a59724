"""Issue 18, item 5: problems described in words that name the path and what to do, never raw errno text."""

from __future__ import annotations

import json
import os
import socket

from tests.jobs.helpers import EXAMPLES, ROOT, assert_usage_error, rows, voxbeam

RAW = ("[Errno", "Errno ", "errno")


def assert_in_words(line: str) -> None:
    assert not any(raw in line for raw in RAW), line


def test_an_output_that_cannot_be_created_is_named_with_what_to_do(tmp_path):
    line = assert_usage_error(voxbeam("transcribe", EXAMPLES, "--output", "/proc/voxbeam-out"), "--output", "/proc")
    assert_in_words(line)
    assert "choose" in line


def test_an_output_that_is_a_file_says_so(tmp_path):
    line = assert_usage_error(voxbeam("transcribe", EXAMPLES, "--output", "README.md"), "--output", "README.md")
    assert_in_words(line)
    assert "is a file" in line and "folder" in line


def test_a_folder_given_to_synthesis_says_it_wants_a_file(tmp_path):
    line = assert_usage_error(
        voxbeam("synthesize", os.path.join(ROOT, "examples", "text"), "--output", str(tmp_path)), "--input"
    )
    assert_in_words(line)
    assert "is a folder" in line


def test_a_refused_endpoint_is_described(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connections are refused
        proc = voxbeam(
            "transcribe", EXAMPLES, "--output", str(tmp_path), "--endpoint", f"ws://127.0.0.1:{port}", "--api_key", "k"
        )
    line = assert_usage_error(proc, "--endpoint", f"ws://127.0.0.1:{port}")
    assert_in_words(line)
    assert "refused" in line


def test_no_key_at_all_is_not_called_a_rejected_key(server, tmp_path):
    proc = voxbeam(
        "transcribe", EXAMPLES, "--output", str(tmp_path), "--endpoint", server.url, unset=("VOXNEXUS_API_KEY",)
    )
    line = assert_usage_error(proc, "--api_key", "no API key given")
    assert "VOXNEXUS_API_KEY" in line and "--api_key_secret" in line and "rejected" not in line


def test_a_text_file_named_mp3_is_a_dead_letter_in_words(server, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "notes.mp3").write_text("these are meeting notes, not audio\n" * 20)
    out = str(tmp_path / "out")
    proc = voxbeam(
        "transcribe", str(src), "--output", out, "--endpoint", server.url, env={"VOXNEXUS_API_KEY": server.api_key}
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    (dead,) = rows(out, "dead_letters")
    assert dead["error_code"] == "NOT_AUDIO"
    assert_in_words(dead["error_message"])
    assert "audio" in dead["error_message"]
    assert json.loads(dead["input"])["uri"].endswith("notes.mp3")
