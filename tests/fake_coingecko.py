"""Local fake of CoinGecko's API v3 (real JSON shapes and quirks, scriptable faults) for tests and offline demos."""
from __future__ import annotations

import argparse
import http.client
import json
import math
import random
import signal
import threading
import time
import zlib
from collections import deque, namedtuple
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

# Comments cite the team's CoinGecko reference note (shared/reference/coingecko.md) as "ref §N".
API = "/api/v3"
CONTROL = "/_fake"
FAULTABLE = ("/simple/price", "/coins/markets")  # only the price endpoints take queued faults
DROP = object()  # response sentinel: close the socket without answering


class Trickle(namedtuple("Trickle", "seconds interval")):
    """Response: 200 headers, then one byte every `interval` s for `seconds` s (each read succeeds, so a client's
    per-read timeout never fires), then the connection is closed with the body incomplete."""


# base_usd: seeded start price centres here and 24h change is measured against it; market cap = price x supply;
# 24h volume = market cap x volume_ratio; step: std-dev of the per-call log-price step; lag: seconds this coin's
# ref §2: at most 515 ids per /simple/price request (the Demo page; the refusal's wording is ours). A request line
# over 8 KB is refused by the CDN in front, as by many proxies.
MAX_SIMPLE_PRICE_IDS = 515
MAX_URL_BYTES = 8192
# last_updated_at trails the clock (ids refresh at different moments, ref §2 example).
Coin = namedtuple("Coin", "symbol name base_usd supply volume_ratio step lag")
COINS: dict[str, Coin] = {
    "bitcoin": Coin("btc", "Bitcoin", 40000.0, 19_600_000, 0.035, 0.004, 0),
    "ethereum": Coin("eth", "Ethereum", 2200.0, 120_200_000, 0.06, 0.005, 3),
    # POL's API id is polygon-ecosystem-token, not a "pol" slug (ref §5).
    "polygon-ecosystem-token": Coin("pol", "POL (ex-MATIC)", 0.45, 10_300_000_000, 0.04, 0.008, 7),
    "solana": Coin("sol", "Solana", 100.0, 440_000_000, 0.07, 0.007, 2),
    "tether": Coin("usdt", "Tether", 1.0, 95_000_000_000, 0.5, 0.0002, 5),
    "matic-network": Coin("matic", "Polygon", 0.45, 0, 0.0, 0.0, 0),
    # Symbols are not unique (ref §2): another "eth", as in the real list. step 0: it draws nothing from the seeded
    # random path, so the other coins' prices stay what they were before it was added.
    "ethereum-wormhole": Coin("eth", "Ethereum (Wormhole)", 2200.0, 100_000, 0.01, 0.0, 0),
}
# Known id that CoinGecko no longer prices: /simple/price answers {"matic-network": {}} (ref §5, §6).
DEPRECATED = frozenset({"matic-network"})
# Fixed conversion rates from USD. btc/eth make tiny values that json.dumps writes as 2.5e-05 (exponent quirk, ref §6).
RATES = {"usd": 1.0, "eur": 0.92, "gbp": 0.79, "jpy": 150.0, "btc": 1 / 40000, "eth": 1 / 2200}
FAULTS = {"status": (), "html": (), "rate_limit": (), "malformed": (), "body": ("body",), "raw": ("raw",),
          "delay": ("seconds",), "drop": (), "trickle": ("seconds",)}  # fault name -> required options
RATE_LIMIT_BODY = {"status": {"error_code": 429, "error_message": (
    "You've exceeded the Rate Limit. Please visit https://www.coingecko.com/en/api/pricing "
    "to subscribe to our API plans for higher rate limits.")}}  # exact wording seen in the wild (ref §4)
