"""Audio in and out through PyAV: streaming decode to PCM, resampling, encoders.

PCM everywhere in VoxBeam is signed 16-bit little-endian mono ("s16le"); rates are in Hz.
"""

from __future__ import annotations

import io
import struct
import wave
from collections.abc import Generator
from typing import IO, Any

import av
import numpy as np

from voxbeam import containers
from voxbeam.errors import AudioError

BYTES_PER_SAMPLE = 2

# Dead-letter codes for inputs that are not usable audio.
EMPTY_AUDIO = "EMPTY_AUDIO"
NOT_AUDIO = "NOT_AUDIO"
CORRUPT_AUDIO = "CORRUPT_AUDIO"

_CONTAINERS = {
    "wav": ("wav", "pcm_s16le"),
    "mp3": ("mp3", "libmp3lame"),
    "flac": ("flac", "flac"),
    "opus": ("ogg", "libopus"),
    "aac": ("adts", "aac"),  # the HTTP API's (OpenAI's) aac; the WebSocket protocol does not offer it
}
CONTENT_TYPES = {
    "wav": "audio/wav",
    "pcm": "audio/L16",
    "mp3": "audio/mpeg",
    "flac": "audio/flac",
    "opus": "audio/ogg",
    "aac": "audio/aac",
}
FILE_EXTENSIONS = {"wav": "wav", "pcm": "pcm", "mp3": "mp3", "flac": "flac", "opus": "ogg"}
# Rates each lossy format is made at; others become the nearest allowed rate above.
_ENCODER_RATES = {
    "opus": (48000,),
    "mp3": (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000),
}
# A stream that decodes this much shorter than its header declares is truncated. Whole files of
# every format we write or ship decode within 10 ms of their declared length (AAC priming and
# Opus pre-skip included); a cut loses at least a frame or a page, usually far more.
_TRUNCATION_SLACK_S = 0.1
_UNKNOWN = 0xFFFFFFFF


def ms(samples: int, rate: int) -> int:
    return int(round(samples * 1000 / rate))


