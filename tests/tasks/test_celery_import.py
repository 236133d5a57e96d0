"""Importing the Celery app starts and connects nothing: `celery -A tasks --help` (and a subcommand's --help) on a
machine with no Redis running leaves no redis-server behind."""
import subprocess

import pytest

from app.embedded_redis import embedded_url, responds, stop_embedded_redis
from tests.procs import PY, ROOT


@pytest.mark.parametrize("args", [["--help"], ["worker", "--help"], ["beat", "--help"]])
def test_celery_help_starts_no_redis(subprocess_env, short_tmp, args):
    data_dir = short_tmp / f"help-{args[0].strip('-')}"
    env = {**subprocess_env, "DATA_DIR": str(data_dir)}
    try:
        result = subprocess.run([PY, "-m", "celery", "-A", "tasks", *args], env=env, cwd=ROOT, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert "Usage:" in result.stdout
        assert not responds(embedded_url(data_dir))
        assert not (data_dir / "redis.sock").exists() and not (data_dir / "redis.pid").exists()
    finally:
        stop_embedded_redis(data_dir)  # had it started one (it did before), end it


def test_importing_the_tasks_starts_no_redis(subprocess_env, short_tmp):
    data_dir = short_tmp / "import"
    env = {**subprocess_env, "DATA_DIR": str(data_dir)}
    try:
        result = subprocess.run([PY, "-c", "import tasks; print(tasks.celery.main)"], env=env, cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "cryptostats"
        assert not responds(embedded_url(data_dir))
    finally:
        stop_embedded_redis(data_dir)
