"""WSGI entry point for the web server (`python -m app.api.server` serves `wsgi:app`)."""
from app.api import create_app
from app.bootstrap import read_environment

read_environment()  # ./.env for any WSGI server (gunicorn has read it already in gunicorn.conf.py)
app = create_app()
