"""API fixtures: the Flask app over a real SQLite store and a fake bus; refreshes are driven by the test."""
import pytest

from app.api import extensions
from app.api import create_app
from app.bootstrap import bootstrap
from app.storage.sqlite import SqlitePriceRepository
from tests.fakes import FakePriceSource


@pytest.fixture
def repo(settings):
    repo = SqlitePriceRepository(settings.sqlite_path)
    repo.ensure_schema()
    return repo


@pytest.fixture
def app(settings, repo, bus, clock):
    services = bootstrap(settings, repo=repo, source=FakePriceSource(), bus=bus, clock=clock)
    return create_app(services=services, background=False)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def view(app):
    return extensions.view(app)
