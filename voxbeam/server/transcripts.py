"""An engine's result as the protocol's transcript, with the redaction a session asked for applied."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from voxbeam import protocol as p
from voxbeam.protocol import ErrorCode
from voxbeam.redaction import Policy, WordLike, parse_types
from voxbeam.server.engines.base import Recognized

# What /healthz ``capabilities`` adds to the model's controls: the init extensions every model honours,
# because the server applies them to the text (voxbeam.redaction), not the engine.
REDACTION_CAPABILITIES = ("profanity", "redact")


def redaction_policy(msg: p.SttInit) -> Policy | None:
    """The redaction an init asks for (``redact``, ``phone_region``, ``profanity``), None for none.

    A name this server does not know is UNSUPPORTED_OPTION naming the field and what it knows: a newer
    service may know it, and a client must not believe a value masked that is not.
    """
    checks = (
        ("redact", lambda: parse_types(msg.redact or ())),
        ("phone_region", lambda: Policy.of(phone_region=msg.phone_region)),
        ("profanity", lambda: Policy.of(profanity=msg.profanity)),
    )
    for name, check in checks:
        try:
            check()
        except ValueError as exc:
            raise p.ProtocolError(ErrorCode.UNSUPPORTED_OPTION, f"'{name}': {str(exc)[:300]}") from None
    policy = Policy.of(msg.redact, phone_region=msg.phone_region, profanity=msg.profanity)
    return policy if policy.enabled else None


def redacted(
    r: Recognized,
    request_id: str,
    policy: Policy,
    *,
    words: bool,
    language: str | None,
    before: Sequence[WordLike],
) -> p.Transcript:
    """``r`` as a transcript with ``policy`` applied: a partial's text (the stricter partial policy), or a
    final's text and words, with its ``entities``. ``words``: whether the client asked for word timings
    (the engine times words for a redacting session either way, so that entities have their times);
    ``before``: the session's words before it (see ``Policy.final``)."""
    out = transcript(r, request_id)
    if not r.is_final:
        return dataclasses.replace(out, text=policy.partial(r.text, language))
    done = policy.final(
        r.words, r.text, offset_ms=r.offset_ms, duration_ms=r.duration_ms, language=language, before=before
    )
    return dataclasses.replace(
        out,
        text=done.text,
        words=tuple(p.TranscriptWord(w.word, w.offset_ms, w.duration_ms, w.confidence) for w in done.words)
        if words and r.words
        else None,
        entities=tuple(p.TranscriptEntity(e.type, e.start_ms, e.end_ms, e.confidence) for e in done.entities),
    )


def transcript(r: Recognized, request_id: str) -> p.Transcript:
    return p.Transcript(
        request_id=request_id,
        text=r.text,
        is_final=r.is_final,
        offset=r.offset_ms,
        duration=r.duration_ms,
        language=r.language if r.is_final else None,
        language_probability=r.language_probability if r.is_final else None,
        confidence=r.confidence if r.is_final else None,
        words=None
        if r.words is None or not r.is_final
        else tuple(p.TranscriptWord(w.word, w.offset_ms, w.duration_ms, w.confidence) for w in r.words),
    )
