"""Helpers to run the product's real processes in tests: start, wait for a condition, stop, read logs."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition: Callable[[], object], timeout: float = 30.0, interval: float = 0.1, what: str = "condition"):
    """Poll `condition` until it returns something truthy (returned) or `timeout` passes (AssertionError)."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # the condition may fail while a process is still starting
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_error!r})")


class Proc:
    """A child process with its output in a log file; stopped with SIGTERM (then SIGKILL) at the end."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path, cwd: Path = ROOT) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")
        self.popen = subprocess.Popen(args, env=env, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT,
                                      start_new_session=True)

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signum)

    def stop(self, timeout: float = 20.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        self._log.close()
        return self.popen.returncode


def worker(env: dict[str, str], log_dir: Path, name: str = "worker", concurrency: int = 1) -> Proc:
    return Proc(name, [PY, "-m", "celery", "-A", "tasks", "worker", "--loglevel=INFO", f"--concurrency={concurrency}",
                       "--hostname", f"{name}-{os.getpid()}@%h", "--without-gossip", "--without-mingle"],
                env, log_dir)


def web(env: dict[str, str], log_dir: Path) -> Proc:
    return Proc("web", [PY, "-m", "app.api.server"], env, log_dir)  # the Procfile's web


def celery_call(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "celery", "-A", "tasks", "call", "tasks.store_crypto_stats", *args],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
