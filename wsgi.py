"""WSGI entry point for the web server (`python -m app.api.server` serves `wsgi:app`)."""
from app.api import create_app

app = create_app()
