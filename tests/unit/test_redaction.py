"""Log redaction: every record of the process, whoever wrote it, without the deployment's secrets, hosts or paths."""
import logging
from pathlib import Path

import pytest

from app.config import Settings
from app.redaction import install_log_redaction, redactor, replacements


def settings(tmp_path, **env):
    return Settings.from_env({"DATA_DIR": str(tmp_path / "data"), **env})


def test_secrets_hosts_and_paths_become_the_name_of_their_variable(tmp_path):
    s = settings(tmp_path, MONGODB_URI="mongodb://admin:hunter2@db1.example:27017,[fd00::7]:27018/x?replicaSet=rs0",
                 REDIS_URL="redis://:redispw@cache.example:6380/0", COINGECKO_API_KEY="CG-key-1234567",
                 COINGECKO_BASE_URL="http://proxyuser:proxypw@proxy.example:3128/api/v3")
    redact = redactor(replacements(s))
    text = (f"MongoDB write failed: db1.example:27017 fd00::7 (admin/hunter2); Redis cache.example:6380 redispw; "
            f"key CG-key-1234567 via proxy.example as proxyuser:proxypw; file {tmp_path.resolve() / 'data'}/x.db")
    assert redact(text) == ("MongoDB write failed: <MONGODB_URI host>:27017 <MONGODB_URI host> (***/***); Redis "
                            "<REDIS_URL host>:6380 ***; key *** via <COINGECKO_BASE_URL host> as ***; "
                            "file <DATA_DIR>/x.db")


def test_credentials_in_a_urls_query_are_secrets_too(tmp_path):
    redact = redactor(replacements(settings(tmp_path, REDIS_URL="unix:///run/redis/redis.sock?db=0&password=sock-pw-9")))
    assert redact("Error connecting to unix:///run/redis/redis.sock?db=0&password=sock-pw-9") \
        == "Error connecting to unix://<REDIS_URL socket>?db=0&password=***"
    redact = redactor(replacements(settings(tmp_path, REDIS_URL="unix:///run/r.sock?password=p%40ss%2Fword")))
    assert redact("auth p@ss/word failed for unix:///run/r.sock?password=p%40ss%2Fword") \
        == "auth *** failed for unix://<REDIS_URL socket>?password=***"


def test_data_dir_is_redacted_as_given_through_a_symlink_and_when_relative(tmp_path, monkeypatch):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    redact = redactor(replacements(Settings.from_env({"DATA_DIR": str(tmp_path / "link" / "data")})))
    for spelling in (tmp_path / "link" / "data", tmp_path / "real" / "data"):  # as given (the store's), resolved
        assert redact(f"cannot open {spelling}/cryptostats.sqlite3") == "cannot open <DATA_DIR>/cryptostats.sqlite3"
    monkeypatch.chdir(tmp_path / "real")
    redact = redactor(replacements(Settings.from_env({"DATA_DIR": "data"})))
    assert redact(f"cannot open {Path('data').absolute()}/x") == "cannot open <DATA_DIR>/x"


def test_coingeckos_own_host_and_the_machines_own_names_are_no_secret(tmp_path):
    redact = redactor(replacements(settings(tmp_path, REDIS_URL="redis://:pw-123@127.0.0.1:6379/0",
                                            COINGECKO_BASE_URL="http://localhost:8900/api/v3")))
    assert redact("api.coingecko.com timed out") == "api.coingecko.com timed out"
    assert redact("127.0.0.1 - GET /healthz; localhost:8900 refused") == "127.0.0.1 - GET /healthz; localhost:8900 refused"


@pytest.fixture
def restore_record_factory():
    factory = logging.getLogRecordFactory()
    yield
    logging.setLogRecordFactory(factory)


def test_every_record_and_its_traceback_is_redacted(tmp_path, caplog, restore_record_factory):
    from app import redaction

    redaction._installed.clear()
    install_log_redaction(settings(tmp_path, MONGODB_URI="mongodb://u:hunter2@db1.example/x"))
    log = logging.getLogger("some.library")
    with caplog.at_level(logging.INFO):
        log.info("connecting to %s as %s", "db1.example:27017", "u:hunter2")
        try:
            raise OSError("db1.example: connection refused")
        except OSError:
            log.exception("failed")
    redaction._installed.clear()
    assert "db1.example" not in caplog.text and "hunter2" not in caplog.text
    assert "connecting to <MONGODB_URI host>:27017 as ***\n" in caplog.text
    assert "<MONGODB_URI host>: connection refused" in caplog.text
