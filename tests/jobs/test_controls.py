"""The recognition control flags of `voxbeam transcribe`: --prompt, --hotwords, --task, --languages.

Bad values are usage errors naming the flag, before any service is asked; a service that does not advertise
a control the job asks for stops the job in its pre-flight (exit 2, one line naming the flag); a job with
--hotwords gets the name in a real recording right where the plain job does not.
"""

from __future__ import annotations

import os

import pyarrow.parquet as pq
import pytest

from tests.client.spec_server import ThreadedSpecServer
from tests.jobs.helpers import EXAMPLES, assert_usage_error, voxbeam
from tests.speech import MISHEARD_NAME, MISHEARD_NAME_CLIP, corpus_clip, says
from voxbeam import jobs

JFK = os.path.join(EXAMPLES, "jfk.wav")
# Not contacted: each mistake is found before the service is.
NOWHERE = ["--endpoint", "ws://127.0.0.1:9", "--api_key", "k"]


def _usage_error(argv: list[str]) -> jobs.UsageError:
    with pytest.raises(jobs.UsageError) as info:
        jobs.run("transcribe", argv)
    return info.value


@pytest.mark.parametrize(
    ("flags", "flag", "words"),
    [
        (["--task", "summarize"], "--task", "invalid choice"),
        (["--prompt", "x" * 501], "--prompt", "is 501 characters; at most 500"),
        (["--hotwords", "IAX\x07Digium"], "--hotwords", "control characters"),
        (["--languages", "english,es"], "--languages", "not a language code"),
        (["--languages", "en,es", "--language", "en-US"], "--languages", "give them with --language auto"),
    ],
)
def test_bad_values_name_the_flag_before_the_service_is_asked(tmp_path, flags, flag, words):
    err = _usage_error([JFK, "--output", str(tmp_path / "o"), *NOWHERE, *flags])
    assert err.flag == flag and words in str(err), err


def test_a_service_that_does_not_advertise_a_control_stops_the_job_naming_the_flag(server, tmp_path):
    # A spec-only service would ignore --hotwords and transcribe without them: the CLI exits 2 instead.
    with ThreadedSpecServer() as spec:
        proc = voxbeam(
            "transcribe", JFK, "--output", str(tmp_path / "a"), "--endpoint", spec.url, "--hotwords", "Kennedy",
            env={"VOXNEXUS_API_KEY": spec.api_key},
        )  # fmt: skip
        assert spec.counters.connections == 0  # refused before any session was opened
    line = assert_usage_error(proc, "--hotwords", "does not offer 'hotwords'", "capabilities: none")
    assert line.startswith("error: --hotwords:"), line
    # tiny.en offers prompts and hotwords, not translation.
    err = _usage_error(
        [JFK, "--output", str(tmp_path / "b"), "--endpoint", server.url, "--api_key", server.api_key]
        + ["--task", "translate"]
    )
    assert (
        err.flag == "--task"
        and "does not offer 'translate'" in str(err)
        and "hotwords, profanity, prompt, redact" in str(err)
    ), err


def test_hotwords_reach_the_service_and_fix_a_misheard_name(server, tmp_path):
    # Without them tiny.en mishears it (tests/server/test_controls.py shows both in one run).
    path = corpus_clip(MISHEARD_NAME_CLIP).path
    argv = [path, "--output", str(tmp_path / "o"), "--endpoint", server.url, "--api_key", server.api_key]
    summary = jobs.run("transcribe", [*argv, "--language", "en-US", "--hotwords", "Inter-Asterisk Exchange"])
    assert summary.written == 1 and not summary.dead_letters, summary
    text = pq.read_table(next((tmp_path / "o" / "transcripts").rglob("*.parquet"))).column("text")[0].as_py()
    assert says(text, MISHEARD_NAME), text
