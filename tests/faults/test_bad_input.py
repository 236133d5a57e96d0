"""Bad input: thousands of generated requests against the API (never a 5xx, every error in the one JSON shape), bad
configuration values (a ConfigError naming the variable, nothing else), and stale data flagged as stale."""
import json
import string
from datetime import datetime, timedelta, timezone
from urllib.parse import quote, unquote_to_bytes

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import EnvironBuilder

from app.api import extensions
from app.api import create_app
from app.bootstrap import bootstrap
from app.config import Settings
from app.domain.errors import ConfigError
from app.domain.model import Observation
from app.storage.sqlite import SqlitePriceRepository
from tests.fakes import FakeBus
from tests.faults.harness import PRODUCT_VARS
from tests.procs import wait_until

FUZZ_EXAMPLES = 1700  # three requests each
PROPERTY = dict(derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.large_base_example])

ENDPOINTS = ["/stats", "/deviation", "/api/v1/stats", "/api/v1/deviation", "/healthz", "/readyz"]
PATHS = st.one_of(
    st.sampled_from(ENDPOINTS + ["/", "/stats/", "//stats", "/api/v1", "/api/v2/stats", "/STATS", "/stats/bitcoin",
                                 "/static/x", "/stats%00", "/../etc/passwd", "/api/v1/stats/../deviation"]),
    st.text(max_size=40).map(lambda text: "/" + text),  # sent raw (UTF-8), "?" and "#" included
    st.text(max_size=40).map(lambda text: "/" + quote(text)),
    st.lists(st.sampled_from(["stats", "deviation", "api", "v1", "", "..", "%2e", "%ff"]), max_size=5)
    .map(lambda parts: "/" + "/".join(parts)),
)
METHODS = st.sampled_from(["GET", "GET", "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE",
                           "PROPFIND", "get", "BREW"])
COINS = ["bitcoin", "ethereum", "matic-network", "polygon-ecosystem-token", " Bitcoin ", "BITCOIN", "dogecoin",
         "bitcoin.", "-bitcoin", "bit coin", "", "%00", "null", "[]"]
HUGE = st.builds(lambda char, size: char * size, st.sampled_from(["a", "9", "%", "é", "💥", "\x00", "-"]),
                 st.integers(1_000, 100_000))
VALUES = st.one_of(st.sampled_from(COINS + ["usd", "USD", "eur", "u", "usdusdusdusd"]), st.text(max_size=30), HUGE,
                   st.integers().map(str), st.floats().map(str))
KEYS = st.one_of(st.sampled_from(["coin", "coin", "currency", "COIN", "Coin", "coin[]", "", "coin ", "currency"]),
                 st.text(max_size=10))
ENCODED_QUERY = st.lists(st.tuples(KEYS, VALUES), max_size=5).map(
    lambda pairs: "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs))
RAW_QUERY = st.one_of(  # as a client may send it: unencoded, broken escapes, stray separators, any byte
    st.lists(st.tuples(KEYS, VALUES), max_size=4).map(lambda pairs: "&".join(f"{k}={v}" for k, v in pairs)),
    st.text(alphabet=string.printable + "%&=;é💥", max_size=60),
    st.binary(max_size=60).map(lambda raw: raw.decode("latin-1")),
)
QUERIES = st.one_of(ENCODED_QUERY, RAW_QUERY)
REQUESTS = st.fixed_dictionaries({"method": METHODS, "path": PATHS, "query": QUERIES,
                                  "body": st.one_of(st.none(), st.binary(max_size=200))})


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory):
    """The real app over a real SQLite store holding data for every tracked coin (so no 503 is legitimate)."""
    settings = Settings.from_env({"DATA_DIR": str(tmp_path_factory.mktemp("fuzz"))})
    repo = SqlitePriceRepository(settings.sqlite_path)
    repo.ensure_schema()
    now = datetime.now(timezone.utc).replace(microsecond=0)
    repo.add_batch([Observation(coin, "usd", price, price * 1e7, price * 1e5, 1.5, now - timedelta(minutes=i), now)
                    for coin, price in (("bitcoin", 40000), ("ethereum", 2200), ("polygon-ecosystem-token", 0.45))
                    for i in range(3)])
    app = create_app(services=bootstrap(settings, repo=repo, bus=FakeBus()), background=False)
    extensions.view(app).refresh()
    return app


def send(app, method: str, path: str, query: str, body: bytes | None = None):
    """One request as a WSGI server hands it over (PEP 3333): the path percent-decoded, path and query as latin-1
    text of the raw bytes. The environ goes to the app directly: no test-client URL handling in between (it would
    reject some of these URLs itself, and spend most of the time re-parsing the huge ones)."""
    builder = EnvironBuilder(method=method, data=body)
    try:
        environ = builder.get_environ()
    finally:
        builder.close()
    raw = path.encode("utf-8")
    environ.update(PATH_INFO=unquote_to_bytes(raw).decode("latin-1"),
                   QUERY_STRING=query.encode("utf-8").decode("latin-1"),
                   RAW_URI=(raw + b"?" + query.encode("utf-8")).decode("latin-1"))
    return app.response_class.from_app(app, environ, buffered=True)


