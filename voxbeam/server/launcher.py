"""Run ``python -m voxbeam.server`` as a subprocess on a free port (tests, benchmarks, demos)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from typing import IO, Any

from voxbeam.server.app import READY_FD_ENV, READY_LINE
from voxbeam.server.cli import API_KEY_ENV
from voxbeam.server.errors import ServerStartError

__all__ = ["LocalServer", "ServerStartError"]


class LocalServer:
    """Runs `python -m voxbeam.server` as a subprocess on a free port."""

    def __init__(
        self,
        *,
        api_keys: list[str] | None = None,
        workers: int | None = None,
        max_sessions: int | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        log_path: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        # Hex, not urlsafe: a urlsafe key starts with '-' one time in 64, and argparse then reads
        # `--api_key KEY` as a flag without its value.
        self._keys = list(api_keys) if api_keys is not None else [secrets.token_hex(24)]
        if not self._keys:
            raise ValueError("api_keys is empty; pass None for a fresh random key or add --no_auth to extra_args")
        self.workers = workers
        self.max_sessions = max_sessions
        self.extra_args = list(extra_args)
        self._env = dict(env or {})
        self.log_path = log_path
        self.host = host
        self.port = port
        self.url = ""
        self.pid: int | None = None
        self.returncode: int | None = None  # the last run's exit status, once stopped
        self._proc: subprocess.Popen[str] | None = None
        self._log_file: IO[str] | None = None
        self._own_log: str | None = None

    @property
    def api_key(self) -> str:
        return self._keys[0]

    @property
    def api_keys(self) -> list[str]:
        return list(self._keys)

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"<LocalServer {self.url or self.host} {state} workers={self.workers}>"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- life cycle ---------------------------------------------------------------------

    def _argv(self) -> list[str]:
        argv = [sys.executable, "-m", "voxbeam.server", "--host", self.host, "--port", str(self.port)]
        if self.workers is not None:
            argv += ["--workers", str(self.workers)]
        if self.max_sessions is not None:
            argv += ["--max_sessions", str(self.max_sessions)]
        return argv + self.extra_args

    def start(self, timeout: float = 120.0) -> LocalServer:
        """Start and wait for the READY line and a 200 from /healthz."""
        if self.running:
            return self
        env = {**os.environ, **self._env}
        # The keys go through the environment: argv is visible to every user in `ps`.
        env[API_KEY_ENV] = ",".join(self._keys)
        env.setdefault("PYTHONUNBUFFERED", "1")
        if self.log_path is None and self._own_log is None:
            fd, self._own_log = tempfile.mkstemp(prefix="voxbeam-server-", suffix=".log")
            os.close(fd)
        path = self.log_path or self._own_log
        assert path is not None
        self._log_file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the server
        # The server announces readiness on a pipe of its own, so its stdout is free for anything else.
        ready_read, ready_write = os.pipe()
        env[READY_FD_ENV] = str(ready_write)
        try:
            self._proc = subprocess.Popen(
                self._argv(),
                stdout=self._log_file,
                stderr=self._log_file,
                stdin=subprocess.DEVNULL,
                env=env,
                text=True,
                pass_fds=(ready_write,),
                start_new_session=True,  # a Ctrl-C in the test's terminal must not hit the server directly
            )
        except BaseException:
            os.close(ready_read)
            raise
        finally:
            os.close(ready_write)
        self.pid = self._proc.pid
        ready = threading.Event()
        found: list[str] = []
        threading.Thread(target=self._watch_ready, args=(ready_read, ready, found), daemon=True).start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.05):
            if self._proc.poll() is not None:
                self._fail(f"the server exited with status {self._proc.returncode} before it was ready")
            if time.monotonic() > deadline:
                self._fail(f"the server was not ready after {timeout:g} s", kill=True)
        if not found:
            self._fail(f"the server exited with status {self._proc.wait()} before it was ready")
        self.url = found[0]
        self.port = int(self.url.rsplit(":", 1)[1])
        while True:
            try:
                self.health(timeout=2)
                return self
            except OSError as exc:
                if time.monotonic() > deadline:
                    self._fail(f"/healthz did not answer: {exc}", kill=True)
                time.sleep(0.1)

    @staticmethod
    def _watch_ready(fd: int, ready: threading.Event, found: list[str]) -> None:
        with os.fdopen(fd, encoding="utf-8") as pipe:
            for line in pipe:  # one line, then end of file when the server closes its end (or exits)
                if line.startswith(READY_LINE) and not found:
                    found.append(line.split()[1])
                    ready.set()
        ready.set()

    def _fail(self, why: str, kill: bool = False) -> None:
        if kill:
            self.kill()
        raise ServerStartError(f"{why}\n--- server log (tail) ---\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        path = self.log_path or self._own_log
        if not path:
            return ""
        with contextlib.suppress(OSError), open(path, encoding="utf-8", errors="replace") as fh:
            return "".join(fh.readlines()[-lines:])
        return ""

    def health(self, timeout: float = 5.0) -> dict[str, Any]:
        """The server's /healthz document (in full: asked with the key)."""
        doc: dict[str, Any] = json.loads(self._get("/healthz", timeout))
        return doc

    def metrics_text(self, timeout: float = 5.0) -> str:
        """The server's /metrics, in Prometheus text format."""
        return self._get("/metrics", timeout)

    def _get(self, path: str, timeout: float) -> str:
        if not self.url:
            raise RuntimeError("the server is not started")
        http = self.url.replace("ws://", "http://", 1).replace("wss://", "https://", 1)
        context = None
        if http.startswith("https://"):
            # Our own child on loopback, typically with a self-signed test certificate.
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        request = urllib.request.Request(http + path, headers={"X-Api-Key": self.api_key} if self.api_key else {})
        with urllib.request.urlopen(request, timeout=timeout, context=context) as resp:
            return str(resp.read().decode("utf-8"))

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, wait up to ``grace`` (+ the server's own shutdown), then SIGKILL."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace + 10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._closed()

    def kill(self) -> None:
        """SIGKILL the server and its workers (fault tests)."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                # The whole session: the workers would otherwise outlive a killed server briefly.
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        self._closed()

    def _closed(self) -> None:
        if self._proc is not None:
            self.returncode = self._proc.returncode
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        self._proc = None
        self.pid = None

    def restart(self, timeout: float = 120.0) -> None:
        """Stop (if running) and start again on the same port."""
        self.stop()
        self.start(timeout)

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:
        # Last resort: never leave a server running after its owner is gone.
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(Exception):
                os.killpg(proc.pid, signal.SIGKILL)
