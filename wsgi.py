"""WSGI entry point for gunicorn (`gunicorn wsgi:app`) or any WSGI server: logging, the start-up lines, the app."""
from app.api import create_app
from app.bootstrap import announce, configure_logging, load_settings, read_environment

_settings = load_settings(read_environment())  # ./.env for any WSGI server (gunicorn has read it already)
configure_logging(_settings, "web")  # under gunicorn only the level: gunicorn.conf.py set the handlers
announce(_settings, "web")  # under gunicorn the master did (when_ready); its workers inherit that it was done
app = create_app(_settings)
