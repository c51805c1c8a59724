"""What audio containers declare about their own length, read from their bytes, to catch cut files.

FFmpeg decodes a cut file as far as it goes and calls that the file: a WAV's duration comes
from its size, an Ogg stream's from its last page, an m4a whose index was at the end does not
open at all. The containers themselves say how long they are (a WAV's data chunk, an MP4's
boxes, an Ogg stream's end-of-stream page), so a file cut short can be told from a short file.
``truncation`` reads those few bytes (a header, the boxes' sizes, the last 256 KiB of an Ogg
file) and says what is missing; ``mp3_declares_length`` says whether an MP3's duration is its own
(and can be compared with what decodes) rather than FFmpeg's estimate from its size.
"""

from __future__ import annotations

import struct
from typing import IO

_OGG_TAIL = 256 * 1024  # Ogg pages are at most 65,307 bytes: the last whole page is in here
_MP4_TOP_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"uuid", b"pdin", b"meta", b"moof", b"mfra"}


def truncation(fh: IO[bytes]) -> str | None:
    """Why the container in ``fh`` is cut short, or None (whole, or a container not parsed here).

    Leaves ``fh`` at its start. Needs a seekable file.
    """
    try:
        size = fh.seek(0, 2)
        fh.seek(0)
        head = fh.read(64)
        if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
            return _wav(fh, size)
        if head[:4] == b"OggS":
            return _ogg(fh, size)
        if head[4:8] in _MP4_TOP_BOXES:
            return _mp4(fh, size)
        return None
    finally:
        fh.seek(0)


def mp3_declares_length(fh: IO[bytes]) -> bool:
    """Whether an MP3's first frame is a Xing, Info or VBRI frame: the only place an MP3 states its length.

    Without one, FFmpeg estimates the duration from the bitrate and the file's size, which a cut
    file matches. Leaves ``fh`` at its start.
    """
    try:
        fh.seek(0)
        head = fh.read(10)
        skip = 0
        if head[:3] == b"ID3" and len(head) == 10:  # ID3v2: a synchsafe size, then the first frame
            skip = 10 + ((head[6] & 0x7F) << 21 | (head[7] & 0x7F) << 14 | (head[8] & 0x7F) << 7 | head[9] & 0x7F)
        fh.seek(skip)
        first_frame = fh.read(256)
        return any(tag in first_frame for tag in (b"Xing", b"Info", b"VBRI"))
    finally:
        fh.seek(0)


# FFmpeg's duration for these is always an estimate from bitrate and size.
ESTIMATED_DURATION_FORMATS = frozenset({"aac", "adts", "ac3", "eac3", "mp2"})


def _wav(fh: IO[bytes], size: int) -> str | None:
    """The data chunk's declared size against the bytes after it."""
    offset = 12
    byte_rate = 0
    while offset + 8 <= size:
        fh.seek(offset)
        chunk_id, chunk_size = struct.unpack("<4sI", fh.read(8))
        if chunk_id == b"fmt ":
            fmt = fh.read(min(chunk_size, 16))
            if len(fmt) >= 12:
                byte_rate = struct.unpack("<I", fmt[8:12])[0]
        elif chunk_id == b"data":
            present = size - offset - 8
            if chunk_size in (0, 0xFFFFFFFF) or present >= chunk_size:  # 0 and ~0: written by a streamer
                return None
            seconds = f" ({chunk_size / byte_rate:.2f} s)" if byte_rate else ""
            held = f" ({present / byte_rate:.2f} s)" if byte_rate else ""
            return (
                f"the file is truncated: its WAV header declares {chunk_size:,} bytes of audio{seconds}, "
                f"it holds {present:,}{held}"
            )
        offset += 8 + chunk_size + (chunk_size & 1)
    if offset > size:
        return (
            f"the file is truncated: a WAV chunk before the audio declares {offset - size:,} bytes more than it holds"
        )
    return None


def _ogg_crc(page: bytes) -> int:
    crc = 0
    for byte in page:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _OGG_CRC_TABLE[(crc >> 24) ^ byte]
    return crc


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) & 0xFFFFFFFF if r & 0x80000000 else (r << 1) & 0xFFFFFFFF
        table.append(r)
    return table


