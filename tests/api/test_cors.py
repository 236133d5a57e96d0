"""CORS: the public read-only routes answer browsers of any origin in CORS_ORIGINS, preflight included; no other
route does."""
import pytest

from app.api import create_app
from app.bootstrap import bootstrap
from app.config import Settings
from app.domain.errors import ConfigError
from tests.fakes import FakePriceSource

ORIGIN = "https://dash.example.com"
PREFLIGHT = {"Origin": ORIGIN, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "accept"}


def app_with(settings_dir, repo, bus, clock, **env):
    settings = Settings.from_env({"DATA_DIR": str(settings_dir), **env})
    return create_app(services=bootstrap(settings, repo=repo, source=FakePriceSource(), bus=bus, clock=clock),
                      background=False)


@pytest.mark.parametrize("path", ["/stats?coin=bitcoin", "/api/v1/deviation?coin=bitcoin", "/api/v1/coins",
                                  "/api/v1/coins/bitcoin/history", "/readyz", "/openapi.json"])
def test_preflight_of_a_public_route_is_answered_204_with_the_allow_headers(client, path):
    response = client.options(path, headers=PREFLIGHT)

    assert response.status_code == 204
    assert response.get_data() == b""
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert set(response.headers["Access-Control-Allow-Methods"].split(", ")) == {"GET", "HEAD", "OPTIONS"}
    assert "accept" in response.headers["Access-Control-Allow-Headers"].lower()
    assert response.headers["Access-Control-Max-Age"] == "600"


def test_a_cross_origin_read_may_see_the_freshness_headers(client):
    response = client.get("/stats?coin=bitcoin", headers={"Origin": ORIGIN})

    assert response.status_code == 503  # no data yet: errors carry CORS too, so the page can show why
    assert response.get_json()["error"]["code"] == "no_data"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    exposed = response.headers["Access-Control-Expose-Headers"]
    assert {"X-Data-Stale", "X-Data-Fetched-At", "Retry-After"} <= set(exposed.split(", "))


def test_the_stream_path_is_public_too(app, client):
    # The stream is another blueprint's; its path is in the policy so EventSource works cross-origin.
    app.add_url_rule("/api/v1/stream", "stream_stand_in", lambda: ("", 200, {"Content-Type": "text/event-stream"}))

    response = client.get("/api/v1/stream?coins=bitcoin", headers={"Origin": ORIGIN})

    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_a_route_outside_the_public_list_gets_no_cors(app, client):
    # An admin route added later gets no CORS unless added to app/api/cors.py on purpose.
    app.add_url_rule("/api/v1/admin/refresh", "admin_stand_in", lambda: {"ok": True}, methods=["POST"])

    preflight = client.options("/api/v1/admin/refresh", headers={**PREFLIGHT, "Access-Control-Request-Method": "POST"})
    post = client.post("/api/v1/admin/refresh", headers={"Origin": ORIGIN})

    assert preflight.status_code == 204 and post.status_code == 200
    assert "Access-Control-Allow-Origin" not in preflight.headers
    assert "Access-Control-Allow-Origin" not in post.headers
    assert "Access-Control-Allow-Origin" not in client.get("/", headers={"Origin": ORIGIN}).headers


def test_listed_origins_only_are_allowed(tmp_path, repo, bus, clock):
    client = app_with(tmp_path, repo, bus, clock, CORS_ORIGINS=f"{ORIGIN}, http://localhost:3000").test_client()

    allowed = client.options("/stats?coin=bitcoin", headers=PREFLIGHT)
    other = client.options("/stats?coin=bitcoin", headers={**PREFLIGHT, "Origin": "https://evil.example"})

    assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Origin" in allowed.headers["Vary"]
    assert "Access-Control-Allow-Origin" not in other.headers


def test_cors_origins_none_turns_it_off(tmp_path, repo, bus, clock):
    client = app_with(tmp_path, repo, bus, clock, CORS_ORIGINS="none").test_client()

    response = client.options("/stats?coin=bitcoin", headers=PREFLIGHT)

    assert response.status_code == 204
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize("value", ["https://dash.example.com/path", "dash.example.com", "ftp://x", "*, https://a.b"])
def test_a_bad_cors_origins_names_the_variable(value):
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"CORS_ORIGINS": value})

    assert raised.value.variable == "CORS_ORIGINS"
    assert str(raised.value).startswith("CORS_ORIGINS: must be *, none, or origins")
