"""Issue 18, item 3: exit codes a scheduler can act on, and a summary that names the top error and its fix."""

from __future__ import annotations

import shutil

from tests.jobs.helpers import EXAMPLES, ROOT, assert_usage_error, voxbeam

EXIT_TOO_MANY_DEAD_LETTERS = 3
EXIT_ALL_FAILED = 4


def job(server, *args):
    return voxbeam(*args, "--endpoint", server.url, env={"VOXNEXUS_API_KEY": server.api_key}, timeout=300)


def test_a_wrong_language_or_voice_for_the_whole_job_is_one_line_and_exit_2_before_any_record(server, tmp_path):
    """The pre-flight opens the job's own session: the service's refusal, with the valid values, is the message."""
    proc = job(server, "transcribe", EXAMPLES, "--output", str(tmp_path / "t"), "--language", "xx-XX")
    line = assert_usage_error(proc, "--language", "xx-XX")
    assert "en" in line and "--stt_model base" in line  # what the service does speak, and how to get more
    text = tmp_path / "lines.txt"
    text.write_text("Hello there.\nGood morning.\n")
    proc = job(server, "synthesize", str(text), "--output", str(tmp_path / "s"), "--voice_id", "vl-nobody")
    line = assert_usage_error(proc, "--voice_id", "vl-nobody")
    assert line.count("vl-") >= 3, line  # the voice asked for and the voices that exist
    assert not list(tmp_path.rglob("*.parquet"))  # no record was read


def test_every_record_failing_exits_4_and_the_summary_names_the_voices(server, tmp_path):
    records = tmp_path / "records.jsonl"
    records.write_text(
        '{"id": "a", "text": "Hello there.", "voice_id": "vl-nobody"}\n'
        '{"id": "b", "text": "Good morning.", "voice_id": "vl-nobody"}\n'
    )
    proc = job(server, "synthesize", str(records), "--output", str(tmp_path / "out"))
    assert proc.returncode == EXIT_ALL_FAILED, (proc.returncode, proc.stdout, proc.stderr)
    said = proc.stdout + proc.stderr
    (line,) = [ln for ln in said.splitlines() if "VOICE_NOT_FOUND" in ln and "vl-nobody" in ln][:1]
    assert line.count("vl-") >= 3, line
    assert "Traceback" not in proc.stderr


def test_dead_letters_within_the_fraction_exit_0_above_it_3(server, tmp_path):
    src = tmp_path / "in"
    shutil.copytree(EXAMPLES, src)
    (src / "notes.mp3").write_text("not audio at all\n" * 30)  # 1 of 6 records fails: 17 %
    above = job(server, "transcribe", str(src), "--output", str(tmp_path / "a"))
    assert above.returncode == EXIT_TOO_MANY_DEAD_LETTERS, (above.returncode, above.stdout, above.stderr)
    assert "NOT_AUDIO" in above.stdout + above.stderr
    within = job(server, "transcribe", str(src), "--output", str(tmp_path / "b"), "--max_dead_letter_fraction", "0.2")
    assert within.returncode == 0, (within.returncode, within.stdout, within.stderr)


def test_the_readme_documents_the_exit_codes():
    readme = open(f"{ROOT}/README.md", encoding="utf-8").read()
    section = readme.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    for code in ("0", "1", "2", "3", "4", "130"):
        assert f"| {code} |" in section, code
    assert "--max_dead_letter_fraction" in section
