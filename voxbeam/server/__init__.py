"""Self-hosted VoxNexus-compatible speech server: Whisper STT (faster-whisper), Piper and eSpeak NG TTS.

``main(argv)`` runs it (``python -m voxbeam.server`` / ``voxbeam serve``); ``launcher.LocalServer``
runs it as a subprocess for tests and benchmarks.
"""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until SIGTERM/SIGINT; returns the exit status."""
    from voxbeam.server.cli import main as _main

    return _main(argv)


__all__ = ["main"]
