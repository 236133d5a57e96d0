"""/healthz and /readyz."""


def test_healthz(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_readyz_reports_backends_and_data_age(client, view, repo, clock):
    from tests.fakes import obs

    repo.add_batch([obs("bitcoin", 40000, clock.now)])
    view.refresh()
    clock.advance(seconds=90)
    response = client.get("/readyz")
    body = response.get_json()
    assert response.status_code == 200 and body["status"] == "ready"
    assert body["checks"] == {"store": {"ok": True}, "redis": {"ok": True}}
    assert body["data"]["age_seconds"] == 90.0 and body["data"]["stale"] is False
    assert "SQLite" in body["backends"]


def test_readyz_is_503_when_redis_is_down(client, bus):
    bus.down = True
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["redis"]["ok"] is False
