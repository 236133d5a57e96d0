"""Command line: `python -m app.cli run | init-storage | poll-once | stop`. `run` is what `make run` starts."""
from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import IO, Callable

from app import embedded_redis
from app.bus.redis import RedisClaims, RedisUpdateBus
from app.bootstrap import (announce, bootstrap, check_tracked_coins, configure_logging, load_settings, prepare,
                           read_environment, utcnow)
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
    check_tracked_coins(settings)
    services = bootstrap(settings)
    try:
        services.repo.ensure_schema()
        report = run_update(services.update_context())
    except AppError as exc:
        log.error("update failed: %s", exc.message)
        return 1
    print(json.dumps(report.event() if report else {"event": "skipped"}), flush=True)
    return 0


def backfill(settings: Settings, coin: str, days: int, currency: str | None) -> int:
    """Backfill a coin in this process (no worker needed): one chunk after another, waiting out 429 cooldowns and
    the minute budget; prints the final progress. Exit 1 when it failed (the message says why)."""
    import time

    from app.services.backfill import max_days, run_backfill, start_backfill

    prepare(settings)
    services = bootstrap(settings)
    try:
        services.repo.ensure_schema()
        progress = start_backfill(services.counters, services.tracked, coin, days, currency, services.clock(),
                                  max_days(settings.coingecko_api_plan, settings.coingecko_api_key))
        progress = run_backfill(services.history, services.repo, services.counters, services.counters, services.claims,
                                progress.coin, progress.currency, progress.days, services.clock, time.sleep,
                                max_cooldown=settings.update_interval)
    except AppError as exc:
        log.error("backfill failed: %s", exc.message)
        return 1
    finally:
        services.close()
    print(json.dumps(progress.to_dict()), flush=True)
    return 0 if progress.state == "done" else 1


class Supervisor:
    """Runs web, worker and beat as child processes; restarts a child that dies; stops all on Ctrl-C/SIGTERM.

    Each child runs in its own session, so a terminal's Ctrl-C reaches only this supervisor, which then stops the
    children in order (SIGTERM: the web finishes requests, the worker finishes or requeues its run) and, if it
    started the embedded Redis, stops that last.
    """

    def __init__(self, commands: dict[str, list[str]], env: dict[str, str],
                 watchdog: Callable[[], None] | None = None, ready: Callable[[], bool] | None = None,
                 on_ready: Callable[[], None] | None = None) -> None:
        self.commands = commands
        self.env = env
        self.watchdog = watchdog  # called every few seconds: restarts the embedded Redis if it died
        self.ready, self.on_ready = ready, on_ready  # on_ready is called once, when ready() first says True
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
                if self.ready and self.on_ready and self.ready():
                    self.ready = None
                    self.on_ready()
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


class EmbeddedRedis:
    """The embedded Redis as `make run` sees it: it stops it at exit only if it started it (or restarted it)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = embedded_redis.embedded_url(settings.data_dir)
        self.started = False

    def ensure(self) -> None:
        """Start it unless it answers already (then another process of this DATA_DIR started it, and owns it)."""
        if not embedded_redis.responds(self.url):
            self.started = True
        prepare(self.settings)

    def keep(self) -> None:
        """Restart it if it stopped (its data survives in DATA_DIR); workers and web reconnect."""
        if embedded_redis.responds(self.url):
            return
        log.warning("the embedded Redis stopped answering; starting it again")
        try:
            embedded_redis.ensure_embedded_redis(self.settings.data_dir)
            self.started = True
        except Exception as exc:  # noqa: BLE001  the supervisor must keep supervising; it tries again in 5 s
            log.error("cannot restart the embedded Redis: %s", getattr(exc, "message", exc))

    def stop_if_ours(self) -> None:
        if self.started:
            embedded_redis.stop_embedded_redis(self.settings.data_dir)
            log.info("embedded Redis stopped")
        else:
            log.info("the embedded Redis was running before `make run` started; it is left running "
                     "(`python -m app.cli stop` stops it)")


def _lock_path(settings: Settings) -> Path:
    return settings.data_dir / "run.lock"


def hold_run_lock(settings: Settings) -> IO[str] | None:
    """Take DATA_DIR's `make run` lock for the life of this process and write our pid in it. None when another
    instance holds it (the kernel drops a flock with its holder, so a killed run leaves no stale lock)."""
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        handle = open(_lock_path(settings), "a+")
    except OSError as exc:
        print(f"configuration error: DATA_DIR: cannot use {settings.data_dir}: {exc.strerror or exc}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def lock_holder(settings: Settings) -> int | None:
    """The pid of the `make run` holding DATA_DIR's lock, or None when none runs."""
    try:
        with open(_lock_path(settings)) as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                text = handle.read().strip()
                return int(text) if text.isdigit() else -1
            fcntl.flock(handle, fcntl.LOCK_UN)
            return None
    except OSError:
        return None


def _web_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as answer:
            return answer.status == 200
    except OSError:
        return False


class StartedCheck:
    """Whether the platform is up enough to print its URL last: the web answers, and the first update of this
    start has been announced on `crypto-update` (stored or failed), or `patience` seconds passed."""

    def __init__(self, health_url: str, redis_url: str, patience: float = 20.0) -> None:
        self.health_url = health_url
        self.bus = RedisUpdateBus(redis_url)
        self.started_at = utcnow()
        self.deadline = time.monotonic() + patience

    def _first_update_announced(self) -> bool:
        try:
            event = self.bus.last_event() or {}
        except AppError:
            return False
        when = event.get("stored_at") or event.get("at")
        try:
            return isinstance(when, str) and datetime.fromisoformat(when) >= self.started_at
        except (TypeError, ValueError):
            return False

    def __call__(self) -> bool:
        if not _web_answers(self.health_url):
            return False
        done = time.monotonic() > self.deadline or self._first_update_announced()
        if done:
            self.bus.close()
        return done


