"""Fuzzing a dedicated server: random message sequences, random bytes, huge frames, slow readers.

The server must stay up and answer every frame with a protocol error code or a close code
(never a crash, a hang, or INTERNAL_ERROR for a client's mistake), keep serving a healthy
session throughout, and give the memory back afterwards.

``VOXBEAM_FUZZ_EXAMPLES`` raises the number of Hypothesis examples (default 400);
``VOXBEAM_FUZZ_RANDOM=1`` explores new examples on each run instead of the fixed derandomized set.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests import speech
from tests.reliability.conftest import SHORT_SENTENCES, dedicated_server, tree_rss
from tests.server import helpers as h
from voxbeam import audio, protocol
from voxbeam.client import ClientConfig, RetryPolicy, SyncSpeechClient, Timeouts, TtsParams

LIMIT = 256 * 1024  # the fuzz server's --max_message_size
EXAMPLES = int(os.environ.get("VOXBEAM_FUZZ_EXAMPLES", "400"))
RANDOM = bool(os.environ.get("VOXBEAM_FUZZ_RANDOM"))
ERROR_CODES = {c.value for c in protocol.ErrorCode}
# How a server may end a session a client abused: normal, policy (auth), unsupported data,
# too big, try again later. 1011 (internal error) would mean the input crashed something.
CLOSE_CODES = {
    protocol.CLOSE_NORMAL,
    protocol.CLOSE_GOING_AWAY,
    protocol.CLOSE_UNSUPPORTED_DATA,
    1007,  # invalid frame payload data (e.g. a text frame that is not UTF-8)
    protocol.CLOSE_POLICY_VIOLATION,
    protocol.CLOSE_MESSAGE_TOO_BIG,
    protocol.CLOSE_TRY_AGAIN_LATER,
}
MEMORY_MARGIN = 100 * 1024 * 1024


@pytest.fixture(scope="module")
def fuzz_server():
    args = ["--max_message_size", str(LIMIT), "--idle_timeout", "5"]
    with dedicated_server(workers=2, max_sessions=24, extra_args=args) as srv:
        yield srv


# ---------------------------------------------------------------------------------------------
# Strategies

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def message(kind: str, **fields: Any) -> st.SearchStrategy[dict[str, Any]]:
    """A message of ``kind`` whose fields are each sometimes absent, right, or anything at all."""
    return st.fixed_dictionaries({"type": st.just(kind)}, optional={name: s | values for name, s in fields.items()})


stt_init = message(
    "init",
    language=st.sampled_from(["en-US", "en", "zh-CN", "xx-XX", ""]),
    format=st.sampled_from(["pcm", "PCM", "wav", "mp3", ""]),
    sample_rate=st.sampled_from([8000, 16000, 22050, 48000, 7999, 48001, 0, -16000]),
    enable_timestamps=st.booleans(),
    enable_language_detection=st.booleans(),
)
tts_init = message(
    "init",
    voice_id=st.sampled_from(["vl-jenny", "vl-xiaoxiao", "vl-nobody", ""]),
    language=st.sampled_from(["en-US", "zh-CN", "xx-XX"]),
    format=st.sampled_from(["wav", "pcm", "mp3", "flac", "opus", "ogg", "aac"]),
    sample_rate=st.sampled_from([8000, 16000, 24000, 48000, 100, 10**9]),
    speed=st.floats(-5, 10),
    pitch=st.floats(-100, 100),
    volume=st.floats(-5, 10),
    voice_config=st.fixed_dictionaries(
        {}, optional={"style": st.sampled_from(["cheerful", "sad", "nope"]), "degree": st.floats(-2, 5)}
    ),
)
audio_msg = message("audio", data=st.binary(max_size=6000).map(_b64) | st.text(max_size=50))
text_msg = message("text", text=st.text(max_size=120), is_final=st.booleans())
command_msg = message("command", command=st.sampled_from(["flush", "stop", "", "FLUSH"]))
json_messages = st.one_of(
    stt_init,
    tts_init,
    audio_msg,
    audio_msg,
    text_msg,
    text_msg,
    command_msg,
    command_msg,
    st.just({"type": "ping"}),
    st.dictionaries(st.text(max_size=10), values, max_size=5),
    values,
).map(lambda obj: json.dumps(obj, allow_nan=True))

Frame = tuple[str, Any]  # ("text", str) | ("bytes", bytes)
frames = st.one_of(
    json_messages.map(lambda s: ("text", s)),
    json_messages.map(lambda s: ("text", s)),
    json_messages.map(lambda s: ("text", s)),
    st.text(max_size=300).map(lambda s: ("text", s)),
    st.binary(max_size=3000).map(lambda b: ("bytes", b)),
    st.sampled_from([LIMIT + 1, 3 * LIMIT]).map(lambda n: ("text", '{"type":"audio","data":"' + "A" * n + '"}')),
    st.sampled_from([LIMIT + 1, 2 * LIMIT]).map(lambda n: ("bytes", b"\0" * n)),
    st.integers(100, 200_000).map(lambda n: ("text", "[" * n + "]" * n)),
)


def valid_init(service: str) -> Frame:
    init = protocol.SttInit() if service == "stt" else protocol.TtsInit(format="pcm")
    return ("text", protocol.serialize(init))


programs = st.tuples(
    st.sampled_from(["stt", "tts"]),
    st.sampled_from(["good", "good", "good", "bad", "none", "query-bad"]),
    st.booleans(),  # start with a valid init, to reach the states after ready
    st.lists(frames, min_size=1, max_size=8),
)


# ---------------------------------------------------------------------------------------------
# Running one program against the server


@dataclass
class Outcome:
    messages: list[Any] = field(default_factory=list)
    close_code: int | None = None
    http_status: int | None = None


def run_program(srv: Any, service: str, auth: str, frames_: list[Frame]) -> Outcome:
    url = srv.url + (protocol.STT_PATH if service == "stt" else protocol.TTS_PATH)
    headers = {}
    if auth == "good":
        headers["X-Api-Key"] = srv.api_key
    elif auth == "bad":
        headers["X-Api-Key"] = srv.api_key[:-1] + ("x" if srv.api_key[-1] != "x" else "y")
    elif auth == "query-bad":
        url += "?token=not-the-key"
    outcome = Outcome()
    try:
        ws = connect(url, additional_headers=headers, open_timeout=10, close_timeout=0.2, max_size=None)
    except InvalidStatus as exc:
        outcome.http_status = exc.response.status_code
        return outcome
    with ws:
        for _kind, data in frames_:
            try:
                ws.send(data)
            except ConnectionClosed:
                break
        # A ping last: its pong (after those of any pings among the frames) says the server has
        # dealt with everything before it, in order.
        pongs_due = 1 + sum(_is_ping(data, service) for _kind, data in frames_)
        try:
            ws.send(protocol.serialize(protocol.Ping()))
        except ConnectionClosed:
            pass
        deadline = time.monotonic() + 15
        while True:
            # The server's close frame ends the exchange. (Waiting for the TCP close as well would cost
            # 5 s whenever the server stopped reading first: its close handshake then times out.)
            rcvd = ws.protocol.close_rcvd
            if rcvd is not None:
                outcome.close_code = rcvd.code
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"no pong or close within 15 s after {len(frames_)} frames")
            try:
                frame = ws.recv(timeout=0.1)
            except TimeoutError:
                continue
            except ConnectionClosed as exc:
                # The server ended the session: with a close frame (its code), or without one (1006).
                outcome.close_code = exc.rcvd.code if exc.rcvd is not None else 1006
                break
            msg = protocol.parse_server_message(frame)  # every server frame is a valid message
            outcome.messages.append(msg)
            if isinstance(msg, protocol.Pong):
                pongs_due -= 1
                if not pongs_due:
                    break
    return outcome


def _is_ping(frame: str | bytes, service: str) -> bool:
    try:
        return isinstance(protocol.parse_client_message(frame, service), protocol.Ping)  # type: ignore[arg-type]
    except protocol.ProtocolError:
        return False


def check_outcome(srv: Any, service: str, auth: str, outcome: Outcome) -> None:
    if outcome.http_status is not None:
        assert auth != "good" and outcome.http_status in (401, 403), outcome
        return
    errors = [m for m in outcome.messages if isinstance(m, protocol.Error)]
    for e in errors:
        assert e.code in ERROR_CODES, e
        assert e.code != protocol.ErrorCode.INTERNAL_ERROR.value, e
    if auth != "good":
        assert not any(isinstance(m, (protocol.SttReady, protocol.TtsReady, protocol.Audio)) for m in outcome.messages)
        assert (errors and errors[0].code == "UNAUTHORIZED") or outcome.close_code == protocol.CLOSE_POLICY_VIOLATION
    if outcome.close_code is not None:
        assert outcome.close_code in CLOSE_CODES, outcome
    else:
        assert outcome.messages and isinstance(outcome.messages[-1], protocol.Pong), outcome


# ---------------------------------------------------------------------------------------------
# A healthy client next to the storm, and readers that never read


class HealthySession(threading.Thread):
    """Transcribes and synthesizes in a loop without retries; any failure is recorded."""

    def __init__(self, srv: Any, clip: bytes, said: str) -> None:
        super().__init__(name="healthy-session", daemon=True)
        self.clip = clip
        self.said = said
        self.config = ClientConfig(
            endpoints=(srv.url,),
            api_key=srv.api_key,
            pool_size=2,
            retry=RetryPolicy(max_attempts=1),
            timeouts=Timeouts(connect=10, ready=15, result=15, record=60, pool=60),
        )
        self.stop = threading.Event()
        self.baseline_rss = 0
        self.rounds = 0
        self.failures: list[str] = []

    def run(self) -> None:
        with SyncSpeechClient(self.config) as client:
            while not self.stop.is_set():
                try:
                    # Recognition quality is not on trial here (and pooled pocketsphinx decoders are
                    # not bit-reproducible): the transcript must just be about what was said.
                    text = client.transcribe(self.clip).text
                    if speech.wer([self.said], [text]) > 0.5:
                        self.failures.append(f"transcript {text!r} for {self.said!r}")
                    spoken = client.synthesize(SHORT_SENTENCES[0], TtsParams(format="wav"))
                    if audio.duration_ms(spoken.audio) < 300:
                        self.failures.append("synthesized audio too short")
                    self.rounds += 1
                    self.stop.wait(0.3)  # steady, not flat out: the storm should have the CPU
                except Exception as exc:  # recorded and asserted on by the test
                    self.failures.append(repr(exc))
                    time.sleep(0.2)


def slow_reader(srv: Any, utterances: int = 2, chars: int = 1500) -> socket.socket:
    """A TTS client that asks for minutes of audio (~90 s per 1,500 characters) and never reads a byte
    after the handshake."""
    from websockets.client import ClientProtocol
    from websockets.uri import parse_uri

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", srv.port))
    proto = ClientProtocol(parse_uri(srv.url.replace("wss://", "ws://") + protocol.TTS_PATH))
    request = proto.connect()
    request.headers["X-Api-Key"] = srv.api_key
    proto.send_request(request)
    sock.sendall(b"".join(proto.data_to_send()))
    while proto.handshake_exc is None and not proto.events_received() and proto.state.name == "CONNECTING":
        data = sock.recv(4096)
        if not data:
            raise AssertionError("the server hung up during the handshake")
        proto.receive_data(data)
    assert proto.handshake_exc is None, proto.handshake_exc
    text = " ".join(SHORT_SENTENCES * (chars // 100 + 1))[:chars]
    proto.send_text(protocol.serialize(protocol.TtsInit(format="wav")).encode())
    for _ in range(utterances):
        proto.send_text(protocol.serialize(protocol.Text(text=text, is_final=True)).encode())
    sock.sendall(b"".join(proto.data_to_send()))
    return sock


# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def healthy(fuzz_server, short_clips):
    """A well-behaved client working throughout the module, and the server's memory before the storm."""
    h.calibrated(fuzz_server)
    session = HealthySession(fuzz_server, short_clips[0], SHORT_SENTENCES[0])
    session.start()
    deadline = time.monotonic() + 60
    while session.rounds < 3 and time.monotonic() < deadline and not session.failures:
        time.sleep(0.1)
    assert session.rounds >= 3 and not session.failures, session.failures
    session.baseline_rss = tree_rss(fuzz_server.pid)
    yield session
    session.stop.set()
    session.join(60)