KEY_ERRORS = {  # wrong key/host pairing is rejected with 400, not downgraded (ref §1, §6)
    10010: "If you are using Pro API key, please change your root URL from api.coingecko.com to pro-api.coingecko.com",
    10011: "If you are using Demo API key, please change your root URL from pro-api.coingecko.com to api.coingecko.com",
}
# Cloudflare answers some errors with an HTML page, which breaks naive .json() parsing (ref §4, §6).
CLOUDFLARE_HTML = """<!DOCTYPE html>
<html class="no-js" lang="en-US"><head><meta charset="UTF-8" />
<title>{headline} | api.coingecko.com used Cloudflare to restrict access</title></head>
<body><div id="cf-wrapper"><div id="cf-error-details" class="cf-error-details-wrapper">
<h1><span class="cf-error-type">Error</span> <span class="cf-error-code">{code}</span></h1>
<h2 class="cf-subheadline">{headline}</h2>
<p>The site owner may have set restrictions that prevent you from accessing the site.</p>
<p>api.coingecko.com used Cloudflare to restrict access (HTTP {status}).</p>
<p class="cf-footer-item">Cloudflare Ray ID: <strong>8a1b2c3d4e5f6789</strong></p>
</div></div></body></html>
"""


# ---- hostile modes (issue 8: an upstream that attacks its client) ------------------------------------------------
# Queued like the other faults (enqueue):
#   redirect  location=URL [status=301]      a redirect, e.g. to another host that would collect the key
#   huge      size=N [declare_length=bool]   N bytes of JSON (spaces, then {}), streamed; Content-Length only if asked
#   endless   [status=200]                   spaces for as long as the client reads
#   gzip_bomb inflated=N                     Content-Encoding: gzip, a small body that inflates to N bytes of JSON
#   nested    depth=N                        N nested JSON arrays (a parser's recursion)
# Absurd Retry-After values go through rate_limit (retry_after="99999999999999999999"), absurd numbers through raw
# or set_price. set_clock_offset(seconds) shifts the fake's clock (Date header and last_updated_at), as if the
# client's clock were that many seconds behind.
HOSTILE_FAULTS = {"redirect": ("location",), "huge": ("size",), "endless": (), "gzip_bomb": ("inflated",),
                  "nested": ("depth",)}
_PAD = b" " * 65536


class Stream(namedtuple("Stream", "status headers chunks")):
    """Response: `headers`, then the body from the iterator `chunks`; the connection closes when it ends."""


def _padding(size: int | None, stopping: threading.Event):
    """`size` bytes of valid JSON (leading whitespace, then {}), or spaces until `stopping` when size is None."""
    left = size - 2 if size is not None else None
    while (left is None or left > 0) and not stopping.is_set():
        chunk = _PAD if left is None or left >= len(_PAD) else _PAD[:left]
        yield chunk
        if left is not None:
            left -= len(chunk)
    if size is not None:
        yield b"{}"


_bombs: dict[int, bytes] = {}


def _gzip_bomb(inflated: int) -> bytes:
    """gzip of `inflated` bytes of valid JSON: ~1 KB per MB, made once per size."""
    if inflated not in _bombs:
        packer = zlib.compressobj(9, zlib.DEFLATED, 31)
        parts = [packer.compress(b" " * (1 << 20)) for _ in range(max(0, inflated - 2) >> 20)]
        parts += [packer.compress(b" " * ((max(0, inflated - 2)) & ((1 << 20) - 1)) + b"{}"), packer.flush()]
        _bombs[inflated] = b"".join(parts)
    return _bombs[inflated]


def _hostile(fake: "FakeCoinGecko", kind: str, opts: dict) -> Any:
    if kind == "redirect":
        return opts.get("status", 301), b'{"moved":true}', "application/json", {"Location": opts["location"]}
    if kind == "huge":
        size = int(opts["size"])
        headers = {"Content-Type": "application/json"}
        if opts.get("declare_length"):
            headers["Content-Length"] = str(size)
        return Stream(200, headers, _padding(size, fake._stopping))
    if kind == "endless":
        return Stream(opts.get("status", 200), {"Content-Type": "application/json"}, _padding(None, fake._stopping))
    if kind == "gzip_bomb":
        return 200, _gzip_bomb(int(opts["inflated"])), "application/json", {"Content-Encoding": "gzip"}
    depth = int(opts["depth"])  # kind == "nested"
    return 200, b"[" * depth + b"]" * depth, "application/json", {}


FAULTS.update(HOSTILE_FAULTS)


