"""Heap settings for the server's processes (the front and every worker)."""

from __future__ import annotations

import ctypes


def keep_large_buffers_out_of_the_heap(threshold: int = 128 * 1024) -> bool:
    """Pin glibc's mmap threshold so audio-sized buffers are mmapped and go back to the OS when freed.

    By default glibc raises the threshold after the first large free (up to 32 MiB); from then on
    audio buffers come from the heap, which fragments and never shrinks: the front process grew
    by ~60-100 MB per wave of clients that asked for long syntheses and never read them, and
    kept it. Returns False where this is not glibc (nothing to do).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_mmap_threshold = -3
    return bool(libc.mallopt(m_mmap_threshold, threshold))