_OGG_CRC_TABLE = _crc_table()


def _ogg_page_length(data: bytes, at: int) -> int | None:
    """Length of the page whose header starts at ``at``, or None when the header itself is cut."""
    if at + 27 > len(data):
        return None
    segments = data[at + 26]
    if at + 27 + segments > len(data):
        return None
    return 27 + segments + sum(data[at + 27 : at + 27 + segments])


def _ogg_page_is_real(data: bytes, at: int, length: int) -> bool:
    page = data[at : at + length]
    if page[4] != 0:  # stream structure version
        return False
    stored = struct.unpack("<I", page[22:26])[0]
    return _ogg_crc(page[:22] + b"\0\0\0\0" + page[26:]) == stored


def _ogg_seconds(first_page: bytes, granule: int) -> float | None:
    """Seconds at ``granule`` for Opus (always 48 kHz) and Vorbis (its own rate); None for other codecs."""
    if b"OpusHead" in first_page:
        return granule / 48000
    at = first_page.find(b"\x01vorbis")
    if at >= 0 and len(first_page) >= at + 16:
        rate = struct.unpack("<I", first_page[at + 12 : at + 16])[0]
        return granule / rate if rate else None
    return None


def _ogg(fh: IO[bytes], size: int) -> str | None:
    """The last page must be whole and carry the end-of-stream flag."""
    fh.seek(0)
    first_page = fh.read(128)
    start = max(0, size - _OGG_TAIL)
    fh.seek(start)
    data = fh.read(size - start)
    last_end = None
    at = data.rfind(b"OggS")
    while at >= 0:  # from the end: the last whole page whose checksum holds is the last real one
        length = _ogg_page_length(data, at)
        if length is not None and at + length <= len(data) and _ogg_page_is_real(data, at, length):
            last_end = at + length
            break
        at = data.rfind(b"OggS", 0, at)
    if last_end is None:
        return None  # no whole page in the tail: not something this check understands
    granule = struct.unpack("<q", data[at + 6 : at + 14])[0]
    seconds = _ogg_seconds(first_page, granule) if granule >= 0 else None
    stops = f"at {seconds:.2f} s, " if seconds is not None else ""
    rest = data[last_end:]
    if rest and rest[:4] == b"OggS"[: len(rest[:4])]:  # the file ended while a page was being written
        declared = _ogg_page_length(data, last_end)
        if declared is None:
            return f"the file is truncated: its Ogg stream stops {stops}{len(rest)} bytes into a page header"
        if len(rest) < declared:
            return f"the file is truncated: its last Ogg page declares {declared:,} bytes, it holds {len(rest):,}"
        return f"the file is damaged: the Ogg page at byte {start + last_end:,} of {size:,} fails its checksum"
    if not data[at + 5] & 0x04:
        return (
            f"the file is truncated: its Ogg stream stops {stops}after {size:,} bytes, without its end-of-stream page"
        )
    return None


def _mp4(fh: IO[bytes], size: int) -> str | None:
    """Every top-level box must fit in the file, and the index ('moov') must be there."""
    offset = 0
    seen = set()
    while offset < size:
        fh.seek(offset)
        header = fh.read(16)
        if len(header) < 8:
            return f"the file is truncated: it ends inside a box header at byte {offset:,} of {size:,}"
        box_size, box_type = struct.unpack(">I4s", header[:8])
        if box_size == 1 and len(header) == 16:
            box_size = struct.unpack(">Q", header[8:16])[0]
        elif box_size == 0:  # the last box runs to the end of the file
            box_size = size - offset
        if box_size < 8:
            return None  # not a box structure we understand; leave it to the decoder
        seen.add(box_type)
        if offset + box_size > size:
            held = size - offset
            name = box_type.decode("latin-1")
            return f"the file is truncated: its '{name}' box declares {box_size:,} bytes, it holds {held:,}"
        offset += box_size
    if b"moov" not in seen and b"moof" not in seen:
        return f"the file is truncated or unfinished: its {size:,} bytes hold no 'moov' index box"
    return None
