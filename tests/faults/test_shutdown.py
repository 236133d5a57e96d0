"""Graceful shutdown of the web and of beat (the worker's is in test_worker_loss.py): the web server answers the
requests in flight when it gets SIGTERM, and beat exits 0."""
import signal
import socket
import time

import pytest

from tests.faults.test_slow_clients import seed  # data in the store without a worker: the web reads it at start
from tests.procs import wait_until

pytestmark = pytest.mark.slow

BODY = b'{"price":40000,"marketCap":800000000000,"24hChange":3.4}'


def half_sent(port: str) -> socket.socket:
    """A request whose last header line is not sent yet: the server has it in hand, waiting for the rest."""
    sock = socket.create_connection(("127.0.0.1", int(port)), timeout=10)
    sock.sendall(b"GET /stats?coin=bitcoin HTTP/1.1\r\nHost: localhost\r\n")
    return sock


def finish(sock: socket.socket) -> bytes:
    sock.sendall(b"Connection: close\r\n\r\n")
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    sock.close()
    return b"".join(chunks)


def test_the_web_answers_the_requests_in_flight_when_sigterm_arrives(make_platform, figures):
    """web SIGTERMed with requests in flight: all answered 200, exit 0"""
    platform = make_platform(WEB_CONCURRENCY="2")
    seed(platform)
    web = platform.web()
    wait_until(lambda: platform.get("/stats?coin=bitcoin", counted=False).status_code == 200, 30, what="web up")
    in_flight = [half_sent(platform.port) for _ in range(6)]
    time.sleep(0.5)  # accepted by the web processes
    web.popen.send_signal(signal.SIGTERM)
    figures.faults += 1
    wait_until(lambda: "Shutting down granian" in web.output, 10, what="the web shutting down")
    time.sleep(0.5)
    assert web.popen.poll() is None  # still up, for the requests it holds
    answers = [finish(sock) for sock in in_flight]
    statuses = [answer.split(b"\r\n", 1)[0] for answer in answers]
    for status in statuses:
        figures.answered(int(status.split(b" ")[1]))
    assert statuses == [b"HTTP/1.1 200 OK"] * len(in_flight)
    assert all(answer.endswith(BODY + b"\n") for answer in answers)
    assert web.popen.wait(30) == 0
    assert figures.failures() == {}


def test_beat_exits_0_on_sigterm(make_platform, figures):
    """beat SIGTERMed: exits 0"""
    platform = make_platform()
    beat = platform.beat()
    wait_until(lambda: "update schedule" in beat.output, 30, what="beat started")
    beat.popen.send_signal(signal.SIGTERM)
    figures.faults += 1
    assert beat.popen.wait(20) == 0
    assert "Traceback" not in beat.output
