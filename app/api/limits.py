"""The request-size limits of the web, answered in the API's one JSON shape with fixed text (never the client's)."""
from __future__ import annotations

import json

from app.api.errors import error_body

# gunicorn's limits, which clients and the fault suite know: a longer request line is 414, a larger header 431.
# granian's parser (hyper) takes up to 400 KB of head and refuses only more than 100 header fields itself.
LIMIT_REQUEST_LINE = 4094  # bytes of path and query
LIMIT_FIELD_SIZE = 8190  # bytes of one header, name and value


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
