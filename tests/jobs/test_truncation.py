"""Issue 18, item 2: a file cut short is CORRUPT_AUDIO, in every container the decoder reads, with both lengths.

Each example file is cut in half (and the Ogg file also at a page boundary, the m4a with its index
first as well as last); the whole files still transcribe, so no healthy file is called truncated.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil

import av
import pytest

from tests import speech
from tests.jobs.helpers import EXAMPLES, rows, voxbeam
from voxbeam import audio
from voxbeam.errors import AudioError

TWO_LENGTHS = re.compile(r"\d[\d,.]*\D+\d[\d,.]*")


def faststart_m4a(pcm: bytes, rate: int, path: str) -> bytes:
    """An AAC m4a whose index ('moov') comes before the audio, as streaming encoders write it."""
    with av.open(path, "w", format="ipod", options={"movflags": "faststart"}) as out:
        st = out.add_stream("aac", rate=rate, layout="mono")
        frame = audio.pcm_frame(pcm, rate)
        frame.pts = 0
        for pkt in st.encode(frame):
            out.mux(pkt)
        for pkt in st.encode(None):
            out.mux(pkt)
    with open(path, "rb") as fh:
        data = fh.read()
    assert data.find(b"moov") < data.find(b"mdat"), "the index is not first"
    return data


def cut_files() -> dict[str, bytes]:
    """name -> bytes of a file cut short."""
    out = {}
    for name in sorted(os.listdir(EXAMPLES)):
        data = open(os.path.join(EXAMPLES, name), "rb").read()
        out[f"half-{name}"] = data[: len(data) // 2]
    ogg = open(os.path.join(EXAMPLES, "austen-0890.ogg"), "rb").read()
    boundary = ogg.rfind(b"OggS", 0, len(ogg) // 2)  # the start of a page: the cut leaves whole pages only
    out["pages-austen-0890.ogg"] = ogg[:boundary]
    return out


@pytest.fixture(scope="module")
def faststart(server, tmp_path_factory) -> bytes:
    (pcm,) = speech.render(server, ["Thank you very much for your help."])
    path = str(tmp_path_factory.mktemp("m4a") / "faststart.m4a")
    return faststart_m4a(audio.resample(pcm, 16000, 24000), 24000, path)


@pytest.mark.parametrize("name", sorted(cut_files()))
def test_decoder_calls_a_cut_file_corrupt_with_both_lengths(name):
    with pytest.raises(AudioError) as info:
        for _ in audio.decode_to_pcm(io.BytesIO(cut_files()[name])):
            pass
    assert info.value.code == audio.CORRUPT_AUDIO, info.value
    assert TWO_LENGTHS.search(str(info.value)), str(info.value)
    assert "Errno" not in str(info.value)


def test_cut_files_are_dead_letters_and_whole_ones_rows(server, faststart, tmp_path):
    src = tmp_path / "in"
    shutil.copytree(EXAMPLES, src)
    for name, data in cut_files().items():
        (src / name).write_bytes(data)
    (src / "faststart.m4a").write_bytes(faststart)
    (src / "half-faststart.m4a").write_bytes(faststart[: len(faststart) // 2])
    out = str(tmp_path / "out")
    proc = voxbeam("transcribe", str(src), "--output", out, "--endpoint", server.url,
                   env={"VOXNEXUS_API_KEY": server.api_key})  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr

    written = {os.path.basename(r["source_uri"]) for r in rows(out, "transcripts")}
    assert written == {*os.listdir(EXAMPLES), "faststart.m4a"}
    dead = {os.path.basename(json.loads(d["input"])["uri"]): d for d in rows(out, "dead_letters")}
    assert set(dead) == {*cut_files(), "half-faststart.m4a"}
    for name, d in dead.items():
        assert d["error_code"] == "CORRUPT_AUDIO", (name, d["error_message"])
        assert TWO_LENGTHS.search(d["error_message"]), (name, d["error_message"])


def test_the_wav_message_gives_the_declared_and_present_bytes():
    data = open(os.path.join(EXAMPLES, "jfk.wav"), "rb").read()
    with pytest.raises(AudioError) as info:
        list(audio.decode_to_pcm(io.BytesIO(data[: len(data) // 2])))
    assert "352,000" in str(info.value) and "175,978" in str(info.value), info.value
