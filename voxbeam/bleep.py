"""A copy of an audio file with time spans replaced by a 1 kHz tone or by silence (``--redact_audio``).

PyAV, like ``audio.py``; it knows nothing of redaction (``voxbeam.redaction`` must stay free of PyAV):
it is given millisecond spans. The copy keeps the input's sample rate and channel count, and its
container and codec where PyAV (FFmpeg) can write them; otherwise it is FLAC (WAV when FLAC cannot
hold it, e.g. more than 8 channels), which ``Bleeped.container_kept`` says. Spans are replaced on
every channel. A lossy input (MP3, AAC, Opus) is decoded and encoded again, at its own bit rate:
the copy loses a generation of quality.
"""

from __future__ import annotations

import io
import math
import posixpath
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

import av
import numpy as np

from voxbeam.audio import CORRUPT_AUDIO, NOT_AUDIO, ffmpeg_words
from voxbeam.errors import AudioError

MODES = ("tone", "silence")
TONE_HZ = 1000
# -12 dBFS: plainly audible over speech at normal levels without being painful on headphones.
TONE_LEVEL = 0.25
# The tone fades in and out over this long, so its edges do not click.
FADE_MS = 5
# Whisper's word times are off by up to about a tenth of a second; a value's first or last syllable
# must not survive the bleep, so each span is widened by this much on both sides.
PAD_MS = 150

_OCTET = "application/octet-stream"
# FFmpeg's name for a demuxer -> (muxer, content type); the MP4 and Matroska families by file extension.
_MUXERS: dict[str, tuple[str, str]] = {
    "wav": ("wav", "audio/wav"),
    "flac": ("flac", "audio/flac"),
    "mp3": ("mp3", "audio/mpeg"),
    "ogg": ("ogg", "audio/ogg"),
    "aiff": ("aiff", "audio/aiff"),
    "caf": ("caf", "audio/x-caf"),
    "au": ("au", "audio/basic"),
    "aac": ("adts", "audio/aac"),
}
_MP4 = {"m4a": ("ipod", "audio/mp4"), "mp4": ("mp4", "audio/mp4"), "mov": ("mov", "video/quicktime")}
_MP4_DEFAULT = ("mp4", "audio/mp4")
_MATROSKA = {"webm": ("webm", "audio/webm")}
_MATROSKA_DEFAULT = ("matroska", "audio/x-matroska")
# Decoders whose encoder has another name.
_ENCODERS = {"mp3float": "libmp3lame", "mp3": "libmp3lame", "opus": "libopus", "aac_fixed": "aac"}
# Where the input's own container or codec cannot be written: (muxer, encoder, extension, content type).
_FALLBACKS = (("flac", "flac", "flac", "audio/flac"), ("wav", "pcm_s16le", "wav", "audio/wav"))
_LOSSLESS = {"flac", "alac", "wavpack", "tta"}


@dataclass(frozen=True)
class Bleeped:
    """The copy's bytes and what it is."""

    data: bytes
    extension: str
    content_type: str
    codec: str
    sample_rate: int
    channels: int
    container_kept: bool


