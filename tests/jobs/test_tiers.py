"""`voxbeam transcribe --stt_model`: the job picks one of the models a service serves, the transcripts' model
column names it, and a service that does not serve it (or whose model lacks a control the job asks for) stops
the job in its pre-flight, exit 2 naming the flag. On the one extra server (``tiers``: tiny.en,base)."""

from __future__ import annotations

import os
import re

import pytest

from tests.jobs.helpers import EXAMPLES, rows
from voxbeam import cli, jobs

pytestmark = pytest.mark.second_model
JFK = os.path.join(EXAMPLES, "jfk.wav")
SHORT = os.path.join(EXAMPLES, "austen-0930.m4a")  # 3 s: "He might even have been made amiable himself."


def _on(server, tmp_path, name: str, audio: str = JFK) -> list[str]:
    return [audio, "--output", str(tmp_path / name), "--endpoint", server.url, "--api_key", server.api_key]


def test_the_job_uses_the_model_it_asks_for_and_the_model_column_names_it(tiers, tmp_path):
    # Candidate languages need a multilingual model: tiny.en, the default, does not offer them, base does; the
    # pre-flight checks them against the model the job picks, not the default's capabilities.
    argv = _on(tiers, tmp_path, "o", SHORT) + ["--stt_model", "base", "--language", "auto", "--languages", "en,es"]
    summary = jobs.run("transcribe", argv)
    assert summary.written == 1 and not summary.dead_letters, summary
    (row,) = rows(str(tmp_path / "o"), "transcripts")
    assert row["model"].startswith("whisper/base@sha256:"), row["model"]
    assert row["language"] == "en" and {"made", "himself"} <= set(re.findall(r"[a-z]+", row["text"].lower())), row


def test_a_model_or_a_control_the_service_does_not_offer_stops_the_job_naming_the_flag(tiers, server, tmp_path, capsys):
    # A model the service does not serve: exit 2, one line, before any session is opened.
    before = tiers.health()["stt_sessions"]
    assert cli.main(["transcribe", *_on(tiers, tmp_path, "a"), "--stt_model", "small"]) == 2
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert line.startswith("error: --stt_model: ") and "does not serve model 'small'" in line, line
    assert "(its /healthz models: tiny.en, base)" in line, line
    assert tiers.health()["stt_sessions"] == before
    # The shared server serves tiny.en alone.
    with pytest.raises(jobs.UsageError) as info:
        jobs.run("transcribe", _on(server, tmp_path, "b") + ["--stt_model", "base"])
    assert info.value.flag == "--stt_model" and "models: tiny.en)" in str(info.value), info.value
    # tiny.en by name on the tiered server: its own capabilities count, and translation is not among them.
    with pytest.raises(jobs.UsageError) as info:
        jobs.run("transcribe", _on(tiers, tmp_path, "c") + ["--stt_model", "tiny.en", "--task", "translate"])
    err = info.value
    assert err.flag == "--task" and "does not offer 'translate' with model 'tiny.en'" in str(err), err
    # A bad name is a usage error before any service is asked.
    with pytest.raises(jobs.UsageError) as info:
        jobs.run("transcribe", [JFK, "--output", str(tmp_path / "d"), "--endpoint", "ws://127.0.0.1:9"]
                 + ["--api_key", "k", "--stt_model", "x" * 201])  # fmt: skip
    assert info.value.flag == "--stt_model" and "at most 200" in str(info.value), info.value
