"""Command line: `python -m app.cli run | init-storage | poll-once`. `run` is what `make run` starts."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from app import broker
from app.bootstrap import announce, bootstrap, configure_logging, load_settings, prepare
from app.config import Settings
from app.domain.errors import AppError
from app.storage import make_repository

log = logging.getLogger("cryptostats")
ROOT = Path(__file__).resolve().parent.parent
EXIT_CONFIG = 2  # our processes exit 2 on a configuration error; restarting them cannot help
GUNICORN_BOOT_ERROR = 3


def init_storage(settings: Settings) -> int:
    """Create the store's tables/indexes (idempotent). Exit 1 with one line when the store cannot be reached."""
    try:
        make_repository(settings).ensure_schema()
    except AppError as exc:
        log.error("init-storage failed: %s", exc.message)
        return 1
    log.info("storage ready: %s", settings.describe().split(";")[0])
    return 0


def poll_once(settings: Settings) -> int:
    """Run one update in this process (no worker needed) and print what was stored."""
    from app.services.polling import run_update

    prepare(settings)
    services = bootstrap(settings)
    try:
        services.repo.ensure_schema()
        report = run_update(services.source, services.repo, services.bus, services.tracked, services.clock)
    except AppError as exc:
        log.error("update failed: %s", exc.message)
        return 1
    print(report.event() if report else "skipped")
    return 0


class Supervisor:
    """Runs web, worker and beat as child processes; restarts a child that dies; stops all on Ctrl-C/SIGTERM.

    Each child runs in its own session, so a terminal's Ctrl-C reaches only this supervisor, which then stops the
    children in order (SIGTERM: the web finishes requests, the worker finishes or requeues its run) and, if it
    started the embedded Redis, stops that last.
    """

    def __init__(self, commands: dict[str, list[str]], env: dict[str, str],
                 watchdog: Callable[[], None] | None = None) -> None:
        self.commands = commands
        self.env = env
        self.watchdog = watchdog  # called every few seconds: restarts the embedded Redis if it died
        self.children: dict[str, subprocess.Popen] = {}
        self.restarts: dict[str, list[float]] = {name: [] for name in commands}
        self.stopping = False

    def start(self, name: str) -> None:
        self.children[name] = subprocess.Popen(self.commands[name], env=self.env, cwd=ROOT, start_new_session=True)

    def _on_signal(self, signum, frame) -> None:
        self.stopping = True

    def run(self) -> int:
        # SIGHUP too: closing the terminal must not leave the children (and the port) behind.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        code = 0
        try:
            for name in self.commands:
                self.start(name)
            last_watch = time.monotonic()
            while not self.stopping:
                time.sleep(0.2)
                if self.watchdog and time.monotonic() - last_watch >= 5:
                    last_watch = time.monotonic()
                    self.watchdog()
                for name, child in list(self.children.items()):
                    status = child.poll()
                    if status is None or self.stopping:
                        continue
                    if status in (EXIT_CONFIG, GUNICORN_BOOT_ERROR):
                        log.error("%s cannot start (exit %s); stopping everything", name, status)
                        self.stopping, code = True, 1
                        break
                    recent = [t for t in self.restarts[name] if time.monotonic() - t < 60]
                    if len(recent) >= 5:
                        log.error("%s keeps dying (exit %s, 5 times in a minute); stopping everything", name, status)
                        self.stopping, code = True, 1
                        break
                    log.warning("%s exited with %s; restarting it", name, status)
                    self.restarts[name] = recent + [time.monotonic()]
                    self.start(name)
        finally:
            self.stop()  # whatever happened above, the children do not outlive us
        return code

    def stop(self, grace: float = 25.0) -> None:
        log.info("stopping web, worker and beat")
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for name, child in self.children.items():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0f s; killing it", name, grace)
                try:
                    os.killpg(child.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass  # it exited in the meantime
                child.wait()


def _keep_redis(settings: Settings) -> None:
    """Restart the embedded Redis if it stopped (its data survives in DATA_DIR); workers and web reconnect."""
    if not broker.responds(broker.embedded_url(settings.data_dir)):
        log.warning("the embedded Redis stopped answering; starting it again")
        try:
            broker.ensure_embedded_redis(settings.data_dir)
        except Exception as exc:  # noqa: BLE001  the supervisor must keep supervising; it tries again in 5 s
            log.error("cannot restart the embedded Redis: %s", getattr(exc, "message", exc))


def run(settings: Settings) -> int:
    """The whole platform in one command: embedded Redis (unless REDIS_URL), web, worker and beat."""
    embedded = not settings.redis_url
    prepare(settings)
    announce(settings, "platform")
    init_storage(settings)
    py = sys.executable
    commands = {
        "web": [py, "-m", "app.api.server"],
        "worker": [py, "-m", "celery", "-A", "tasks", "worker", "--loglevel=INFO", "--concurrency=2",
                   "--hostname", f"worker-{os.getpid()}@%h"],
        "beat": [py, "-m", "celery", "-A", "tasks", "beat", "--loglevel=INFO", "--pidfile="],
    }
    supervisor = Supervisor(commands, dict(os.environ),
                            watchdog=(lambda: _keep_redis(settings)) if embedded else None)
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    print(f"\nCrypto Stats Platform: http://{host}:{settings.port}/stats?coin=bitcoin  (Ctrl-C stops it)\n",
          flush=True)
    try:
        return supervisor.run()
    finally:
        if embedded:  # all its users were our children; stop it even if it was already running before
            broker.stop_embedded_redis(settings.data_dir)
            log.info("embedded Redis stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.cli", description=__doc__)
    parser.add_argument("command", choices=("run", "init-storage", "poll-once"))
    args = parser.parse_args(argv)
    settings = load_settings(os.environ)
    configure_logging(settings)
    return {"run": run, "init-storage": init_storage, "poll-once": poll_once}[args.command](settings)


if __name__ == "__main__":
    sys.exit(main())