def test_random_frames_get_error_codes_or_close_codes_never_a_crash(fuzz_server, healthy):
    srv = fuzz_server
    pid = srv.pid
    stats = {"programs": 0, "closed": 0, "http": 0, "errors": 0}
    slowest: list[tuple[float, str, str, list[int]]] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=not RANDOM,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(programs)
    def storm(program: tuple[str, str, bool, list[Frame]]) -> None:
        service, auth, init_first, frames_ = program
        if init_first:
            frames_ = [valid_init(service), *frames_]
        started = time.monotonic()
        outcome = run_program(srv, service, auth, frames_)
        slowest.append((round(time.monotonic() - started, 2), service, auth, [len(d) for _k, d in frames_]))
        check_outcome(srv, service, auth, outcome)
        stats["programs"] += 1
        stats["closed"] += outcome.close_code is not None
        stats["http"] += outcome.http_status is not None
        stats["errors"] += sum(isinstance(m, protocol.Error) for m in outcome.messages)

    rounds = healthy.rounds
    started = time.monotonic()
    storm()
    print(f"fuzz: {stats} in {time.monotonic() - started:.1f}s; healthy rounds meanwhile {healthy.rounds - rounds}")
    print("fuzz: slowest programs", sorted(slowest, reverse=True)[:5])
    assert not healthy.failures, healthy.failures
    assert healthy.rounds > rounds, "the healthy session made no progress during the storm"
    health = srv.health()
    assert srv.pid == pid and health["status"] == "ok" and health["workers_alive"] == health["workers"], health
    assert health["errors"].get("INTERNAL_ERROR", 0) == 0, health["errors"]


