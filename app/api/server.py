"""The web server: `python -m app.api.server` runs granian (a Rust HTTP server; WSGI on a pool of Python threads)
on `wsgi:app`, configured from Settings; and the request-size limits, answered in the API's one JSON shape."""
from __future__ import annotations

import json
import os
import sys

from app.api.errors import error_body

# gunicorn's limits, which clients and the fault suite know: a longer request line is 414, a larger header 431.
# granian's parser (hyper) takes up to 400 KB of head and refuses only more than 100 header fields itself.
LIMIT_REQUEST_LINE = 4094  # bytes of path and query
LIMIT_FIELD_SIZE = 8190  # bytes of one header, name and value
HEADER_READ_TIMEOUT_MS = 10_000  # a client gets this long to send a request's head (slow clients), then is cut
GRACEFUL_TIMEOUT_SECONDS = 20  # SIGTERM: in-flight requests get this long to finish, then the worker is killed
# Python threads per process, started on demand and idle after 30 s. A request holds one while the app runs, a
# streaming answer for as long as it streams: room for the SSE clients (docs/benchmarks.md, "For the SSE endpoint").
BLOCKING_THREADS = 1100
# Connections a process serves at once (slow, idle keep-alive and streaming ones included) and the accept queue.
BACKPRESSURE = 4096
BACKLOG = 2048


def _refuse(start_response, status: str, code: str, message: str):
    body = json.dumps(error_body(code, message)).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                            ("Connection", "close")])
    return [body]


def limit_request_size(wsgi_app):
    """WSGI middleware: a request line or a header over gunicorn's limits is refused, 414 or 431, in JSON, with
    fixed text (never the client's)."""

    def guarded(environ, start_response):
        if len(environ.get("PATH_INFO", "")) + len(environ.get("QUERY_STRING", "")) > LIMIT_REQUEST_LINE:
            return _refuse(start_response, "414 Request-URI Too Long", "request_uri_too_long",
                           "the request line is too long")
        for name, value in environ.items():  # every request passes here: the cheap tests first
            if type(value) is str and len(value) + len(name) > LIMIT_FIELD_SIZE and name[:5] == "HTTP_":
                return _refuse(start_response, "431 Request Header Fields Too Large",
                               "request_header_fields_too_large", "the request's header fields are too large")
        return wsgi_app(environ, start_response)

    return guarded


def serve(settings, target: str = "wsgi:app") -> None:
    """Serve the WSGI callable `target` ("module:attribute", imported in each worker process) as the Procfile's web
    does, until SIGTERM/SIGINT, which lets in-flight requests finish (GRACEFUL_TIMEOUT_SECONDS at most)."""
    from granian import Granian
    from granian.constants import Interfaces
    from granian.http import HTTP1Settings
    from granian.log import LogLevels

    Granian(
        target, address=settings.host, port=settings.port, interface=Interfaces.WSGI,
        workers=settings.web_concurrency, blocking_threads=BLOCKING_THREADS, backlog=BACKLOG,
        backpressure=BACKPRESSURE, http1_settings=HTTP1Settings(header_read_timeout=HEADER_READ_TIMEOUT_MS),
        log_level=LogLevels(settings.log_level.lower()), workers_kill_timeout=GRACEFUL_TIMEOUT_SECONDS,
        respawn_failed_workers=True,
    ).serve()


def main() -> int:
    """The Procfile's web: check the configuration once, before any worker starts (a bad variable: one line
    naming it, exit 2), then serve `wsgi:app`."""
    from app.bootstrap import load_settings, prepare

    settings = load_settings(os.environ)
    prepare(settings)  # DATA_DIR and the embedded Redis, checked once here rather than failing in every worker
    serve(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