def check(response, method: str, figures) -> None:
    """Never a 5xx; every error is JSON in the one shape; answers to the contract's paths have its shape."""
    status = response.status_code
    figures.answered(status)
    assert status < 500, (status, response.get_data()[:300])
    if 300 <= status < 400:
        assert response.headers.get("Location")
        return
    if status >= 400:
        assert response.mimetype == "application/json", (status, response.get_data()[:300])
        if method.upper() == "HEAD":
            return
        body = json.loads(response.get_data())
        assert list(body) == ["error"] and list(body["error"]) == ["code", "message", "details"], body
        assert isinstance(body["error"]["code"], str) and body["error"]["code"]
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def test_generated_requests_never_get_a_5xx_and_errors_are_one_json_shape(fuzz_app, figures):
    """Fuzzed requests: random paths, methods, query keys and values (unicode, huge, repeated, raw bytes)"""
    @settings(max_examples=FUZZ_EXAMPLES, **PROPERTY)
    @given(REQUESTS)
    def any_request(request):
        response = send(fuzz_app, request["method"], request["path"], request["query"], request["body"])
        check(response, request["method"], figures)
        for endpoint in ("/stats", "/deviation"):  # the same query against the contract's endpoints
            response = send(fuzz_app, "GET", endpoint, request["query"])
            check(response, "GET", figures)
            if response.status_code == 200:
                body = response.get_json()
                assert list(body) == (["price", "marketCap", "24hChange"] if endpoint == "/stats" else ["deviation"])

    any_request()
    assert figures.requests >= 5000
    assert figures.failures() == {}


ENV_VALUES = st.one_of(st.text(max_size=30), st.sampled_from(["0", "-1", "1e9", "nan", "inf", "", " ", "abc", "1.5",
                                                               "* * * * *", "61 * * * *", "*/0 * * * *",
                                                               "0 0 31 2 *", "redis://", "unix://", "http://x",
                                                               "mongodb://h/db", "bitcoin,,", "usd,EUR"]))


def test_bad_configuration_values_are_reported_naming_the_variable(figures):
    """Generated configuration values: valid, or a ConfigError naming the variable"""
    tried = []

    @settings(max_examples=400, **PROPERTY)
    @given(st.dictionaries(st.sampled_from([v for v in PRODUCT_VARS if v != "DATA_DIR"]), ENV_VALUES, min_size=1,
                           max_size=3))
    def any_environment(env):
        tried.append(env)
        try:
            Settings.from_env(env)
        except ConfigError as exc:
            assert exc.variable in env, (exc.variable, env)
            assert exc.message.startswith(exc.variable)

    any_environment()
    for variable, value in (("RETRY_BASE_SECONDS", "0"), ("RETRY_BASE_SECONDS", "soon"),
                            ("RETRY_BASE_SECONDS", "301"), ("RETRY_BASE_SECONDS", "nan")):
        with pytest.raises(ConfigError, match=variable):
            Settings.from_env({variable: value})
    assert Settings.from_env({"RETRY_BASE_SECONDS": "0.5"}).retry_base_seconds == 0.5
    figures.faults += len(tried) + 4


@pytest.mark.slow
def test_data_older_than_two_intervals_is_flagged_stale(make_platform, figures):
    """Freshness: X-Data-Stale true once data is older than two update intervals"""
    platform = make_platform(UPDATE_CRON="* * * * *")  # one-minute interval: stale after two minutes
    repo = SqlitePriceRepository(platform.db_path)
    repo.ensure_schema()
    now = datetime.now(timezone.utc).replace(microsecond=0)
    old, recent = now - timedelta(minutes=2, seconds=30), now - timedelta(seconds=30)
    repo.add_batch([Observation("bitcoin", "usd", 40000, None, None, None, old - timedelta(seconds=5), old),
                    Observation("ethereum", "usd", 2200, None, None, None, recent - timedelta(seconds=5), recent)])
    repo.close()
    figures.faults += 1  # data two and a half intervals old
    platform.web()
    wait_until(lambda: platform.get("/healthz", counted=False).status_code == 200, 30, what="web up")

    stale = platform.get("/stats?coin=bitcoin")
    assert stale.status_code == 200 and stale.headers["X-Data-Stale"] == "true"
    assert stale.headers["X-Data-Observed-At"] == (old - timedelta(seconds=5)).isoformat()
    assert platform.get("/deviation?coin=bitcoin").headers["X-Data-Stale"] == "true"
    fresh = platform.get("/stats?coin=ethereum")
    assert fresh.status_code == 200 and fresh.headers["X-Data-Stale"] == "false"
    assert fresh.headers["X-Data-Fetched-At"] == recent.isoformat()
    # Readiness reports the newest data, which is fresh.
    assert platform.get("/readyz").json()["data"]["stale"] is False
    assert figures.failures() == {}
