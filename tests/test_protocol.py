"""The sans-I/O protocol core: parsing, validation, serialisation, redaction."""

import base64
import json

import pytest

from voxbeam import protocol as p
from voxbeam.protocol import ErrorCode, ProtocolError

pytestmark = pytest.mark.smoke


def code_of(frame, service="stt"):
    with pytest.raises(ProtocolError) as info:
        p.parse_client_message(frame, service)
    return info.value.code


def test_stt_init_defaults_and_fields():
    msg = p.parse_client_message('{"type":"init","format":"pcm","sample_rate":8000,"enable_timestamps":true}', "stt")
    assert msg == p.SttInit(sample_rate=8000, enable_timestamps=True)
    assert p.parse_client_message('{"type":"init"}', "stt") == p.SttInit()


def test_stt_init_redaction_extension_and_final_entities_round_trip():
    parse = p.parse_client_message
    assert parse('{"type":"init","redact":"all","profanity":"tag"}', "stt").redact == ("all",)
    msg = parse('{"type":"init","redact":["CARD_NUMBER","email"],"phone_region":"GB"}', "stt")
    assert (msg.redact, msg.phone_region, msg.profanity) == (("CARD_NUMBER", "email"), "GB", None)
    assert parse('{"type":"init","redact":[]}', "stt").redact is None
    for bad in ('{"type":"init","redact":3}', '{"type":"init","redact":[3]}', '{"type":"init","redact":[""]}'):
        assert code_of(bad) is ErrorCode.INVALID_MESSAGE
    card = p.TranscriptEntity("CARD_NUMBER", 900, 4100, 0.95)
    final = p.Transcript("r1", "My card is [CARD_NUMBER].", True, entities=(card,))
    wire = json.loads(p.serialize(final))
    assert wire["entities"] == [{"type": "CARD_NUMBER", "start_ms": 900, "end_ms": 4100, "confidence": 0.95}]
    assert p.parse_server_message(p.serialize(final)) == final
    # A plain session's finals keep the spec's shape.
    assert "entities" not in json.loads(p.serialize(p.Transcript("r1", "hi", True)))


def test_spec_tts_init_example_parses():
    frame = json.dumps(
        {
            "type": "init",
            "voice_id": "vl-xiaoxiao",
            "language": "zh-CN",
            "format": "wav",
            "sample_rate": 16000,
            "speed": 1.0,
            "pitch": 0,
            "volume": 1.0,
            "voice_config": {"style": "cheerful", "role": "Girl", "degree": 0.5},
        }
    )
    msg = p.parse_client_message(frame, "tts")
    assert isinstance(msg, p.TtsInit)
    assert msg.voice_id == "vl-xiaoxiao" and msg.voice_config == {"style": "cheerful", "role": "Girl", "degree": 0.5}


@pytest.mark.parametrize(
    ("frame", "service", "code"),
    [
        ("{not json", "stt", ErrorCode.INVALID_MESSAGE),
        ("[1,2]", "stt", ErrorCode.INVALID_MESSAGE),
        ('{"type":"dance"}', "stt", ErrorCode.INVALID_MESSAGE),
        (b'{"type":"ping"}', "stt", ErrorCode.INVALID_MESSAGE),
        ('{"type":"init","format":"mp3"}', "stt", ErrorCode.UNSUPPORTED_FORMAT),
        ('{"type":"init","sample_rate":96000}', "stt", ErrorCode.UNSUPPORTED_SAMPLE_RATE),
        ('{"type":"init","sample_rate":"16000"}', "stt", ErrorCode.INVALID_MESSAGE),
        ('{"type":"init","sample_rate":true}', "stt", ErrorCode.INVALID_MESSAGE),
        ('{"type":"audio","data":"***"}', "stt", ErrorCode.INVALID_AUDIO),
        ('{"type":"audio"}', "stt", ErrorCode.INVALID_MESSAGE),
        ('{"type":"command","command":"reboot"}', "stt", ErrorCode.INVALID_MESSAGE),
        ('{"type":"text","text":"hi"}', "stt", ErrorCode.INVALID_MESSAGE),
        ('{"type":"init","format":"aiff"}', "tts", ErrorCode.UNSUPPORTED_FORMAT),
        ('{"type":"text"}', "tts", ErrorCode.INVALID_MESSAGE),
        ('{"type":"audio","data":""}', "tts", ErrorCode.INVALID_MESSAGE),
    ],
)
def test_bad_frames_get_the_right_code(frame, service, code):
    assert code_of(frame, service) == code


def test_audio_roundtrip_and_ogg_alias():
    data = bytes(range(256))
    frame = p.serialize(p.Audio(data=data, is_final=True))
    assert json.loads(frame)["data"] == base64.b64encode(data).decode()
    assert p.parse_server_message(frame) == p.Audio(data=data, is_final=True)
    assert p.parse_client_message('{"type":"init","format":"ogg"}', "tts").format == "opus"


def test_transcript_roundtrip_keeps_words():
    t = p.Transcript(
        request_id="req_1",
        text="hello world",
        is_final=True,
        offset=10,
        duration=900,
        language="en-US",
        confidence=0.9,
        words=(p.TranscriptWord("hello", 10, 400, 0.9), p.TranscriptWord("world", 500, 400, 0.8)),
    )
    assert p.parse_server_message(p.serialize(t)) == t
    partial = p.Transcript(request_id="req_1", text="hel", is_final=False)
    assert "words" not in json.loads(p.serialize(partial))


def test_error_shape_matches_design():
    frame = json.loads(p.serialize(p.error(ErrorCode.VOICE_NOT_FOUND, "Invalid voice_id", "req_9")))
    assert frame == {"type": "error", "error": "Invalid voice_id", "code": "VOICE_NOT_FOUND", "request_id": "req_9"}
    assert p.RETRYABLE_CODES == {"SERVER_BUSY", "IDLE_TIMEOUT", "INTERNAL_ERROR"}


def test_redact_hides_tokens():
    line = "GET /v1/stt/realtime?token=s3cr3t&x=1 and wss://h/p?a=1&token=abc"
    out = p.redact(line)
    assert "s3cr3t" not in out and "abc" not in out and "x=1" in out


def test_redact_hides_url_passwords_and_credential_headers_and_is_idempotent():
    line = "could not connect to ws://alice:p@ss:w0rd@host:81/v1/stt/realtime?token=abc: refused"
    once = p.redact(line)
    assert "p@ss" not in once and "w0rd" not in once and "abc" not in once
    assert "ws://alice:***@host:81" in once and "token=***" in once
    assert p.redact(once) == once
    masked = "could not connect to ws://h/v1/stt/realtime?token=***: connection refused"
    assert p.redact(masked) == masked  # a masked value is not masked again, so what follows it survives
    headers = p.redact("> Authorization: Basic YWxpY2U6cHc=\n> X-Api-Key: k3y\n> Host: h")
    assert "YWxpY2U6cHc=" not in headers and "k3y" not in headers and "Host: h" in headers


def test_unknown_server_types_are_an_error_unless_allowed():
    frame = '{"type":"status","note":"newer service"}'
    with pytest.raises(p.ProtocolError):
        p.parse_server_message(frame)
    assert p.parse_server_message(frame, allow_unknown=True) == p.Unknown("status")
    ready = p.parse_server_message('{"type":"ready","request_id":"r","language":"en-US"}', "tts")
    assert isinstance(ready, p.TtsReady) and ready.voice_id == ""  # the session's kind decides, not the fields
