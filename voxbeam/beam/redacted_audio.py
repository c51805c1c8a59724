"""``--redact_audio``: a copy of each transcribed input with its entities' spans bleeped (``voxbeam.bleep``).

Every input whose transcript is written gets a copy, entities or not, so the redacted set is complete:
one without entities is copied byte for byte (``mode`` "copy"; nothing to replace, and a lossy file is
not encoded again for nothing). Copies go under the transform's prefix (a batch job's
``<output>/redacted_audio/run=<run id>/``), named after the source (``caption_basename``); each gets a
``REDACTED_AUDIO_SCHEMA`` row for the manifest.

A copy that fails withholds its transcript: the input becomes one dead letter (stage ``redact_audio``)
and nothing else, so that every input still ends in exactly one of output or dead letters, and a rerun
(``--skip_existing``, or the dead letters as ``--input``) makes both again. A transcript written without
its bleeped copy would leave a compliance user's redacted set silently incomplete.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from voxbeam import bleep
from voxbeam.beam import storage
from voxbeam.beam._dofns import DEAD_LETTERS, NAMESPACE, Row
from voxbeam.beam.rows import caption_basename, dead_letter
from voxbeam.errors import AudioError, InputError, VoxBeamError, describe_os_error

_LOG = logging.getLogger(__name__)
REDACTED_AUDIO = "redacted_audio"
REDACTED_AUDIO_MANIFEST = "redacted_audio_manifest"
STAGE = "redact_audio"
COPY = "copy"
FAILED = "REDACTED_AUDIO_FAILED"
SOURCE_CHANGED = "SOURCE_CHANGED"


@dataclass(frozen=True)
class AudioRedaction:
    """Where the copies go and how spans are replaced (``bleep.MODES``), widened by ``pad_ms`` each side."""

    prefix: str
    mode: str
    pad_ms: int = bleep.PAD_MS

    def __post_init__(self) -> None:
        if self.mode not in bleep.MODES:
            raise ValueError(f"redact_audio must be {' or '.join(bleep.MODES)}, not {self.mode!r}")
        if not self.prefix:
            raise ValueError("redact_audio needs a prefix to write the copies under")

    def copy(self, row: Row) -> Row:
        """Write the copy of ``row``'s source (``TRANSCRIPT_SCHEMA``, entities filled); its manifest row."""
        uri = row["source_uri"]
        now = storage.stat(uri)
        if (now.size, now.version) != (row.get("source_size"), row.get("source_generation_or_mtime")):
            # The transcript's times are another version's: bleeping them here could miss every value.
            raise InputError("the source changed after it was transcribed", code=SOURCE_CHANGED)
        spans = bleep.widen(((e["start_ms"], e["end_ms"]) for e in row.get("entities") or ()), self.pad_ms)
        ext = bleep.extension_of(uri)
        name = caption_basename(uri)
        with storage.open_read(uri) as fh:
            if spans:
                done, mode = bleep.bleep(fh, spans, self.mode, extension=ext), self.mode
            else:  # the bytes as they are
                rate, channels = bleep.probe(fh)
                done = bleep.Bleeped(fh.read(), ext, bleep.content_type_for(ext), COPY, rate, channels, True)
                mode = COPY
        data, ext = done.data, done.extension
        target = storage.join(self.prefix, f"{name}.{ext}" if ext else name)
        try:
            storage.write_object(
                target,
                data,
                content_type=done.content_type,
                metadata={"source_uri": uri, "source_generation_or_mtime": str(row.get("source_generation_or_mtime"))},
            )
        except OSError as exc:  # not the source's fault: not UNREADABLE
            raise VoxBeamError(f"the copy could not be written: {describe_os_error(exc)}", code=FAILED) from None
        return {
            "source_uri": uri,
            "source_generation_or_mtime": row.get("source_generation_or_mtime"),
            "uri": target,
            "bytes": len(data),
            "format": ext,
            "codec": done.codec,
            "sample_rate": done.sample_rate,
            "channels": done.channels,
            "container_kept": done.container_kept,
            "mode": mode,
            "spans": [{"start_ms": s, "end_ms": e} for s, e in spans],
        }


def copy_or_dead_letter(audio: AudioRedaction, row: Row) -> tuple[bool, Row]:
    """(True, manifest row) or (False, dead letter naming only the source: the error never quotes text)."""
    uri = row.get("source_uri")
    try:
        return True, audio.copy(row)
    except (VoxBeamError, OSError) as exc:
        _LOG.warning("redacted audio failed for %s: %s", uri, type(exc).__name__)
        return False, dead_letter(STAGE, {"uri": uri}, exc)
    except Exception as exc:  # a bug or an FFmpeg surprise: the record still ends somewhere
        _LOG.warning("redacted audio failed for %s: %s", uri, type(exc).__name__)
        why = AudioError(f"the redacted copy failed ({type(exc).__name__})", code=FAILED)
        return False, dead_letter(STAGE, {"uri": uri}, why)


@beam.typehints.with_output_types(Row, dead_letters=Row, redacted_audio=Row)
class RedactAudioFn(beam.DoFn):
    """A transcript row passes on once its source's redacted copy is written (the manifest row to
    ``redacted_audio``); else it becomes a dead letter instead. For rows redacted by the service
    (``redact_on="server"``); client-side, ``RedactFn`` does the same after masking."""

    def __init__(self, audio: AudioRedaction) -> None:
        self._audio = audio

    def setup(self) -> None:
        self._counters = CopyCounters()

    def process(self, row: Row) -> Iterator[Any]:
        ok, out = copy_or_dead_letter(self._audio, row)
        self._counters.add(ok, out)
        if not ok:
            yield TaggedOutput(DEAD_LETTERS, out)
            return
        yield row
        yield TaggedOutput(REDACTED_AUDIO, out)


class CopyCounters:
    """The copies' metrics (made in a DoFn's ``setup``; gs:// through the emulator in tests)."""

    def __init__(self) -> None:
        storage.configure_beam_for_emulator()
        self._copies = Metrics.counter(NAMESPACE, "redacted_audio_copies")
        self._bytes = Metrics.counter(NAMESPACE, "redacted_audio_bytes")
        self._failures = Metrics.counter(NAMESPACE, "redacted_audio_failures")

    def add(self, ok: bool, out: Row) -> None:
        if ok:
            self._copies.inc()
            self._bytes.inc(out["bytes"])
        else:
            self._failures.inc()
