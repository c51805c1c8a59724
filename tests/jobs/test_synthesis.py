"""Issue 18, items 6 and 7: synthesis writes per run, bad lines and duplicates are dead letters, counts agree."""

from __future__ import annotations

import hashlib
import json
import os
import re

from tests.jobs.helpers import rows, voxbeam


def job(server, *args):
    return voxbeam("synthesize", *args, "--endpoint", server.url, env={"VOXNEXUS_API_KEY": server.api_key})


def test_a_rerun_with_another_voice_leaves_the_earlier_runs_objects_as_its_manifest_says(server, tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_text("Good morning.\nThe train leaves at nine.\n")
    out = str(tmp_path / "out")
    first = job(server, str(lines), "--output", out, "--voice_id", "vl-jenny")
    second = job(server, str(lines), "--output", out, "--voice_id", "vl-ryan")
    assert first.returncode == 0 and second.returncode == 0, (first.stderr, second.stderr)

    manifest = rows(out, "manifest")
    assert len(manifest) == 4 and {m["voice_id"] for m in manifest} == {"vl-jenny", "vl-ryan"}
    assert len({m["uri"] for m in manifest}) == 4  # each run its own objects
    for m in manifest:  # what every manifest row says is still true of its object
        assert os.path.getsize(m["uri"]) == m["bytes"], m
        assert f"{os.sep}run=" in m["uri"], m["uri"]

    again = job(server, str(lines), "--output", out, "--skip_existing", "true")
    assert again.returncode == 0, again.stderr
    assert "nothing new" in again.stdout and len(rows(out, "manifest")) == 4


def test_bad_lines_duplicates_and_empty_text_become_dead_letters_and_progress_agrees(server, tmp_path):
    records = tmp_path / "records.jsonl"
    records.write_text(
        "\n".join(
            [
                json.dumps({"id": "a", "text": "The first record named a."}),
                json.dumps({"id": "b", "text": "Another record."}),
                '{"id": "c", "text": "this line is cut',
                json.dumps({"id": "a", "text": "A second record named a."}),
                json.dumps({"id": "e", "text": ""}),
                json.dumps(["not", "an", "object"]),
            ]
        )
        + "\n"
    )
    out = str(tmp_path / "out")
    proc = job(server, str(records), "--output", out, "--max_dead_letter_fraction", "1")
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)

    manifest = {m["id"]: m for m in rows(out, "manifest")}
    assert set(manifest) == {"a", "b"}
    assert manifest["a"]["text_sha256"] == hashlib.sha256(b"The first record named a.").hexdigest()  # the first wins

    dead = rows(out, "dead_letters")
    by_line = {}
    for d in dead:
        by_line[json.loads(d["input"]).get("line")] = d
    assert {n: d["error_code"] for n, d in by_line.items()} == {
        3: "INVALID_INPUT",
        4: "DUPLICATE_ID",
        5: "INVALID_INPUT",
        6: "INVALID_INPUT",
    }, dead
    assert "line 1" in by_line[4]["error_message"]  # names where the winner is
    assert json.loads(by_line[5]["input"])["record"] == {"id": "e", "text": ""}  # the record as it was
    assert "empty" in by_line[5]["error_message"]

    summary = re.search(r"(\d+) rows written, (\d+) dead letters", proc.stdout)
    assert summary and summary.groups() == ("2", "4"), proc.stdout
    final = re.findall(r"(\d+)/(\d+) done(?:, (\d+) failed)?", proc.stderr)[-1]
    assert final == ("6", "6", "4"), proc.stderr