def test_readers_that_never_read_are_held_back_and_the_memory_comes_back(fuzz_server, healthy):
    """Three waves of 4 TTS clients that ask for ~3 minutes of audio each and never read it.

    The first wave also warms the engines: ONNX Runtime keeps the arena it grew for the longest render
    so far (a one-time cost per worker, not something held for the readers), so "comes back" is judged
    against the server after that first wave, and must hold over the two waves after it.
    """
    srv = fuzz_server
    served, peak, warm = [], 0, 0
    for wave in range(3):
        rounds = healthy.rounds
        slow = [slow_reader(srv) for _ in range(4)]
        try:
            # At least 4 s (for the server to render and block on sending), and until the healthy session
            # has finished a round beside them; 60 s is only the guard against a hang.
            began = time.monotonic()
            while time.monotonic() - began < 60 and (time.monotonic() - began < 4 or healthy.rounds == rounds):
                peak = max(peak, tree_rss(srv.pid))
                time.sleep(0.2)
            served.append(healthy.rounds - rounds)
        finally:
            for sock in slow:
                sock.close()
        if wave == 0:
            time.sleep(2)
            warm = tree_rss(srv.pid)
    # Memory comes back near the warm baseline once the storm is over.
    deadline = time.monotonic() + 60  # a guard: it returns as soon as the memory is back
    while tree_rss(srv.pid) > warm + MEMORY_MARGIN and time.monotonic() < deadline:
        time.sleep(0.5)
    after = tree_rss(srv.pid)
    mib = 1024 * 1024
    print(
        f"slow readers: healthy rounds meanwhile {served}; server rss baseline {healthy.baseline_rss / mib:.0f} MiB, "
        f"after the first wave {warm / mib:.0f} MiB, peak with slow readers {peak / mib:.0f} MiB, "
        f"after {after / mib:.0f} MiB"
    )
    assert not healthy.failures, healthy.failures
    assert min(served) >= 1, "the healthy session was starved while the slow readers were connected"
    assert srv.health()["status"] == "ok"
    assert after <= warm + MEMORY_MARGIN, (healthy.baseline_rss // mib, warm // mib, after // mib)