def widen(spans: Iterable[tuple[int, int]], pad_ms: int = PAD_MS) -> list[tuple[int, int]]:
    """``spans`` (start, end in ms) widened by ``pad_ms`` each side, clipped at 0, sorted, overlaps merged."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted((max(0, s - pad_ms), e + pad_ms) for s, e in spans if e > s):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def extension_of(uri: str) -> str:
    """The file extension of ``uri``, lowercase, without the dot ("" when it has none)."""
    name = posixpath.basename(uri.rstrip("/"))
    return name.rsplit(".", 1)[1].lower() if "." in name else ""


def content_type_for(extension: str) -> str:
    """The content type of a file kept as it is (a copy without spans to replace)."""
    if extension in _MP4:
        return _MP4[extension][1]
    if extension in _MATROSKA:
        return _MATROSKA[extension][1]
    if extension == "mka":
        return _MATROSKA_DEFAULT[1]
    if extension == "opus":
        return "audio/ogg"
    return _MUXERS[extension][1] if extension in _MUXERS else _OCTET


def _same_container(demuxer: str, extension: str) -> tuple[str, str] | None:
    """(muxer, content type) that writes what ``demuxer`` read, or None."""
    if demuxer in _MUXERS:
        return _MUXERS[demuxer]
    if demuxer.startswith("mov,mp4"):
        return _MP4.get(extension, _MP4_DEFAULT)
    if demuxer.startswith("matroska"):
        return _MATROSKA.get(extension, _MATROSKA_DEFAULT)
    return None


def probe(source: IO[bytes]) -> tuple[int, int]:
    """(sample rate, channels) of the first audio stream; leaves ``source`` at its start."""
    source.seek(0)
    try:
        with av.open(source, mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioError("the file has no audio stream", code=NOT_AUDIO)
            cc = container.streams.audio[0].codec_context
            return int(cc.sample_rate), int(cc.layout.nb_channels)
    except av.FFmpegError as exc:
        raise AudioError(f"not an audio file: {ffmpeg_words(exc)}", code=NOT_AUDIO) from None
    finally:
        source.seek(0)


def bleep(source: IO[bytes], spans: Sequence[tuple[int, int]], mode: str, *, extension: str = "") -> Bleeped:
    """A copy of the audio in ``source`` (seekable) with each span (start, end in ms from the first decoded
    sample, as the transcript's times are) replaced on every channel by the tone (``mode="tone"``) or silence.

    ``spans`` are used as given (``widen`` pads them). ``extension`` (the input's) chooses among a container
    family's muxers (m4a, mp4, mov; webm, mkv) and is the copy's when the container is kept. Raises
    ``AudioError`` (NOT_AUDIO, CORRUPT_AUDIO) when the input does not decode or no format can hold the copy.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be {' or '.join(MODES)}, not {mode!r}")
    source.seek(0)
    try:
        with av.open(source, mode="r", metadata_errors="ignore") as container:
            demuxer = container.format.name
            if not container.streams.audio:
                raise AudioError("the file has no audio stream", code=NOT_AUDIO)
            codec = container.streams.audio[0].codec_context.name
    except av.FFmpegError as exc:
        raise AudioError(f"not an audio file: {ffmpeg_words(exc)}", code=NOT_AUDIO) from None
    targets: list[tuple[str, str, str, str, bool]] = []
    same = _same_container(demuxer, extension)
    if same is not None:
        targets.append((same[0], _ENCODERS.get(codec, codec), extension or same[0], same[1], True))
    targets += [(m, e, x, t, False) for m, e, x, t in _FALLBACKS]
    last: Exception | None = None
    for muxer, encoder, ext, content_type, kept in targets:
        try:
            data, rate, channels = _write(source, spans, mode, muxer, encoder)
        except AudioError:
            raise
        except (av.FFmpegError, ValueError, TypeError, NotImplementedError) as exc:
            last = exc  # this format cannot hold the copy: try the next one
            continue
        return Bleeped(data, ext, content_type, encoder, rate, channels, kept)
    why = ffmpeg_words(last) if last is not None else "no format"
    raise AudioError(f"no format PyAV writes can hold the redacted copy ({why})", code=CORRUPT_AUDIO)


def _write(
    source: IO[bytes], spans: Sequence[tuple[int, int]], mode: str, muxer: str, encoder: str
) -> tuple[bytes, int, int]:
    """The copy in ``muxer`` / ``encoder``: (bytes, sample rate, channels)."""
    source.seek(0)
    buffer = io.BytesIO()
    with av.open(source, mode="r", metadata_errors="ignore") as inp:
        stream = inp.streams.audio[0]
        cc = stream.codec_context
        rate, layout = int(cc.sample_rate), cc.layout.name
        channels = int(cc.layout.nb_channels)
        with av.open(buffer, mode="w", format=muxer) as out:
            target: Any = out.add_stream(encoder, rate=rate, layout=layout)  # an audio stream: its encoder's
            formats = [f.name for f in (target.codec_context.codec.audio_formats or ())]
            if cc.format is not None and cc.format.name in formats:
                target.codec_context.format = cc.format.name  # e.g. a 24-bit FLAC stays 24-bit
            if cc.bit_rate and encoder not in _LOSSLESS and not encoder.startswith("pcm_"):
                target.codec_context.bit_rate = cc.bit_rate  # a lossy copy at the input's own bit rate
            # Float planar in between (exact for 16- and 24-bit input), so the spans are one array operation.
            to_float = av.AudioResampler(format="fltp", layout=layout, rate=rate)
            samples = [(s * rate // 1000, -(-e * rate // 1000)) for s, e in spans]
            pos = 0
            try:
                for frame in _frames(inp, stream, to_float):
                    block = frame.to_ndarray()
                    _replace(block, pos, rate, samples, mode)
                    new = av.AudioFrame.from_ndarray(
                        np.ascontiguousarray(block, dtype=np.float32), format="fltp", layout=layout
                    )
                    new.sample_rate = rate
                    new.pts = pos
                    pos += block.shape[1]
                    for packet in target.encode(new):
                        out.mux(packet)
            except av.error.InvalidDataError:
                raise AudioError("the audio breaks off: the file is truncated or damaged", code=CORRUPT_AUDIO) from None
            for packet in target.encode(None):
                out.mux(packet)
    return buffer.getvalue(), rate, channels


def _frames(inp: Any, stream: Any, to_float: av.AudioResampler) -> Iterator[av.AudioFrame]:
    for packet in inp.demux(stream):
        for frame in packet.decode():
            yield from to_float.resample(frame)
    yield from to_float.resample(None)


def _replace(block: np.ndarray, pos: int, rate: int, spans: Sequence[tuple[int, int]], mode: str) -> None:
    """Replace, in place, the samples of ``block`` (channels x n, starting at sample ``pos``) inside ``spans``."""
    n = block.shape[1]
    fade = max(1, FADE_MS * rate // 1000)
    for s0, s1 in spans:
        a, b = max(s0 - pos, 0), min(s1 - pos, n)
        if a >= b:
            continue
        if mode == "silence":
            block[:, a:b] = 0.0
            continue
        idx = np.arange(pos + a, pos + b, dtype=np.float64)
        envelope = np.minimum(1.0, np.minimum(idx - s0 + 1, s1 - idx) / fade)
        # From the file's sample index, so the phase runs on across blocks.
        block[:, a:b] = (TONE_LEVEL * envelope * np.sin(2 * math.pi * TONE_HZ * idx / rate)).astype(block.dtype)