def pcm_frame(pcm: bytes, rate: int) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(np.frombuffer(pcm, dtype="<i2").reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    return frame


def _frame_bytes(frame: av.AudioFrame) -> bytes:
    # Packed s16: one plane, every channel's samples interleaved.
    return bytes(frame.planes[0])[: frame.samples * BYTES_PER_SAMPLE * frame.layout.nb_channels]


class PcmResampler:
    """Streaming s16le mono resampler; keeps filter state across pushes."""

    def __init__(self, src_rate: int, dst_rate: int) -> None:
        self.src_rate = src_rate
        self.dst_rate = dst_rate
        self._rs = None if src_rate == dst_rate else av.AudioResampler(format="s16", layout="mono", rate=dst_rate)

    def push(self, pcm: bytes) -> bytes:
        if self._rs is None or not pcm:
            return pcm
        # A second at a time: FFmpeg's resampler keeps buffers as large as the largest frame it was given
        # (a sentence of minutes kept tens of MiB in a TTS worker after it was done).
        step = self.src_rate * BYTES_PER_SAMPLE
        return b"".join(
            _frame_bytes(f)
            for i in range(0, len(pcm), step)
            for f in self._rs.resample(pcm_frame(pcm[i : i + step], self.src_rate))
        )

    def flush(self) -> bytes:
        if self._rs is None:
            return b""
        out = b"".join(_frame_bytes(f) for f in self._rs.resample(None))
        self._rs = av.AudioResampler(format="s16", layout="mono", rate=self.dst_rate)
        return out


def quietest_cut(pcm: bytes | bytearray | memoryview, rate: int, window_ms: int = 50) -> int:
    """Byte offset (sample-aligned) of the middle of the lowest-RMS window in ``pcm``.

    Whole windows only; with less than one window of audio the end of ``pcm`` is returned.
    Ties go to the latest window, which keeps segments close to their target length.
    """
    samples = np.frombuffer(pcm, dtype="<i2", count=len(pcm) // BYTES_PER_SAMPLE)
    window = max(1, rate * window_ms // 1000)
    n = len(samples) // window
    if n == 0:
        return len(samples) * BYTES_PER_SAMPLE
    frames = samples[: n * window].reshape(n, window).astype(np.float32)
    energy = np.einsum("ij,ij->i", frames, frames)  # mean square up to a constant: enough for argmin
    best = n - 1 - int(np.argmin(energy[::-1]))
    return (best * window + window // 2) * BYTES_PER_SAMPLE


def resample(pcm: bytes, src_rate: int, dst_rate: int) -> bytes:
    rs = PcmResampler(src_rate, dst_rate)
    return rs.push(pcm) + rs.flush()


def decode_to_pcm(
    source: str | IO[bytes], rate: int = 16000, chunk_ms: int = 200, *, keep_channels: bool = False
) -> Generator[bytes, None, None]:
    """Decode any container PyAV reads to PCM s16le mono at ``rate``, chunk by chunk (``keep_channels``:
    the first audio stream's own channels, interleaved; ``voxbeam.channels`` splits them).

    Streams: memory stays bounded by one chunk plus the decoder's own buffers. Raises
    ``AudioError`` with EMPTY_AUDIO, NOT_AUDIO or CORRUPT_AUDIO: a file cut short (its container
    declares more than it holds, or more than decodes) or one whose data breaks off mid-stream;
    the message gives both lengths.
    """
    if isinstance(source, str):
        with open(source, "rb") as fh:
            yield from decode_to_pcm(fh, rate, chunk_ms, keep_channels=keep_channels)
        return
    checkable = _seekable(source)
    cut = containers.truncation(source) if checkable else None
    if cut:
        raise AudioError(cut, code=CORRUPT_AUDIO)
    # Before FFmpeg reads the file: it shares the file object, and its position.
    mp3_length_declared = checkable and containers.mp3_declares_length(source)
    try:
        container = av.open(source, mode="r", metadata_errors="ignore")
    except av.error.FileNotFoundError:
        raise
    except (av.FFmpegError, ValueError, OSError) as exc:
        code = EMPTY_AUDIO if _is_empty(source) else NOT_AUDIO
        raise AudioError(f"not an audio file: {ffmpeg_words(exc)}", code=code) from None
    try:
        if not container.streams.audio:
            raise AudioError("the file has no audio stream", code=NOT_AUDIO)
        stream = container.streams.audio[0]
        declared = _declared_seconds(stream)
        fmt = container.format.name
        if fmt in containers.ESTIMATED_DURATION_FORMATS or (fmt == "mp3" and not mp3_length_declared):
            declared = None
        width = stream.channels if keep_channels else 1  # samples per instant
        chunk_bytes = max(1, rate * chunk_ms // 1000) * BYTES_PER_SAMPLE * width
        layout = stream.layout.name if keep_channels else "mono"
        resampler = av.AudioResampler(format="s16", layout=layout, rate=rate)
        buf = bytearray()
        total = 0
        try:
            for packet in container.demux(stream):
                for frame in packet.decode():
                    for out in resampler.resample(frame):
                        buf += _frame_bytes(out)
                    while len(buf) >= chunk_bytes:
                        total += chunk_bytes
                        yield bytes(buf[:chunk_bytes])
                        del buf[:chunk_bytes]
            for out in resampler.resample(None):
                buf += _frame_bytes(out)
        except av.FFmpegError as exc:
            decoded = (total + len(buf)) / BYTES_PER_SAMPLE / width / rate
            of = f" of the {declared:.2f} s its header declares" if declared is not None else ""
            why = "FFmpeg finds invalid data there" if isinstance(exc, av.error.InvalidDataError) else ffmpeg_words(exc)
            raise AudioError(
                f"the audio breaks off after {decoded:.2f} s{of} ({why}): the file is truncated or damaged",
                code=CORRUPT_AUDIO,
            ) from None
        if buf:
            total += len(buf)
            yield bytes(buf)
        if total == 0:
            raise AudioError("the file holds no audio samples", code=EMPTY_AUDIO)
        decoded = total / BYTES_PER_SAMPLE / width / rate
        if declared is not None and declared - decoded > _TRUNCATION_SLACK_S:
            raise AudioError(
                f"the file is truncated: its header declares {declared:.2f} s of audio, only {decoded:.2f} s decode",
                code=CORRUPT_AUDIO,
            )
    finally:
        container.close()


def _seekable(source: IO[bytes]) -> bool:
    try:
        return bool(source.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def ffmpeg_words(exc: BaseException) -> str:
    """What FFmpeg's error means, without its errno number and path."""
    if isinstance(exc, av.error.InvalidDataError):
        return "FFmpeg finds no audio format it knows in the data"
    text = getattr(exc, "strerror", None) or str(exc)
    return f"{text[:1].lower()}{text[1:]}" if text else type(exc).__name__


def _is_empty(source: str | IO[bytes]) -> bool:
    try:
        if isinstance(source, str):
            with open(source, "rb") as fh:
                return not fh.read(1)
        pos = source.tell()
        source.seek(0)
        empty = not source.read(1)
        source.seek(pos)
        return empty
    except (OSError, ValueError, AttributeError):
        return False


def _declared_seconds(stream: Any) -> float | None:
    """The stream's duration as FFmpeg reports it (whether the file declared it is checked apart)."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return None


def delivered_rate(fmt: str, rate: int) -> int:
    """The rate a file of ``fmt`` asked for at ``rate`` really has.

    Opus always runs at 48 kHz inside (decoders give 48 kHz whatever was put in), so Opus files
    are made at 48 kHz; MP3 has nine rates, and others become the nearest allowed one above.
    """
    allowed = _ENCODER_RATES.get(fmt)
    if not allowed or rate in allowed:
        return rate
    return next((r for r in allowed if r >= rate), allowed[-1])


def _wav_header(rate: int, data_bytes: int | None) -> bytes:
    """A 44-byte PCM WAV header; ``None`` declares an unknown length (0xFFFFFFFF, as streams do)."""
    size = _UNKNOWN if data_bytes is None else data_bytes
    riff = _UNKNOWN if data_bytes is None else 36 + data_bytes
    byte_rate = rate * BYTES_PER_SAMPLE
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        riff,
        b"WAVE",
        b"fmt ",
        16,
        1,
        1,
        rate,
        byte_rate,
        BYTES_PER_SAMPLE,
        16,
        b"data",
        size,
    )


def finalize_wav(data: bytes) -> bytes:
    """A streamed WAV (unknown length) with its sizes written in, once all of it is here."""
    if len(data) >= 44 and data[:4] == b"RIFF" and data[8:12] == b"WAVE" and data[40:44] == b"\xff\xff\xff\xff":
        n = len(data) - 44
        return data[:4] + struct.pack("<I", 36 + n) + data[8:40] + struct.pack("<I", n) + data[44:]
    return data


class _Sink:
    """A write-only, non-seekable file for PyAV: muxers then write as they go and never rewrite."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


def _add_stream(out: Any, fmt: str, rate: int) -> Any:
    _, codec = _CONTAINERS[fmt]
    stream = out.add_stream(codec, rate=rate, layout="mono")
    if fmt == "mp3":
        stream.bit_rate = 64000
    elif fmt == "opus":
        stream.bit_rate = 32000
    return stream


class StreamEncoder:
    """Encodes an utterance piece by piece; the pieces' bytes concatenate into one file of ``fmt``.

    ``rate`` must be ``delivered_rate(fmt, rate)``. WAV gets a header declaring an unknown length
    (read to the end by FFmpeg, browsers and sox; ``finalize_wav`` writes the sizes in), FLAC a
    STREAMINFO without a sample count, MP3 no Xing header: what a stream can be.
    """

    def __init__(self, fmt: str, rate: int) -> None:
        if delivered_rate(fmt, rate) != rate:
            raise ValueError(f"{fmt} cannot be made at {rate} Hz; use delivered_rate()")
        self.fmt = fmt
        self.rate = rate
        self._started = False
        self._pts = 0
        self._out: Any = None
        self._sink = _Sink()
        if fmt in _CONTAINERS and fmt != "wav":
            self._out = av.open(self._sink, mode="w", format=_CONTAINERS[fmt][0])
            self._stream = _add_stream(self._out, fmt, rate)

    def write(self, pcm: bytes) -> bytes:
        """The file's next bytes, for ``pcm`` (PCM s16le mono at ``rate``)."""
        if self._out is None:
            head = b"" if self._started or self.fmt == "pcm" else _wav_header(self.rate, None)
            self._started = True
            return head + pcm
        if pcm:
            frame = pcm_frame(pcm, self.rate)
            frame.pts = self._pts
            self._pts += len(pcm) // BYTES_PER_SAMPLE
            for packet in self._stream.encode(frame):
                self._out.mux(packet)
        return self._sink.take()

    def close(self) -> bytes:
        """The file's last bytes (what the encoder held back, the container's trailer)."""
        if self._out is None:
            return b"" if self._started or self.fmt == "pcm" else _wav_header(self.rate, 0)
        for packet in self._stream.encode(None):
            self._out.mux(packet)
        self._out.close()
        self._out = None
        self._started = True
        return self._sink.take()


def encode(pcm: bytes, rate: int, fmt: str) -> bytes:
    """Encode a whole utterance of PCM into one file of ``fmt`` (wav, pcm, mp3, flac, opus).

    The file's rate is ``delivered_rate(fmt, rate)`` (PCM is resampled to it when they differ).
    """
    if fmt == "pcm":
        return pcm
    if fmt == "wav":
        # A plain 44-byte header: opening an FFmpeg muxer costs more than the copy it wraps.
        return _wav_header(rate, len(pcm)) + pcm
    out_rate = delivered_rate(fmt, rate)
    if out_rate != rate:
        pcm = resample(pcm, rate, out_rate)
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=_CONTAINERS[fmt][0]) as out:
        stream = _add_stream(out, fmt, out_rate)
        step = out_rate * BYTES_PER_SAMPLE  # one second per frame keeps memory flat
        pts = 0
        for i in range(0, len(pcm), step):
            piece = pcm[i : i + step]
            frame = pcm_frame(piece, out_rate)
            frame.pts = pts
            pts += len(piece) // BYTES_PER_SAMPLE
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def duration_ms(data: bytes | str) -> int:
    """Exact duration of an encoded file (used for manifests and checks).

    WAV from its header (a WAV of ours is written whole, so its sizes are right); other
    containers by decoding, since their headers round to frames or omit the encoder's padding.
    """
    if isinstance(data, bytes) and data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        try:
            with wave.open(io.BytesIO(finalize_wav(data)), "rb") as w:
                return ms(w.getnframes(), w.getframerate())
        except (wave.Error, EOFError):
            pass  # not a plain PCM WAV: decode it
    samples = 0
    source: str | IO[bytes] = io.BytesIO(data) if isinstance(data, bytes) else data
    for chunk in decode_to_pcm(source, rate=16000, chunk_ms=1000):
        samples += len(chunk) // BYTES_PER_SAMPLE
    return ms(samples, 16000)
