"""Settings: defaults, and every bad value stops the process naming the variable."""
from datetime import timedelta
from pathlib import Path

import pytest

from app.config import PRO_BASE_URL, PUBLIC_BASE_URL, Settings
from app.domain.errors import ConfigError


def test_defaults():
    s = Settings.from_env({})
    assert s.port == 8000
    assert s.data_dir == Path("data")
    assert s.coins == ("bitcoin", "ethereum", "matic-network")
    assert s.vs_currencies == ("usd",)
    assert s.update_interval == timedelta(minutes=15)
    assert s.coingecko_base_url == PUBLIC_BASE_URL
    assert s.redis_url is None and s.mongodb_uri is None
    assert "SQLite" in s.describe() and "embedded Redis" in s.describe()


@pytest.mark.parametrize("name,value", [
    ("PORT", "eighty"), ("PORT", "70000"), ("REDIS_URL", "http://localhost"), ("MONGODB_URI", "postgres://x"),
    ("COINS", "Bitcoin!"), ("COINS", " , "), ("COINS", ""), ("VS_CURRENCIES", ""), ("MONGODB_URI", "mongodb://"),
    ("MONGODB_URI", "mongodb+srv://a:1@h1,h2/db"), ("MONGODB_URI", "mongodb://h/db?replicaSet"),
    ("VS_CURRENCIES", "us dollar"), ("UPDATE_CRON", "every 15 minutes"), ("UPDATE_CRON", "5/15 * * * *"),
    ("UPDATE_CRON", "*/0 * * * *"), ("UPDATE_CRON", "61 * * * *"), ("UPDATE_CRON", "0 0 31 2 *"),
    ("COINGECKO_BASE_URL", "ftp://x"), ("COINGECKO_API_PLAN", "gold"), ("UPSTREAM_READ_TIMEOUT_SECONDS", "-1"),
    ("REFRESH_INTERVAL_SECONDS", "soon"), ("LOG_LEVEL", "LOUD"), ("WEB_CONCURRENCY", "0"),
])
def test_bad_value_names_the_variable(name, value):
    with pytest.raises(ConfigError) as err:
        Settings.from_env({name: value})
    assert err.value.variable == name
    assert str(err.value).startswith(f"{name}: ")


def test_lists_are_normalised_and_deduplicated():
    s = Settings.from_env({"COINS": " Bitcoin, ethereum,bitcoin ", "VS_CURRENCIES": "usd,EUR"})
    assert s.coins == ("bitcoin", "ethereum")
    assert s.vs_currencies == ("usd", "eur")


def test_pro_key_goes_to_the_pro_host_and_is_never_shown():
    s = Settings.from_env({"COINGECKO_API_KEY": "CG-secretsecret123", "COINGECKO_API_PLAN": "pro"})
    assert s.coingecko_base_url == PRO_BASE_URL
    assert "secretsecret" not in repr(s)
    assert "secretsecret" not in s.describe()


def test_demo_key_stays_on_the_public_host():
    assert Settings.from_env({"COINGECKO_API_KEY": "CG-x"}).coingecko_base_url == PUBLIC_BASE_URL


def test_passwords_are_redacted_in_the_startup_line():
    s = Settings.from_env({"MONGODB_URI": "mongodb://u:hunter2@db/prices", "REDIS_URL": "redis://:pw@r:6379/0"})
    line = s.describe()
    assert "hunter2" not in line and ":pw@" not in line
    assert "MongoDB" in line and "Redis" in line


@pytest.mark.parametrize("name,value", [
    ("REDIS_URL", "redis://[x"), ("COINGECKO_BASE_URL", "http://[::1"), ("MONGODB_URI", "mongodb://h:99999/db"),
    ("HOST", "a b"), ("HOST", "http://x"),
])
def test_unparsable_urls_and_hosts_name_the_variable(name, value):
    with pytest.raises(ConfigError) as err:
        Settings.from_env({name: value})
    assert err.value.variable == name


def test_ipv6_host_is_bracketed_for_gunicorn():
    assert Settings.from_env({"HOST": "::", "PORT": "9000"}).bind == "[::]:9000"
    assert Settings.from_env({}).bind == "0.0.0.0:8000"


@pytest.mark.parametrize("uri", [
    # The README's self-hosted replica set, and other forms PyMongo accepts.
    "mongodb://user:pass@db1:27017,db2:27017,db3:27017/cryptostats?replicaSet=rs0",
    "mongodb+srv://user:pass@cluster0.example.mongodb.net/cryptostats?retryWrites=true&w=majority",
    "mongodb://db1,db2/cryptostats", "mongodb://[::1]:27017/cryptostats", "mongodb://%2Ftmp%2Fmongodb-27017.sock/db",
    "mongodb://u:p%40ss@h/?authSource=admin",
])
def test_every_mongodb_uri_pymongo_accepts_is_accepted(uri):
    s = Settings.from_env({"MONGODB_URI": uri})
    assert s.mongodb_uri == uri
    assert "pass" not in s.describe() and "p%40ss" not in s.describe()


def test_a_refused_mongodb_uri_does_not_show_its_password():
    with pytest.raises(ConfigError) as err:
        Settings.from_env({"MONGODB_URI": "mongodb://user:hunter2@db1:27017,db2:notaport/cryptostats"})
    assert err.value.variable == "MONGODB_URI"
    assert "hunter2" not in err.value.message
