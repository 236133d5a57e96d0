"""WSGI entry point for the web server (`python -m app.api.server` serves `wsgi:app`) or any WSGI server:
logging, the start-up lines, the app."""
from app.api import create_app
from app.bootstrap import announce, configure_logging, load_settings, read_environment

_settings = load_settings(read_environment())  # ./.env for any WSGI server (app.api.server has read it already)
configure_logging(_settings, "web")  # under app.api.server only the level: it set granian's handlers
announce(_settings, "web")  # once per process (app.api.server's main process did already)
app = create_app(_settings)
