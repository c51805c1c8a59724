"""Heap settings for the server's processes (the front and every worker)."""

from __future__ import annotations

import ctypes


def keep_large_buffers_out_of_the_heap(threshold: int = 128 * 1024, trim: int | None = None) -> bool:
    """Pin glibc's mmap threshold so audio-sized buffers are mmapped and go back to the OS when freed.

    By default glibc raises the threshold after the first large free (up to 32 MiB); from then on
    audio buffers come from the heap, which fragments and never shrinks: the front process grew
    by ~60-100 MB per wave of clients that asked for long syntheses and never read them, and
    kept it. ``trim``: how much free memory the heap's top may keep. Pinning the threshold also
    pins this at 128 KiB, so a process whose every call allocates and frees a few MiB hands
    them back and page-faults them in again each time (a Whisper worker: ~10 % more CPU).
    Returns False where this is not glibc (nothing to do).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8
    if not libc.mallopt(m_arena_max, 1):
        return False
    if trim is not None and not libc.mallopt(m_trim_threshold, trim):
        return False
    return bool(libc.mallopt(m_mmap_threshold, threshold))


def give_back() -> None:
    """Return the heap's free memory to the OS now (glibc's malloc_trim), whatever the trim threshold."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass
