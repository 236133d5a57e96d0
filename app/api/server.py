"""gunicorn's own error answers (a request it cannot parse never reaches Flask) in the API's one JSON shape."""
from __future__ import annotations

import json

from gunicorn import util

from app.api.errors import error_body

# Fixed texts: gunicorn's own message repeats the offending request line or header, which is the client's text.
_MESSAGES = {
    400: "the request could not be parsed",
    403: "request forbidden",
    414: "the request line is too long",
    417: "expectation failed",
    431: "the request's header fields are too large",
    500: "internal server error",
    501: "unsupported transfer coding",
}


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """Drop-in for gunicorn.util.write_error (same signature): the same status line, a JSON body."""
    code = "_".join(reason.lower().split()) or "error"
    body = json.dumps(error_body(code, _MESSAGES.get(status_int, reason.lower()))).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    util.write_nonblock(sock, head + body)


def install() -> None:
    """Make gunicorn answer its own errors in JSON. gunicorn has no setting or hook for these bodies; its worker
    calls `util.write_error` by module attribute (gunicorn/workers/base.py, handle_error), so replacing that one
    function covers every worker class. tests/api/test_server.py fails if a gunicorn upgrade moves it."""
    util.write_error = write_json_error
