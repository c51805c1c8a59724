"""The protocol's session rules as a sans-I/O state machine, usable at either end.

Feed ``ProtocolState`` every message the session sends (``send``) and receives (``receive``),
in order. A message that breaks a rule raises ``ProtocolError`` with the code the peer should be
told; nothing is sent or read here. The rules, in short: which messages each service takes; ``init``
first and once (a refused ``init`` may be corrected); STT results belong to the oldest recognition
session no ``flush_done`` has closed (order on the connection, not the id, attributes them); a TTS
``audio`` with ``is_final`` completes the oldest ended utterance. Each rule in full: docs/protocol.md.

``role`` says which end we are. The spec leaves request ids open, so a client accepts whatever
ids the service uses; a server (``Role.SERVER``) is held to the sequencing: a transcript or
flush_done naming another session's id, or a new session reusing an old id, is its own bug
and raises INTERNAL_ERROR.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

from voxbeam import protocol as p
from voxbeam.protocol import ErrorCode, ProtocolError, Service

CLIENT_TYPES: dict[Service, frozenset[str]] = {
    "stt": frozenset({"init", "audio", "command", "ping"}),
    "tts": frozenset({"init", "text", "ping"}),
}
SERVER_TYPES: dict[Service, frozenset[str]] = {
    "stt": frozenset({"ready", "transcript", "flush_done", "error", "pong"}),
    "tts": frozenset({"ready", "audio", "error", "pong"}),
}


class Role(enum.Enum):
    CLIENT = "client"
    SERVER = "server"


class Phase(enum.Enum):
    NEW = "new"  # connected; no init yet, or the last one was refused
    INITIALIZING = "initializing"  # init sent, neither ready nor error yet
    READY = "ready"


@dataclass
class RecognitionState:
    """One STT recognition session: audio ... flush ... flush_done."""

    request_id: str | None = None
    audio: bool = False  # audio was sent into it


class ProtocolState:
    """Protocol state of one STT or TTS session, seen from ``role``'s end."""

    def __init__(self, service: Service, role: Role) -> None:
        self.service = service
        self.role = role
        self.phase = Phase.NEW
        self.ready: p.SttReady | p.TtsReady | None = None
        # STT: the open recognition session, and flushed ones awaiting their flush_done (oldest first).
        self.open = RecognitionState()
        self.flushing: deque[RecognitionState] = deque()
        self.last_flushed: RecognitionState | None = None  # the one the latest flush_done closed
        self._used_ids: set[str] = set()
        # TTS: an utterance has text but no is_final yet; ended utterances still owed audio.
        self.text_open = False
        self.utterances_owed = 0

    def __repr__(self) -> str:
        return f"<ProtocolState {self.service} {self.role.value} {self.phase.value}>"

    # -- the two directions --------------------------------------------------------------

    def send(self, msg: p.ClientMessage | p.ServerMessage) -> None:
        """Check and apply a message this end is about to send."""
        if self.role is Role.CLIENT:
            self._client_message(msg)
        else:
            self._server_message(msg)

    def receive(self, msg: p.ClientMessage | p.ServerMessage) -> None:
        """Check and apply a message this end received (a client ignores ``Unknown`` ones)."""
        if self.role is Role.CLIENT:
            self._server_message(msg)
        else:
            self._client_message(msg)

    def client_type_allowed(self, kind: str) -> bool:
        """Whether the service accepts client messages of ``kind`` at all (names the right error)."""
        return kind in CLIENT_TYPES[self.service]

    @property
    def idle(self) -> bool:
        """Ready, and nothing owed either way: a client may hand the session to another request."""
        return (
            self.phase is Phase.READY
            and not self.flushing
            and not self.open.audio
            and not self.text_open
            and not self.utterances_owed
        )

    # -- client -> server ----------------------------------------------------------------

    def _client_message(self, msg: p.ClientMessage | p.ServerMessage) -> None:
        self._check_type(msg.type, CLIENT_TYPES, "unknown message type {kind} for the {service} endpoint")
        if isinstance(msg, p.Ping):
            return
        if isinstance(msg, (p.SttInit, p.TtsInit)):
            if self.phase is not Phase.NEW:
                raise ProtocolError(ErrorCode.INVALID_MESSAGE, "the session is already initialized")
            self.phase = Phase.INITIALIZING
            return
        if self.phase is not Phase.READY:
            raise ProtocolError(ErrorCode.NOT_INITIALIZED, "send an init message first")
        if isinstance(msg, p.Audio):
            self.open.audio = True
        elif isinstance(msg, p.Command):
            self.flushing.append(self.open)
            self.open = RecognitionState()
        elif isinstance(msg, p.Text):
            if msg.is_final:
                self.text_open = False
                self.utterances_owed += 1
            else:
                self.text_open = True

    # -- server -> client ----------------------------------------------------------------

    def _server_message(self, msg: p.ClientMessage | p.ServerMessage) -> None:
        if isinstance(msg, p.Unknown):
            if self.role is Role.SERVER:
                raise ProtocolError(ErrorCode.INTERNAL_ERROR, f"a server must not send {msg.kind!r} messages")
            return
        kind = msg.type
        self._check_type(kind, SERVER_TYPES, "unexpected {kind} message on a {service} session")
        if isinstance(msg, p.Pong):
            return
        if isinstance(msg, p.Error):
            self._on_error()
            return
        if isinstance(msg, (p.SttReady, p.TtsReady)):
            if self.phase is not Phase.INITIALIZING:
                raise ProtocolError(ErrorCode.INVALID_MESSAGE, "'ready' without an init waiting for it")
            self._name(self.open, msg.request_id)
            self.phase = Phase.READY
            self.ready = msg
            return
        if self.phase is not Phase.READY:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"{p.quoted(kind)} before 'ready'")
        if isinstance(msg, p.Transcript):
            self._name(self.flushing[0] if self.flushing else self.open, msg.request_id)
        elif isinstance(msg, p.FlushDone):
            if not self.flushing:
                raise ProtocolError(ErrorCode.INVALID_MESSAGE, "'flush_done' without a flush")
            self._name(self.flushing[0], msg.request_id)  # checks before anything changes
            self.last_flushed = self.flushing.popleft()
        elif isinstance(msg, p.Audio):
            if not self.utterances_owed and not self.text_open:
                raise ProtocolError(ErrorCode.INVALID_MESSAGE, "'audio' without text to speak")
            if msg.is_final:
                if not self.utterances_owed:
                    raise ProtocolError(ErrorCode.INVALID_MESSAGE, "final 'audio' before the utterance ended")
                self.utterances_owed -= 1

    def _check_type(self, kind: str, allowed: dict[Service, frozenset[str]], refusal: str) -> None:
        """Refuse a message type this direction of this service does not have (``refusal`` names it)."""
        if kind not in allowed[self.service]:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, refusal.format(kind=p.quoted(kind), service=self.service))

    def _on_error(self) -> None:
        if self.phase is Phase.INITIALIZING:
            self.phase = Phase.NEW  # init refused: another may follow
        elif self.service == "tts":
            # The server drops the utterance an error is about: the oldest owed one, else the open one.
            if self.utterances_owed:
                self.utterances_owed -= 1
            else:
                self.text_open = False

    def _name(self, rec: RecognitionState, request_id: str) -> None:
        """Give ``rec`` its id on first sight; a server must then keep to it."""
        if not request_id:
            return
        if rec.request_id is None:
            if self.role is Role.SERVER and request_id in self._used_ids:
                raise ProtocolError(ErrorCode.INTERNAL_ERROR, f"request id {request_id} is reused by a new session")
            rec.request_id = request_id
        elif rec.request_id != request_id and self.role is Role.SERVER:
            raise ProtocolError(
                ErrorCode.INTERNAL_ERROR, f"a message of recognition session {rec.request_id} names {request_id}"
            )
        self._used_ids.add(rec.request_id or request_id)