def _forget_dead_runs(settings: Settings, redis_url: str) -> None:
    """A previous, stopped run may have left claims that would hold this fresh start's first update back."""
    from app.services.polling import forget_dead_runs

    claims = RedisClaims(redis_url)
    try:
        forget_dead_runs(claims, settings.schedule, utcnow())
    except AppError as exc:
        log.warning("could not clear what a previous run left in Redis: %s", exc.message)
    finally:
        claims.close()


def port_in_use(settings: Settings) -> bool:
    """Whether another program listens on the web's HOST:PORT (then gunicorn would retry for half a minute and the
    supervisor would restart it, while `/healthz` answered from that other program)."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds: TIME_WAIT is no conflict
        try:
            probe.bind((settings.host, settings.port))
        except OSError:
            return True
    return False


def run(settings: Settings) -> int:
    """The whole platform in one command: embedded Redis (unless REDIS_URL), web, worker and beat.

    One per DATA_DIR: a second one is refused at once, naming the pid of the first, and touches nothing."""
    lock = hold_run_lock(settings)
    if lock is None:
        pid = lock_holder(settings)
        print(f"another instance (pid {pid}) runs on DATA_DIR {settings.data_dir}; stop it first (Ctrl-C in its "
              f"terminal, or python -m app.cli stop)", file=sys.stderr)
        return 1
    if port_in_use(settings):
        print(f"configuration error: PORT: {settings.port} is already in use on this machine; choose another PORT",
              file=sys.stderr)
        return EXIT_CONFIG
    redis = EmbeddedRedis(settings) if not settings.redis_url else None
    if redis:
        redis.ensure()
    else:
        prepare(settings)
    check_tracked_coins(settings)  # fetched once here; the children find CoinGecko's lists cached in the store
    announce(settings, "supervisor")
    init_storage(settings)
    _forget_dead_runs(settings, settings.redis_url or embedded_redis.embedded_url(settings.data_dir))
    py = sys.executable
    # No --loglevel: every process takes LOG_LEVEL from the settings. --quiet: no banners, whose 40 lines would
    # scroll the URL away; the start-up lines say what they said that matters.
    commands = {
        "web": [py, "-m", "app.api.server"],
        "worker": [py, "-m", "celery", "-A", "tasks", "--quiet", "worker", "--concurrency=2",
                   "--hostname", f"worker-{os.getpid()}@%h"],
        "beat": [py, "-m", "celery", "-A", "tasks", "--quiet", "beat", "--pidfile="],
    }
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    base = f"http://[{host}]:{settings.port}" if ":" in host else f"http://{host}:{settings.port}"

    def print_url() -> None:  # last, once the web answers, so it does not scroll away
        print(f"\nCrypto Stats Platform: {base}/stats?coin=bitcoin  (Ctrl-C stops it)\n", flush=True)

    started = StartedCheck(f"{base}/healthz", settings.redis_url or embedded_redis.embedded_url(settings.data_dir))
    supervisor = Supervisor(commands, dict(os.environ), watchdog=redis.keep if redis else None,
                            ready=started, on_ready=print_url)
    try:
        return supervisor.run()
    finally:
        if redis:
            redis.stop_if_ours()
        lock.close()


def stop(settings: Settings) -> int:
    """Stop what runs on DATA_DIR: a `make run` (SIGTERM; it stops its children and its Redis) and then an embedded
    Redis left running by the Procfile processes or `celery -A tasks call`. Idempotent."""
    pid = lock_holder(settings)
    if pid and pid > 0:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while lock_holder(settings) and time.monotonic() < deadline:
            time.sleep(0.2)
        if lock_holder(settings):
            print(f"make run (pid {pid}) did not stop within 60 s", file=sys.stderr)
            return 1
        print(f"stopped make run (pid {pid})")
    if settings.redis_url:
        print("REDIS_URL is set: there is no embedded Redis to stop")
        return 0
    if embedded_redis.responds(embedded_redis.embedded_url(settings.data_dir)):
        embedded_redis.stop_embedded_redis(settings.data_dir)
        print(f"stopped the embedded Redis of DATA_DIR {settings.data_dir}")
    else:
        print(f"no embedded Redis runs on DATA_DIR {settings.data_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.cli", description=__doc__)
    parser.add_argument("command", choices=("run", "init-storage", "poll-once", "stop", "backfill"))
    parser.add_argument("--coin", help="backfill: a tracked coin id")
    parser.add_argument("--days", type=int, default=365, help="backfill: how many past days (default 365)")
    parser.add_argument("--currency", help="backfill: one of VS_CURRENCIES (default: the first)")
    args = parser.parse_args(argv)
    settings = load_settings(read_environment())  # ./.env too; the real environment wins
    configure_logging(settings, "supervisor" if args.command == "run" else "cli")
    if args.command == "backfill":
        if not args.coin:
            parser.error("backfill needs --coin")
        return backfill(settings, args.coin, args.days, args.currency)
    commands = {"run": run, "init-storage": init_storage, "poll-once": poll_once, "stop": stop}
    return commands[args.command](settings)


if __name__ == "__main__":
    sys.exit(main())
