"""English speech for tests, rendered by the server's own TTS through the client."""

from __future__ import annotations

import io
import re

import av
import numpy as np

from voxbeam import audio

SENTENCES = [
    "The weather is nice today.",
    "Please call me when you get home.",
    "I would like a cup of coffee.",
    "The children are playing in the park.",
    "Thank you very much for your help.",
    "Please send the report by Friday.",
    "Our team won the game on Saturday.",
    "She plays the piano very well.",
]


def render(server, texts, rate=16000):
    """PCM s16le mono at ``rate`` for each text, from the server's default voice."""
    from voxbeam.client import ClientConfig, SyncSpeechClient, TtsParams

    client = SyncSpeechClient(ClientConfig(endpoints=(server.url,), api_key=server.api_key, pool_size=4))
    try:
        futures = [client.synthesize_async(t, TtsParams(format="pcm", sample_rate=rate)) for t in texts]
        return [f.result(timeout=120).audio for f in futures]
    finally:
        client.close()


def silence(seconds, rate=16000):
    return b"\0\0" * int(seconds * rate)


def stereo_flac(pcm, rate):
    """A 2-channel FLAC (the same speech on both channels) at ``rate``."""
    buf = io.BytesIO()
    mono = np.frombuffer(pcm, dtype="<i2")
    with av.open(buf, "w", format="flac") as out:
        st = out.add_stream("flac", rate=rate, layout="stereo")
        interleaved = np.stack([mono, mono]).T.reshape(1, -1).copy()
        frame = av.AudioFrame.from_ndarray(interleaved, format="s16", layout="stereo")
        frame.sample_rate = rate
        frame.pts = 0
        for pkt in st.encode(frame):
            out.mux(pkt)
        for pkt in st.encode(None):
            out.mux(pkt)
    return buf.getvalue()


def m4a(pcm, rate):
    buf = io.BytesIO()
    with av.open(buf, "w", format="ipod") as out:
        st = out.add_stream("aac", rate=rate, layout="mono")
        frame = audio.pcm_frame(pcm, rate)
        frame.pts = 0
        for pkt in st.encode(frame):
            out.mux(pkt)
        for pkt in st.encode(None):
            out.mux(pkt)
    return buf.getvalue()


def normalize(text):
    return re.sub(r"[^a-z' ]+", " ", text.lower()).split()


def wer(refs, hyps):
    import jiwer

    return jiwer.wer([" ".join(normalize(r)) for r in refs], [" ".join(normalize(h)) or "-" for h in hyps])


def corpus_clip(clip_id: str):
    """A recording of the real human speech corpus (``bench/human_corpus.py``, ci subset), built on first use;
    the test fails with the reason when it cannot be built (as tests/test_accuracy.py does)."""
    import pytest

    from bench import human_corpus

    try:
        found = {c.id: c for c in human_corpus.load("ci", log=lambda msg: print(msg, flush=True))}
    except Exception as exc:  # a network or registry problem
        problem = f"{type(exc).__name__}: {exc}"
    else:
        return found[clip_id]
    pytest.fail(f"the human speech corpus could not be built into {human_corpus.cache_dir()}: {problem}", pytrace=False)


# A real Asterisk prompt (Allison Smith, CC-BY-SA-3.0; in the corpus' ci subset) with a name Whisper tiny.en
# mishears: "an Inter-Asterisk Exchange connection" comes back as "and enter asterisk exchange connection".
MISHEARD_NAME_CLIP = "asterisk/demo-abouttotry"
MISHEARD_NAME = ("inter", "asterisk", "exchange")


def says(text: str, phrase: tuple[str, ...]) -> bool:
    """Whether ``text`` holds the words of ``phrase`` in a row (case, punctuation and hyphens aside)."""
    words = re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()
    return any(tuple(words[i : i + len(phrase)]) == phrase for i in range(len(words)))
