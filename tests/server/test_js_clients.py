"""The spec's own JavaScript example clients, unchanged but for the URL, under Node against our server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

JS = Path(__file__).parent / "js"


@pytest.fixture(scope="module")
def node_ws() -> str:
    """Node with the `ws` package installed under tests/server/js/node_modules (cached, gitignored)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("node and npm are needed to run the spec's JavaScript clients")
    if not (JS / "node_modules" / "ws" / "package.json").exists():
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=JS,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            pytest.skip(f"npm install ws failed (offline?): {done.stderr.strip()[-500:]}")
    return node


def test_spec_javascript_clients(server, node_ws):
    env = {**os.environ, "VOXBEAM_URL": server.url, "VOXBEAM_KEY": server.api_key}
    done = subprocess.run([node_ws, "spec_clients.js"], cwd=JS, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    [line] = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    result = json.loads(line[len("RESULT ") :])
    tts, stt = result["tts"], result["stt"]
    # TTS: the spec's usage (vl-xiaoxiao, wav, 16 kHz) gets ready and a whole WAV file.
    assert tts["ready"]["voice_id"] == "vl-xiaoxiao" and tts["ready"]["request_id"].startswith("req_")
    assert tts["final"] and not tts["errors"] and tts["chunks"] >= 1
    assert tts["riff"] == "RIFF" and tts["riffSize"] == tts["bytes"] - 8
    assert result["english"]["final"] and result["english"]["bytes"] > 32000
    # STT: ready, partials, finals with words, and flush_done for the announced request.
    assert not stt["errors"]
    assert stt["flushDone"]["request_id"] == stt["ready"]["request_id"]
    assert stt["partials"]
    assert stt["finals"] and all(f["words"] for f in stt["finals"])
    text = " ".join(f["text"] for f in stt["finals"])
    assert "weather" in text or "thank" in text, text
    # The spec's handlers logged what they received.
    assert "Ready:" in done.stdout and "Final:" in done.stdout and "Flush done:" in done.stdout
