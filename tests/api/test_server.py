"""gunicorn's own error answers (requests it cannot parse) in the one JSON shape."""
import inspect
import json
import socket

from gunicorn import util
from gunicorn.workers import base

from app.api import server


def test_gunicorn_still_writes_its_errors_through_util_write_error():
    # server.install replaces util.write_error; if an upgrade stops calling it, the HTML pages come back.
    assert "util.write_error(client, status_int, reason, mesg)" in inspect.getsource(base.Worker.handle_error)


def test_a_gunicorn_error_is_json_without_the_clients_text():
    ours, theirs = socket.socketpair()
    try:
        server.write_json_error(ours, 431, "Request Header Fields Too Large", "Error parsing headers: '<script>'")
        ours.close()
        raw = theirs.recv(65536)
    finally:
        theirs.close()
    head, body = raw.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert b"Content-Type: application/json" in head and f"Content-Length: {len(body)}".encode() in head
    assert json.loads(body) == {"error": {"code": "request_header_fields_too_large",
                                          "message": "the request's header fields are too large", "details": None}}


def test_install_replaces_gunicorns_html_writer(monkeypatch):
    monkeypatch.setattr(util, "write_error", util.write_error)  # restored after the test
    server.install()
    assert util.write_error is server.write_json_error
