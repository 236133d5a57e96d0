"""POST/GET /api/v1/coins/{id}/backfill (admin token; queues tasks.backfill_coin) and GET /api/v1/usage."""
import dataclasses

import pytest

from app.api import create_app, extensions
from app.bootstrap import bootstrap
from tests.backfill_fakes import FakeCounters, FakeJobs
from tests.fakes import FakePriceSource

TOKEN = "s3cret-admin-token"


@pytest.fixture
def admin_app(settings, repo, bus, clock):
    services = bootstrap(dataclasses.replace(settings, admin_token=TOKEN), repo=repo, source=FakePriceSource(),
                         bus=bus, clock=clock)
    services.counters, services.jobs = FakeCounters(), FakeJobs()
    return create_app(services=services, background=False)


@pytest.fixture
def admin(admin_app):
    return admin_app.test_client()


def auth(token=TOKEN):
    return {"Authorization": f"Bearer {token}"}


def test_a_backfill_is_queued_and_its_progress_answered(admin, admin_app):
    response = admin.post("/api/v1/coins/bitcoin/backfill", json={"days": 30}, headers=auth())

    assert response.status_code == 202
    assert response.json["state"] == "queued" and response.json["chunks_total"] == 1
    assert extensions.services(admin_app).jobs.sent == [
        ("tasks.backfill_coin", {"coin": "bitcoin", "currency": "usd", "days": 30})]
    progress = admin.get("/api/v1/coins/bitcoin/backfill")
    assert progress.status_code == 200 and progress.json["state"] == "queued"


def test_without_a_token_the_backfill_is_refused_with_401(admin):
    response = admin.post("/api/v1/coins/bitcoin/backfill", json={"days": 30})

    assert response.status_code == 401 and response.json["error"]["code"] == "admin_token_missing"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_wrong_token_is_refused_with_403(admin):
    response = admin.post("/api/v1/coins/bitcoin/backfill", json={"days": 30}, headers=auth("nope"))

    assert response.status_code == 403 and response.json["error"]["code"] == "admin_forbidden"
    assert "not valid" in response.json["error"]["message"]


def test_without_admin_token_configured_the_route_is_off(client):
    response = client.post("/api/v1/coins/bitcoin/backfill", json={"days": 30}, headers=auth())

    assert response.status_code == 403 and response.json["error"]["code"] == "admin_forbidden"
    assert "not configured" in response.json["error"]["message"]


@pytest.mark.parametrize("body", [{"days": 400}, {"days": "x"}, {}, [1]])
def test_bad_days_are_a_400_in_the_error_shape(admin, body):
    response = admin.post("/api/v1/coins/bitcoin/backfill", json=body, headers=auth())

    assert response.status_code == 400 and response.json["error"]["code"] == "invalid_query"


def test_400_days_on_a_free_plan_names_the_365_day_limit(admin):
    response = admin.post("/api/v1/coins/bitcoin/backfill", json={"days": 400}, headers=auth())

    assert "365" in response.json["error"]["message"]


def test_an_untracked_coin_is_404(admin):
    response = admin.post("/api/v1/coins/dogecoin/backfill", json={"days": 30}, headers=auth())

    assert response.status_code == 404


def test_progress_of_a_coin_never_backfilled_says_none(admin):
    response = admin.get("/api/v1/coins/ethereum/backfill")

    assert response.status_code == 200 and response.json["state"] == "none"


def test_usage_counts_calls_429s_and_projects_the_month(admin, admin_app):
    counters = extensions.services(admin_app).counters
    now = extensions.services(admin_app).clock()
    counters.count_call(200, now)
    counters.count_call(429, now)

    body = admin.get("/api/v1/usage").json

    assert (body["calls_this_minute"], body["calls_this_month"], body["rate_limited_this_month"]) == (2, 2, 1)
    assert body["projection"]["budget"] == 10000 and body["projection"]["calls"] > 2000
    assert body["projection"]["warning"] is None
