"""The protocol's session rules (voxbeam.protocol_state), from the client's end and the server's."""

from __future__ import annotations

import pytest

from voxbeam import protocol as p
from voxbeam.protocol import ErrorCode, ProtocolError
from voxbeam.protocol_state import Phase, ProtocolState, Role

pytestmark = pytest.mark.smoke


def code(call, *args) -> ErrorCode | None:
    try:
        call(*args)
    except ProtocolError as exc:
        return exc.code
    return None


def stt_ready(rid: str = "req_1") -> p.SttReady:
    return p.SttReady(rid, "en-US", "pcm", 16000)


@pytest.mark.parametrize("role", list(Role))
def test_init_first_and_once(role):
    state = ProtocolState("stt", role)
    client_side = state.send if role is Role.CLIENT else state.receive
    server_side = state.receive if role is Role.CLIENT else state.send
    assert code(client_side, p.Audio(b"\0\0")) is ErrorCode.NOT_INITIALIZED
    assert code(client_side, p.Command("flush")) is ErrorCode.NOT_INITIALIZED
    assert code(client_side, p.Ping()) is None  # allowed before init
    assert code(server_side, stt_ready()) is ErrorCode.INVALID_MESSAGE  # ready without init
    client_side(p.SttInit(language="fr-FR"))
    assert state.phase is Phase.INITIALIZING
    assert code(client_side, p.SttInit()) is ErrorCode.INVALID_MESSAGE
    server_side(p.Error("fr-FR is not supported", "UNSUPPORTED_LANGUAGE"))
    assert state.phase is Phase.NEW  # a refused init may be followed by another
    client_side(p.SttInit())
    server_side(stt_ready())
    assert state.phase is Phase.READY and state.idle
    assert code(client_side, p.SttInit()) is ErrorCode.INVALID_MESSAGE  # init once


@pytest.mark.parametrize("role", list(Role))
def test_each_service_accepts_its_own_messages(role):
    stt, tts = ProtocolState("stt", role), ProtocolState("tts", role)
    client_side = (lambda s: s.send) if role is Role.CLIENT else (lambda s: s.receive)
    server_side = (lambda s: s.receive) if role is Role.CLIENT else (lambda s: s.send)
    assert code(client_side(stt), p.Text("hi", True)) is ErrorCode.INVALID_MESSAGE
    assert code(client_side(tts), p.Command("flush")) is ErrorCode.INVALID_MESSAGE
    assert stt.client_type_allowed("audio") and not tts.client_type_allowed("audio")
    client_side(stt)(p.SttInit())
    client_side(tts)(p.TtsInit())
    server_side(stt)(stt_ready())
    server_side(tts)(p.TtsReady("req_2", "vl-jenny", "en-US", "wav", 16000))
    assert code(server_side(stt), p.Audio(b"x", is_final=True)) is ErrorCode.INVALID_MESSAGE
    assert code(server_side(tts), p.FlushDone("req_2")) is ErrorCode.INVALID_MESSAGE
    assert code(server_side(stt), p.Pong()) is None and code(server_side(tts), p.Pong()) is None


def test_a_client_ignores_unknown_types_a_server_never_sends_them():
    client = ProtocolState("stt", Role.CLIENT)
    client.receive(p.Unknown("status"))  # before ready, too
    server = ProtocolState("stt", Role.SERVER)
    assert code(server.send, p.Unknown("status")) is ErrorCode.INTERNAL_ERROR


def test_flushes_are_answered_in_order_and_transcripts_attributed_by_position():
    state = ProtocolState("stt", Role.CLIENT)
    state.send(p.SttInit())
    state.receive(stt_ready("req_a"))
    state.send(p.Audio(b"\0\0"))
    assert not state.idle
    state.send(p.Command("flush"))
    state.send(p.Audio(b"\0\0"))  # the next recognition session, before the first is done
    state.send(p.Command("flush"))
    # The spec names no per-session ids: a client takes what the service sends.
    state.receive(p.Transcript("req_a", "first", True))
    state.receive(p.FlushDone("req_a"))
    assert state.last_flushed is not None and state.last_flushed.request_id == "req_a"
    state.receive(p.Transcript("anything", "second", True))
    state.receive(p.FlushDone("req_b"))
    assert state.last_flushed.request_id == "anything" and state.idle
    assert code(state.receive, p.FlushDone("req_c")) is ErrorCode.INVALID_MESSAGE  # no flush waiting


def test_a_server_is_held_to_the_request_id_sequencing():
    state = ProtocolState("stt", Role.SERVER)
    state.receive(p.SttInit())
    state.send(stt_ready("req_a"))
    state.receive(p.Audio(b"\0\0"))
    assert code(state.send, p.Transcript("req_x", "wrong id", False)) is ErrorCode.INTERNAL_ERROR
    state.send(p.Transcript("req_a", "right id", True))
    state.receive(p.Command("flush"))
    state.receive(p.Audio(b"\0\0"))
    state.send(p.FlushDone("req_a"))
    # The next recognition session needs a new id.
    assert code(state.send, p.Transcript("req_a", "old id", True)) is ErrorCode.INTERNAL_ERROR
    state.send(p.Transcript("req_b", "new id", True))
    state.receive(p.Command("flush"))
    assert code(state.send, p.FlushDone("req_c")) is ErrorCode.INTERNAL_ERROR
    state.send(p.FlushDone("req_b"))


def test_tts_utterances_end_with_final_audio_or_an_error():
    state = ProtocolState("tts", Role.CLIENT)
    state.send(p.TtsInit())
    state.receive(p.TtsReady("req_1", "vl-jenny", "en-US", "wav", 16000))
    assert code(state.receive, p.Audio(b"x")) is ErrorCode.INVALID_MESSAGE  # audio for no text
    state.send(p.Text("Hello ", is_final=False))
    state.receive(p.Audio(b"x"))  # a sentence may be spoken before the utterance ends
    assert code(state.receive, p.Audio(b"x", is_final=True)) is ErrorCode.INVALID_MESSAGE
    state.send(p.Text("world.", is_final=True))
    state.send(p.Text("Again.", is_final=True))
    assert state.utterances_owed == 2
    state.receive(p.Audio(b"x", is_final=True))
    state.receive(p.Error("too long", "TEXT_TOO_LONG"))  # the server dropped the second utterance
    assert state.idle