def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _round_price(value: float, precision: str | None) -> float | int:
    """precision=full -> unrounded, 0..18 -> that many decimals, absent -> 8 significant digits (ref §2)."""
    if precision == "full":
        return value
    if precision is not None and precision.isdigit() and int(precision) <= 18:
        return int(round(value)) if int(precision) == 0 else round(value, int(precision))
    return float(f"{value:.8g}")


def _csv(value: str | None) -> list[str]:
    return list(dict.fromkeys(p.strip() for p in (value or "").split(",") if p.strip()))


def _json(status: int, obj: Any, headers: dict[str, str] | None = None) -> tuple:
    return status, json.dumps(obj, separators=(",", ":")).encode(), "application/json", headers or {}


def _html(status: int, code: str, headline: str) -> tuple:
    page = CLOUDFLARE_HTML.format(code=code, headline=headline, status=status)
    return status, page.encode(), "text/html; charset=UTF-8", {}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() must not wait for a handler sleeping in a "delay" fault
    fake: "FakeCoinGecko"

    def handle_error(self, request, client_address):  # clients hanging up mid-answer are normal here
        if self.fake.verbose:
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so a stopped fake cannot keep answering on pooled keep-alive sockets.
    protocol_version = "HTTP/1.0"
    timeout = 30
    server: _Server

    def version_string(self) -> str:
        return "cloudflare"  # CoinGecko sits behind Cloudflare (ref §4: `server: cloudflare`)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.fake.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._answer("GET", b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._answer("POST", self.rfile.read(length) if length else b"")

    def _answer(self, method: str, body: bytes) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            response = self.server.fake._respond(method, self.path, headers, body)
        except Exception as exc:  # a bug in the fake must not look like a network fault to the code under test
            response = _json(500, {"error": f"fake_coingecko crashed: {exc!r}"})
        self.close_connection = True
        if response is DROP:
            return  # handler returns; the server closes the socket and the client sees no answer
        if isinstance(response, Trickle):
            self._trickle(response)
            return
        if isinstance(response, Stream):
            self._stream(response)
            return
        status, payload, content_type, extra = response
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (e.g. its timeout fired during a "delay" fault)


    def _stream(self, stream: Stream) -> None:
        try:
            self.send_response(stream.status)
            for name, value in stream.headers.items():
                self.send_header(name, value)
            self.end_headers()
            for chunk in stream.chunks:
                self.wfile.write(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading: what a bounded client does

    def date_time_string(self, timestamp: float | None = None) -> str:
        if timestamp is None:  # the Date header of every answer, on the fake's (possibly offset) clock
            timestamp = time.time() + self.server.fake._clock_offset
        return super().date_time_string(timestamp)

    def _trickle(self, trickle: Trickle) -> None:
        deadline = time.monotonic() + trickle.seconds
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            while time.monotonic() < deadline and not self.server.fake._stopping.wait(trickle.interval):
                self.wfile.write(b" ")  # JSON allows leading whitespace: the body never gets anywhere
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up


class FakeCoinGecko:
    """CoinGecko v3 on 127.0.0.1: `with FakeCoinGecko() as cg: poll(cg.base_url)`.

    Endpoints: /ping, /simple/price, /simple/supported_vs_currencies, /coins/list, /coins/markets (all else
    404 JSON).
    Prices follow a seeded random walk that steps on every successful price call. `pro=True` acts as
    pro-api.coingecko.com (demo keys rejected with 10011); otherwise pro keys get 10010. Tests steer it with
    set_price/enqueue/set_down/reset, or over HTTP: POST /_fake/<method> with the kwargs as a JSON object,
    GET /_fake/requests for the request log.
    """

    def __init__(self, port: int = 0, seed: Any = 1, *, host: str = "127.0.0.1", pro: bool = False,
                 verbose: bool = False) -> None:
        self.seed, self.pro, self.verbose, self.host = seed, pro, verbose, host
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._clock = int(time.time()) - 1  # last_updated_at source; monotonic, survives reset()
        self._server = _Server((host, port), _Handler)  # bind now so .port is known before start()
        self._server.fake = self
        self.reset()

    # ---- lifecycle -------------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}{API}"

    def start(self) -> "FakeCoinGecko":
        if self._thread is None:
            # Short poll interval: stop() (via shutdown()) returns within ~50 ms instead of the default 0.5 s.
            self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping in a "delay" fault; they drop their connection
        if self._thread is not None:
            self._server.shutdown()  # only safe once serve_forever runs, else it blocks forever
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> "FakeCoinGecko":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ---- control API (also POST /_fake/<name>) ---------------------------------------------------------------
    def set_price(self, coin: str, usd: Any, market_cap: Any = None, change_24h: Any = None, volume_24h: Any = None,
                  last_updated_at: Any = None) -> None:
        """Pin `coin` to exact values until reset(); non-numbers (None, "1") are served verbatim.

        None for the optional fields means "derive as usual" (last_updated_at keeps advancing per call). Pinning
        an unknown id adds it; pinning matic-network makes it priced again.
        """
        if not isinstance(coin, str) or not coin:
            raise ValueError("coin must be a non-empty CoinGecko id")
        with self._lock:
            if coin not in COINS and coin not in self._extra:
                base = float(usd) if _is_num(usd) else 1.0
                self._extra[coin] = Coin(coin.split("-")[0][:5], coin.replace("-", " ").title(), base, 1e9, 0.05, 0, 0)
                self._state[coin] = {"usd": base, "open": base}
            self._pins[coin] = {"usd": usd, "market_cap": market_cap, "change_24h": change_24h,
                                "volume_24h": volume_24h, "last_updated_at": last_updated_at}

    def enqueue(self, fault: str, count: int = 1, **opts: Any) -> None:
        """The next `count` requests to /simple/price or /coins/markets get `fault` (FIFO) instead of an answer."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; choose from {sorted(FAULTS)}")
        missing = [name for name in FAULTS[fault] if name not in opts]
        if missing:
            raise ValueError(f"fault {fault!r} needs {missing}")
        if not isinstance(count, int) or count < 0:
            raise ValueError("count must be an int >= 0")
        if fault == "body":
            json.dumps(opts["body"])  # fail now (TypeError), not inside the server thread
        if fault == "delay":
            opts["seconds"] = float(opts["seconds"])
        with self._lock:
            self._faults.extend([(fault, dict(opts))] * count)

    def set_clock_offset(self, seconds: float) -> None:
        """Shift the Date header and last_updated_at by `seconds` (positive: the fake runs ahead) until reset()."""
        with self._lock:
            self._clock_offset = float(seconds)

    def set_down(self, down: bool = True) -> None:
        """While down, every /api/v3 request gets a 503 Cloudflare HTML page (outage, ref §4)."""
        with self._lock:
            self._down = bool(down)

    def reset(self) -> None:
        """Clear faults, pins, down flag and request log; prices restart from the seeded start."""
        with self._lock:
            self._rng = random.Random(self.seed)
            self._state = {cid: {"usd": c.base_usd * (1 + self._rng.uniform(-0.03, 0.03)), "open": c.base_usd}
                           for cid, c in COINS.items()}
            self._extra: dict[str, Coin] = {}
            self._pins: dict[str, dict] = {}
            self._faults: deque = deque()
            self._down = False
            self._log: list[dict] = []
            self._clock_offset = 0.0

    @property
    def requests(self) -> list[dict]:
        """Every /api/v3 request: {"path", "query", "headers" (lowercased), "at"} (control calls are not logged)."""
        with self._lock:
            return [{**r, "query": dict(r["query"]), "headers": dict(r["headers"])} for r in self._log]

    def request_count(self, path_suffix: str = "/simple/price") -> int:
        with self._lock:
            return sum(1 for r in self._log if r["path"].endswith(path_suffix))

    # ---- request handling ------------------------------------------------------------------------------------
    def _respond(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> Any:
        parts = urlsplit(raw_path)
        path = parts.path.rstrip("/") or "/"
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        if path.startswith(CONTROL + "/"):
            return self._control(method, path[len(CONTROL) + 1:], body)
        if path != API and not path.startswith(API + "/"):
            return _json(404, {"error": "Not Found"})
        endpoint = path[len(API):]
        if len(raw_path) > MAX_URL_BYTES:  # what the CDN in front of CoinGecko (and many proxies) does
            return _html(414, "414", "Request-URI Too Large")
        with self._lock:
            self._log.append({"path": path, "query": query, "headers": headers, "at": time.time()})
            down = self._down
            # A queued fault is consumed by the next price request whatever it carries (keys, params), so FIFO
            # order is easy to reason about; an outage (set_down) leaves the queue untouched.
            faultable = endpoint in FAULTABLE or endpoint.endswith("/market_chart/range")
            fault = self._faults.popleft() if not down and faultable and self._faults else None
        if down:
            return _html(503, "503", "Service Temporarily Unavailable")
        if fault is not None:
            outcome = self._fault(*fault)
            if outcome is not None:
                return outcome  # "delay" returns None: answer normally after sleeping
        pro_key = headers.get("x-cg-pro-api-key") or query.get("x_cg_pro_api_key")
        demo_key = headers.get("x-cg-demo-api-key") or query.get("x_cg_demo_api_key")
        code = 10010 if pro_key and not self.pro else 10011 if demo_key and self.pro else None
        if code is not None:
            return _json(400, {"error_code": code, "status": {"error_message": KEY_ERRORS[code]}})
        routes = {"/ping": lambda q: _json(200, {"gecko_says": "(V3) To the Moon!"}),
                  "/simple/supported_vs_currencies": lambda q: _json(200, list(RATES)),
                  "/coins/list": self._coins_list,
                  "/simple/price": self._simple_price, "/coins/markets": self._markets}
        if method == "GET" and endpoint.startswith("/coins/") and endpoint.endswith("/market_chart/range"):
            return self._market_chart_range(endpoint[len("/coins/"):-len("/market_chart/range")], query)
        if method != "GET" or endpoint not in routes:
            return _json(404, {"error": "Not Found"})
        return routes[endpoint](query)

    def _fault(self, kind: str, opts: dict) -> Any:
        """The response for a queued fault, DROP, or None ("delay": answer normally after sleeping)."""
        status = opts.get("status")
        if kind in HOSTILE_FAULTS:
            return _hostile(self, kind, opts)
        if kind == "delay":  # stop() interrupts the sleep, so a stopped fake never answers late
            return DROP if self._stopping.wait(opts["seconds"]) else None
        if kind == "drop":
            return DROP
        if kind == "trickle":
            return Trickle(float(opts["seconds"]), float(opts.get("interval", 0.2)))
        if kind == "status":
            return _json(status or 500, {"error": http.client.responses.get(status or 500, "Error")})
        if kind == "html":
            return _html(status or 503, "1020", "Access denied")
        if kind == "rate_limit":
            retry_after = opts.get("retry_after", 60)  # explicit None -> no header (some 429s lack it)
            return _json(429, RATE_LIMIT_BODY, {} if retry_after is None else {"Retry-After": str(retry_after)})
        if kind == "malformed":
            return 200, b'{"bitcoin":{"usd":40000,"usd_market_cap":8000', "application/json", {}
        if kind == "body":
            return _json(status or 200, opts["body"])
        raw = opts["raw"]  # kind == "raw": text exactly as given, e.g. {"bitcoin":{"usd":4.0e4}}
        payload = raw.encode() if isinstance(raw, str) else bytes(raw)
        return status or 200, payload, opts.get("content_type", "application/json"), {}

    def _control(self, method: str, name: str, body: bytes) -> tuple:
        if method == "GET" and name == "requests":
            return _json(200, self.requests)
        if method != "POST" or name not in ("set_price", "enqueue", "set_down", "reset", "set_clock_offset"):
            return _json(404, {"error": "Not Found"})
        try:
            args = json.loads(body or b"{}")
            if not isinstance(args, dict):
                raise ValueError("JSON body must be an object")
            getattr(self, name)(**args)
        except (TypeError, ValueError) as exc:
            return _json(400, {"error": str(exc)})
        return _json(200, {"ok": True})

    def _advance(self) -> None:
        """One successful price call: clock moves >= 1 s (each poll is a new observation), prices take a step."""
        self._clock = max(self._clock + 1, int(time.time()))
        for cid, coin in COINS.items():  # draw for every coin in fixed order: same seed -> same path, pins or not
            step = self._rng.gauss(0.0, coin.step) if coin.step else 0.0
            if cid not in self._pins:
                self._state[cid]["usd"] *= math.exp(step)

    def _quote(self, cid: str) -> dict | None:
        """USD figures for one id: None = unknown id, {} = known but unpriced (deprecated)."""
        coin = COINS.get(cid) or self._extra.get(cid)
        if coin is None:
            return None
        pin = self._pins.get(cid)
        if pin is None and cid in DEPRECATED:
            return {}
        state = self._state[cid]
        price = pin["usd"] if pin else state["usd"]
        num = _is_num(price)

        def pick(key: str, derived: Any) -> Any:
            return pin[key] if pin and pin[key] is not None else derived

        return {"price": price, "market_cap": pick("market_cap", price * coin.supply if num else None),
                "volume": pick("volume_24h", price * coin.supply * coin.volume_ratio if num else None),
                "change": pick("change_24h", (price / state["open"] - 1) * 100 if num and state["open"] else None),
                "updated": pick("last_updated_at", self._clock - coin.lag + round(self._clock_offset)),
                "exact": {"price" if k == "usd" else k for k, v in (pin or {}).items() if v is not None}}

    @staticmethod
    def _money(quote: dict, key: str, currency: str, precision: str | None = None, digits: int = 2) -> Any:
        """A USD figure in `currency`. Pinned values go out verbatim in usd; non-numbers (None, "1") always do."""
        value = quote.get(key)
        if not _is_num(value) or (currency == "usd" and key in quote["exact"]):
            return value
        value *= RATES[currency]
        if key == "price":
            return _round_price(value, precision)
        return int(round(value)) if digits == 0 else round(value, digits)

    # ---- catalogue: /coins/list ---------------------------------------------------------------------------------
    def _coins_list(self, q: dict[str, str]) -> tuple:
        """Every known id, deprecated ones and ones added by set_price included (ref §2: one unpaginated array)."""
        with self._lock:
            known = {**COINS, **self._extra}
        return _json(200, [{"id": cid, "symbol": c.symbol, "name": c.name} for cid, c in sorted(known.items())])

    def _simple_price(self, q: dict[str, str]) -> tuple:
        currencies = [c.lower() for c in _csv(q.get("vs_currencies"))]
        if not currencies:
            return _json(400, {"error": "Missing parameter vs_currencies"})
        flag = {k: q.get(k, "").lower() == "true" for k in
                ("include_market_cap", "include_24hr_vol", "include_24hr_change", "include_last_updated_at")}
        if len(_csv(q.get("ids"))) > MAX_SIMPLE_PRICE_IDS:
            return _json(400, {"status": {"error_code": 400, "error_message":
                                          f"Exceeds the maximum of {MAX_SIMPLE_PRICE_IDS} ids per request"}})
        out: dict[str, dict] = {}
        with self._lock:
            self._advance()
            for cid in _csv(q.get("ids")):
                quote = self._quote(cid)
                if quote is None:
                    continue  # unknown ids are dropped silently, {} if none known (ref §3)
                entry: dict[str, Any] = {}
                for cur in (c for c in currencies if quote and c in RATES):  # unsupported -> keys absent (ref §3)
                    entry[cur] = self._money(quote, "price", cur, q.get("precision"))
                    if flag["include_market_cap"]:
                        entry[f"{cur}_market_cap"] = self._money(quote, "market_cap", cur)
                    if flag["include_24hr_vol"]:
                        entry[f"{cur}_24h_vol"] = self._money(quote, "volume", cur)
                    if flag["include_24hr_change"]:
                        entry[f"{cur}_24h_change"] = quote["change"]  # percent, may be negative
                if entry and flag["include_last_updated_at"]:
                    entry["last_updated_at"] = quote["updated"]  # unix seconds (ref §2)
                out[cid] = entry
        return _json(200, out)

    def _markets(self, q: dict[str, str]) -> tuple:
        currency = q.get("vs_currency", "").strip().lower()
        if currency not in RATES:  # flat 400, unlike /simple/price which just omits the keys (ref §3)
            return _json(400, {"error": "invalid vs_currency" if currency else "Missing parameter vs_currency"})
        rows: list[dict] = []
        with self._lock:
            self._advance()
            for cid in _csv(q.get("ids")) or [*COINS, *self._extra]:
                quote, coin = self._quote(cid), COINS.get(cid) or self._extra.get(cid)
                if quote is None:
                    continue  # unknown ids are just absent from the array (ref §2)
                quote = quote or {"exact": ()}  # deprecated id: listed with null numbers (SDK: nullable, ref §2)
                updated = quote.get("updated")
                rows.append({
                    "id": cid, "symbol": coin.symbol, "name": coin.name,
                    "current_price": self._money(quote, "price", currency, q.get("precision")),
                    "market_cap": self._money(quote, "market_cap", currency, digits=0),
                    "total_volume": self._money(quote, "volume", currency, digits=0),
                    "price_change_percentage_24h": quote.get("change"),
                    "last_updated": (datetime.fromtimestamp(updated, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
                                     if _is_num(updated) else updated),
                })
        # Default order=market_cap_desc (other orders are not modelled); null/string market caps sort last.
        rows.sort(key=lambda r: -r["market_cap"] if _is_num(r["market_cap"]) else math.inf)
        return _json(200, rows)  # per_page/page are ignored: the catalogue is far below one page


    # ---- history: /coins/{id}/market_chart/range ----------------------------------------------------------------
    def _market_chart_range(self, cid: str, q: dict[str, str]) -> tuple:
        """Points of [from, to] (UNIX seconds) on CoinGecko's automatic grid (ref §2): a 1-day window ending now ->
        5-minute, any other window up to 90 days -> hourly (on the hour), longer -> daily (00:00 UTC). Keyless and
        Demo (not `pro`) see the past 365 days only: an older `from` is refused with 10012, wrapped (ref §4).
        Prices are a deterministic function of the time, so two fetches of one window agree."""
        currency = q.get("vs_currency", "").strip().lower()
        if currency not in RATES:
            return _json(400, {"error": "invalid vs_currency" if currency else "Missing parameter vs_currency"})
        try:
            start, end = int(float(q["from"])), int(float(q["to"]))
        except (KeyError, ValueError):
            return _json(400, {"error": "Missing or invalid parameter from/to"})
        with self._lock:
            coin = COINS.get(cid) or self._extra.get(cid)
        if coin is None:
            return _json(404, {"error": "coin not found"})
        now = int(time.time() + self._clock_offset)
        if not self.pro and start < now - 365 * 86400:
            return _json(401, {"error": {"status": {
                "timestamp": datetime.now(timezone.utc).isoformat(), "error_code": 10012,
                "error_message": "Your request exceeds the allowed time range. Public API users are limited to "
                                 "querying historical data within the past 365 days. Upgrade to a paid plan to "
                                 "enjoy full historical data access: https://www.coingecko.com/en/api/pricing. "}}})
        span = end - start
        step = 300 if span <= 86400 and now - end < 300 else 3600 if span <= 90 * 86400 else 86400
        prices, caps, volumes = [], [], []
        if cid not in DEPRECATED and end >= start:
            rate = RATES[currency]
            for t in range(-(-start // step) * step, min(end, now) + 1, step):
                usd = coin.base_usd * (1 + 0.05 * math.sin(t / 86400.0))  # the same value for the same t
                ms = t * 1000
                prices.append([ms, usd * rate])
                caps.append([ms, usd * coin.supply * rate])
                volumes.append([ms, usd * coin.supply * coin.volume_ratio * rate])
        return _json(200, {"prices": prices, "market_caps": caps, "total_volumes": volumes})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake CoinGecko API v3 for offline demos and tests.")
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--seed", default="1")
    parser.add_argument("--pro", action="store_true", help="act as pro-api.coingecko.com (demo keys get 10011)")
    parser.add_argument("--verbose", action="store_true", help="log each request to stderr")
    args = parser.parse_args(argv)
    seed = int(args.seed) if args.seed.lstrip("-").isdigit() else args.seed
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with FakeCoinGecko(args.port, seed, host=args.host, pro=args.pro, verbose=args.verbose) as fake:
        print(f"fake CoinGecko listening: COINGECKO_BASE_URL={fake.base_url}", flush=True)
        while not stop.wait(0.5):  # Ctrl-C / SIGTERM set the event; the with-block then stops the server
            pass


if __name__ == "__main__":
    main()
