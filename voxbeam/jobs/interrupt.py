"""Ctrl-C during a local run: the first stops it cleanly, the second quits at once.

Beam's FnApiRunner runs the pipeline in the main thread, where Python raises
KeyboardInterrupt: raised in the middle of a bundle it left a traceback, ran on for seconds and
left Beam's temporary files behind. So while a local pipeline runs, SIGINT only asks the run's
progress tracker to stop: the DoFns hand out no more records, the records in flight get
``GRACE_SECONDS`` to finish and are then cancelled, and the pipeline ends normally, writing
what was done (which ``--skip_existing true`` then skips). A second SIGINT runs the emergency
cleanups (the embedded server is killed, temporary files are removed) and exits with 130.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from voxbeam.beam import storage
from voxbeam.beam.progress import Progress
from voxbeam.jobs.summary import EXIT_INTERRUPTED

GRACE_SECONDS = 1.5
# A second SIGINT this soon after the first is the same Ctrl-C delivered twice: timeout(1), for
# one, signals both the process and its process group.
SAME_PRESS_SECONDS = 0.25
# Where a run writes (relative to --output): Beam's Parquet temp folders and our .tmp- objects live below.
_RUN_FOLDERS = ("transcripts", "dead_letters", "manifest", "captions", "audio")


class Interrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C after it had started on its records."""

    def __init__(self, done: int, not_started: int) -> None:
        super().__init__(f"interrupted: {done} done, {not_started} not started")
        self.done = done
        self.not_started = not_started

    def line(self) -> str:
        if not self.not_started:
            return f"interrupted after all {self.done} records were done; their results are written"
        return f"{self.args[0]}; rerun with --skip_existing true to continue"


class Emergency:
    """What a second Ctrl-C must still do before the process exits: callables run in order."""

    def __init__(self) -> None:
        self._actions: list[Callable[[], Any]] = []
        self._lock = threading.Lock()  # a press and the run's completion: one happens before the other
        self._written = False  # the run's results are complete (only its service may still be stopping)

    def add(self, action: Callable[[], Any]) -> Callable[[], Any]:
        with self._lock:
            self._actions.append(action)
        return action

    def written(self, undo: Callable[[], Any]) -> None:
        """The run's results are complete: ``undo`` (which took back an unfinished run) is no longer to be done."""
        with self._lock:
            if undo in self._actions:
                self._actions.remove(undo)
            self._written = True

    def run(self) -> bool:
        """Do every action; whether the run's results had been written by then (and so were kept)."""
        with self._lock:
            for action in self._actions:
                with contextlib.suppress(Exception):  # quitting: one failed cleanup must not stop the others
                    action()
            return self._written


class CtrlC:
    """Installs the two-step SIGINT handler for the duration of a local pipeline (main thread only).

    Presses are taken on arrival by a thread reading the signal wakeup fd, not by the Python-level
    handler: that runs only when the main thread next executes bytecode, and while it waits on a
    bundle's records (the signal having landed on another thread) that can be seconds later, so one
    Ctrl-C delivered twice looked like two presses.
    """

    def __init__(self, tracker: Progress, emergency: Emergency) -> None:
        self._tracker = tracker
        self._emergency = emergency
        self._previous: Any = None
        self._previous_fd = -1
        self._wakeup: tuple[socket.socket, socket.socket] | None = None
        self._watcher: threading.Thread | None = None
        self.pressed = False
        self._pressed_at = 0.0

    def __enter__(self) -> CtrlC:
        if threading.current_thread() is threading.main_thread():
            reader, writer = socket.socketpair()
            writer.setblocking(False)
            self._wakeup = (reader, writer)
            # A Python handler, so that the C one runs (and writes the wakeup byte); it does nothing itself.
            self._previous = signal.signal(signal.SIGINT, lambda signum, frame: None)
            self._previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
            self._watcher = threading.Thread(target=self._watch, args=(reader,), name="ctrl-c", daemon=True)
            self._watcher.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._wakeup is not None and self._watcher is not None:
            signal.set_wakeup_fd(self._previous_fd)
            signal.signal(signal.SIGINT, self._previous)
            reader, writer = self._wakeup
            writer.close()  # the watcher reads the end of the stream and stops
            self._watcher.join(timeout=1.0)
            reader.close()

    def _watch(self, reader: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := reader.recv(64):
                for signum in data:
                    if signum == signal.SIGINT:
                        self._press()

    def _press(self) -> None:
        if not self.pressed:
            self.pressed = True
            self._tracker.request_stop(GRACE_SECONDS)
            # Timed from the end of this press's handling: starting the grace timer's thread can take
            # longer than the window on a busy machine, and the twin byte is only read after it.
            self._pressed_at = time.monotonic()
            return
        if time.monotonic() - self._pressed_at < SAME_PRESS_SECONDS:
            return
        # Beam's threads go on until the exit below, and the cleanup removes files from under them: a
        # FinalizeWrite that then missed its temp file logged an ERROR with a traceback after the user had
        # asked to quit. Nothing they say from here on is news; our own line below says what happened.
        logging.disable(logging.CRITICAL)
        threading.excepthook = lambda args: None
        written = self._emergency.run()
        done = self._tracker.done
        outcome = (
            "their results are written; rerun with --skip_existing true to continue"
            if written
            else "without writing this run's results; rerun to continue"
        )
        print(f"interrupted again: quit at once with {done} done, {outcome}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(EXIT_INTERRUPTED)  # now: no waiting for Beam, threads or sockets


def remove_unfinished_run(output: str, run_id: str) -> None:
    """Remove what a run quit in the middle of wrote to its own local partitions (whole files or not):
    a run's results are all there or none of them, and ``--skip_existing`` then redoes it all."""
    for name in _RUN_FOLDERS:
        folder = storage.join(output, name, f"run={run_id}")
        if "://" not in folder:
            shutil.rmtree(folder, ignore_errors=True)
            with contextlib.suppress(OSError):  # the kind's folder, when no other run wrote there
                os.rmdir(os.path.dirname(folder))


def remove_temporaries(output: str, run_id: str, *, local_only: bool = False) -> None:
    """Remove what an unfinished run leaves in its own partitions: Beam's temp folders, our .tmp- objects.

    Partitions left empty go too (and their parent, when no other run wrote there).
    """
    for name in _RUN_FOLDERS:
        folder = storage.join(output, name, f"run={run_id}")
        if "://" not in folder:
            for path in glob.glob(os.path.join(glob.escape(folder), "beam-temp-*")):
                shutil.rmtree(path, ignore_errors=True)
            for path in glob.glob(os.path.join(glob.escape(folder), "*.tmp-*")):
                with contextlib.suppress(OSError):
                    os.remove(path)
            with contextlib.suppress(OSError):  # a partition the run never wrote to
                os.rmdir(folder)
                os.rmdir(os.path.dirname(folder))
        elif not local_only:
            _remove_remote(folder)


def _remove_remote(folder: str) -> None:
    from apache_beam.io.filesystems import FileSystems

    with contextlib.suppress(Exception):
        leftovers = [
            f.uri for f in storage.match(storage.join(folder, "**")) if "beam-temp-" in f.uri or ".tmp-" in f.uri
        ]
        if leftovers:
            FileSystems.delete(leftovers)
