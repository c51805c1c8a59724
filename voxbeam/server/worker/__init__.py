"""Engine worker processes: ``parent`` is the server's end of each pipe, ``child`` the worker's.

Messages, server to worker: ``(number, op, args, sent_at)`` (``number`` None: no reply wanted;
``sent_at`` is ``time.monotonic()``, one clock for every process of the machine), or
``(CANCEL, number)`` (the call is no longer wanted: skipped if not started). Worker to server:
``(READY, pid)`` or ``(FAILED, why)`` once at start, then per call ``(DONE, number, payload)``,
``(ERROR, number, code, message)`` or, for a cancelled call it did not start, ``(SKIPPED, number)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from voxbeam.server.engines.base import SttModel, SttSettings

READY = "ready"
FAILED = "failed"
DONE = "done"
ERROR = "error"
SKIPPED = "skipped"
CANCEL = "cancel"


@dataclass(frozen=True)
class WorkerSpec:
    """What every worker process loads."""

    stt: SttSettings
    # TTS engine threads; ONNX Runtime's intra-op pool (threads x workers <= cores).
    tts_threads: int = 1
    # Voices loaded before the worker says ready (the default voice), so no session pays the load.
    preload_voices: tuple[object, ...] = ()
    # The other models served (--stt_model tiny.en,base): each loaded when a call first needs it, with
    # ``stt``'s settings. Lazily, because a worker holds a model it was never asked for otherwise (base:
    # ~150 MiB each) and starts slower; the watchdog counts a loaded one as the worker's own memory.
    stt_tiers: tuple[SttModel, ...] = ()
    # The speaker model sessions diarize with (its engines.diarizer label: installed and verified), loaded on
    # first use; None: sessions may not diarize.
    diarization: str | None = None
