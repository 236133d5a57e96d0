"""gunicorn settings, read automatically by `gunicorn wsgi:app`: configuration is checked once in the master,
before any worker forks, so a bad variable stops the web with one line naming it."""
import os

from app.api import server
from app.bootstrap import load_settings, prepare

_settings = load_settings(os.environ)
prepare(_settings)  # DATA_DIR and the embedded Redis, checked once here rather than failing in every worker
server.install()  # gunicorn's own 400/414/431 answers in the API's JSON shape (workers inherit it by fork)

bind = _settings.bind
workers = _settings.web_concurrency
worker_class = "gthread"  # threads: many slow clients per process; the view is shared in memory
threads = 8
timeout = 30
graceful_timeout = 20  # SIGTERM: finish in-flight requests, then exit
keepalive = 5
preload_app = False  # create_app (and its store clients) runs in each worker, after fork
# gunicorn's runtime control socket is one shared path per user: several web processes on one machine (tests,
# side-by-side deployments) would fight over it, and the platform does not use it.
control_socket_disable = True
