"""deploy/grafana-dashboard.json and deploy/prometheus-alerts.yml parse, and every metric they name is in a real
scrape of /metrics (web metrics and the worker figures read from a real Redis after a real run)."""
import json
import re
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from app.api import create_app
from app.bootstrap import bootstrap
from app.config import Settings
from app.services.polling import run_update
from app.storage.sqlite import SqlitePriceRepository

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
METRIC = re.compile(r"\bcryptostats_[a-z0-9_]+")


def expressions() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    rules = yaml.safe_load((DEPLOY / "prometheus-alerts.yml").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    exprs += [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    return exprs


def test_the_dashboard_and_the_alerts_are_valid_and_cover_stale_data_failures_and_429s():
    rules = yaml.safe_load((DEPLOY / "prometheus-alerts.yml").read_text())
    alerts = {rule["alert"]: rule for group in rules["groups"] for rule in group["rules"]}
    assert all({"expr", "annotations"} <= set(rule) for rule in alerts.values())
    text = " ".join(rule["expr"] for rule in alerts.values())
    for needed in ("cryptostats_data_age_seconds", 'outcome=~"failed|retried"', 'status="429"'):
        assert needed in text
    assert json.loads((DEPLOY / "grafana-dashboard.json").read_text())["panels"]


def test_every_metric_they_name_is_in_a_real_scrape(tmp_path, redis_url, fake_coingecko):
    settings = Settings.from_env({"DATA_DIR": str(tmp_path / "data"), "REDIS_URL": redis_url, "RATE_LIMIT": "0",
                                  "COINGECKO_BASE_URL": fake_coingecko.base_url})
    repo = SqlitePriceRepository(settings.sqlite_path)
    repo.ensure_schema()
    services = bootstrap(settings, repo=repo)  # the real CoinGecko client (on the fake), Redis bus and metrics
    try:
        run_update(services.update_context())
        client = create_app(services=services, background=False).test_client()
        client.get("/healthz")
        scrape = client.get("/metrics")
        assert scrape.status_code == 200
        names = {sample.name for family in text_string_to_metric_families(scrape.get_data(as_text=True))
                 for sample in family.samples}
        referenced = {name for expr in expressions() for name in METRIC.findall(expr)}
        assert referenced and referenced <= names, referenced - names
    finally:
        services.close()
