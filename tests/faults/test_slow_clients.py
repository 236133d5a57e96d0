"""Slow and idle clients against the Procfile's real web: 200 clients trickling their headers a byte a second and
200 idle keep-alive connections, held open (reopened when the server cuts them, as an attacker would), while other
clients ask for /stats. On gunicorn gthread (2 x 8 threads) 12 slow clients halved their success."""
import http.client
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest

from app.domain.model import Observation
from app.storage.sqlite import SqlitePriceRepository
from tests.procs import wait_until

pytestmark = pytest.mark.slow

SLOW, IDLE = 200, 200
USERS = 4  # other clients, each asking every PAUSE seconds for DURATION seconds (a few thousand requests in all)
PAUSE = 0.005
DURATION = 15.0  # longer than the server's header read timeout (10 s): the cut-and-come-back cycle is included
MAX_PER_USER = 5000
BODY = b'{"price":40000,"marketCap":800000000000,"24hChange":3.4}\n'
SLOW_REQUEST = b"GET /stats?coin=bitcoin HTTP/1.1\r\nHost: localhost\r\nUser-Agent: trickle\r\nAccept: */*\r\n\r\n"


def seed(platform) -> None:
    repo = SqlitePriceRepository(platform.db_path)
    repo.ensure_schema()
    now = datetime.now(timezone.utc).replace(microsecond=0)
    repo.add_batch([Observation("bitcoin", "usd", 40000, 800e9, 1e9, 3.4, now - timedelta(seconds=1), now)])
    repo.close()


class Attackers:
    """SLOW sockets sending one byte of a request a second, IDLE keep-alive sockets that sent one request and then
    say nothing; a socket the server closes is opened again. One thread does it all."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.slow: list[list] = []  # [socket, bytes sent]
        self.idle: list[socket.socket] = []
        self.reopened = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=5)

    def _idle(self) -> socket.socket:
        """A keep-alive connection that asked once (its answer is read, and dropped, by _run) and then idles."""
        sock = self._connect()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        sock.setblocking(False)
        return sock

    def open(self) -> None:
        self.slow = [[self._connect(), 0] for _ in range(SLOW)]
        self.idle = [self._idle() for _ in range(IDLE)]
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(1.0):
            for entry in self.slow:
                sock, sent = entry
                try:
                    sock.send(SLOW_REQUEST[sent % len(SLOW_REQUEST):][:1])
                    entry[1] = sent + 1
                except OSError:  # cut by the server (header read timeout): come back
                    sock.close()
                    try:
                        entry[:] = [self._connect(), 0]
                        self.reopened += 1
                    except OSError:
                        pass  # refused: try again in a second
            for i, sock in enumerate(self.idle):
                try:
                    closed = sock.recv(65536) == b""
                except BlockingIOError:
                    closed = False
                except OSError:
                    closed = True
                if closed:
                    sock.close()
                    try:
                        self.idle[i] = self._idle()
                        self.reopened += 1
                    except OSError:
                        pass  # refused: try again in a second

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        for sock in [entry[0] for entry in self.slow] + self.idle:
            sock.close()


def user(port: int) -> list[tuple[bool, float]]:
    """One other client: a request every PAUSE seconds for DURATION seconds, each on a new connection (as a
    dashboard behind a proxy, or curl, asks): (answered correctly, seconds taken) per request."""
    results = []
    end = time.monotonic() + DURATION
    while time.monotonic() < end and len(results) < MAX_PER_USER:
        time.sleep(PAUSE)
        started = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/stats?coin=bitcoin")
            response = conn.getresponse()
            ok = response.status == 200 and response.read() == BODY
        except (OSError, http.client.HTTPException):
            ok = False
        finally:
            conn.close()
        results.append((ok, time.perf_counter() - started))
    return results


def test_slow_and_idle_clients_do_not_starve_other_users(make_platform, figures):
    """200 slow clients (a header byte a second) and 200 idle keep-alive connections: other users' /stats"""
    platform = make_platform(WEB_CONCURRENCY="2")  # the Procfile's default
    seed(platform)
    platform.web()
    wait_until(lambda: platform.get("/stats?coin=bitcoin", counted=False).status_code == 200, 30, what="web up")
    attackers = Attackers(int(platform.port))
    attackers.open()
    figures.faults += SLOW + IDLE
    try:
        wait_until(lambda: all(sent for _, sent in attackers.slow), 10, what="every slow client sending")
        with ThreadPoolExecutor(USERS) as pool:
            results = [r for batch in pool.map(user, [int(platform.port)] * USERS) for r in batch]
    finally:
        attackers.close()
    ok = [seconds for good, seconds in results if good]
    figures.requests += len(results)
    figures.http_5xx = 0  # a failure here is a timeout or a refused connection, counted below
    success = len(ok) / len(results)
    p99_ms = sorted(seconds for _, seconds in results)[int(len(results) * 0.99)] * 1000
    print(f"\nslow clients: {SLOW} slow + {IDLE} idle held ({attackers.reopened} reopened after the server cut "
          f"them); other users: {len(ok)}/{len(results)} ok ({success:.2%}), p99 {p99_ms:.1f} ms")
    assert success >= 0.999, f"{success:.2%} of other users' requests succeeded; p99 {p99_ms:.0f} ms"
    assert platform.shows("/stats?coin=bitcoin", {"price": 40000, "marketCap": 800000000000, "24hChange": 3.4})
    assert platform.tracebacks() == []
