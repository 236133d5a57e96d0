"""Log redaction: no secret, host or path of the deployment in any log line, whichever code or library wrote it.

Adapters and drivers put what they know into their messages (PyMongo names `db1:27017`, sqlite3 names the file, a
proxy's URL carries its password). Rather than scrub each message where it is made, every log record of the process
is rewritten once, when it is created: the values the settings hold are replaced by the name of their variable.
"""
from __future__ import annotations

import logging
import traceback
from typing import Callable, Iterable
from urllib.parse import parse_qsl

from app.config import PUBLIC_BASE_URL, PRO_BASE_URL, Settings

_MIN_LENGTH = 3  # shorter values ("a", "db") would mangle ordinary words; no real secret or host is that short
_QUERY_SECRETS = frozenset({"password"})  # query parameters of a URL that hold a secret
# The machine's own names tell nothing about a deployment, and are every client's address in a local access log.
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0", "::"})


def _authority(url: str) -> tuple[list[str], list[str]]:
    """(user-info parts, host names) of a URL, also a multi-host MongoDB one (`mongodb://u:p@db1:27017,db2/...`)."""
    netloc = url.split("://", 1)[-1].split("/", 1)[0].split("?", 1)[0]
    userinfo, _, hosts = netloc.rpartition("@")
    users = [userinfo, *userinfo.split(":", 1)] if userinfo else []
    names = []
    for host in hosts.split(","):
        if host.startswith("["):  # [::1]:27017
            names.append(host[1:].split("]", 1)[0])
        else:
            names.append(host.rsplit(":", 1)[0] if host.count(":") == 1 else host)
    return users, names


def replacements(settings: Settings) -> list[tuple[str, str]]:
    """(value, what replaces it) for every secret, host and path the settings name, longest value first (so a
    password is replaced before a shorter user name that it contains)."""
    pairs: list[tuple[str, str]] = []
    for name, value in (("COINGECKO_API_KEY", settings.coingecko_api_key),
                        *((n, getattr(settings, a, None)) for n, a in (("ADMIN_TOKEN", "admin_token"),
                                                                      ("METRICS_TOKEN", "metrics_token")))):
        if value:
            pairs.append((value, "***"))
    urls = [("MONGODB_URI", settings.mongodb_uri), ("REDIS_URL", settings.redis_url)]
    if settings.coingecko_base_url not in (PUBLIC_BASE_URL, PRO_BASE_URL):  # CoinGecko's own host is no secret
        urls.append(("COINGECKO_BASE_URL", settings.coingecko_base_url))
    for name, url in urls:
        if not url:
            continue
        users, hosts = _authority(url)
        pairs += [(u, "***") for u in users]
        # redis-py also takes credentials in the query (unix:///run/redis.sock?password=...), so do URLs generally.
        # Both as written (percent-encoded, as a driver repeats the URL) and decoded (as it uses the password).
        query = url.partition("?")[2]
        raw = [part.partition("=") for part in query.split("&")]
        pairs += [(v, "***") for k, _, v in raw if k.lower() in _QUERY_SECRETS and v]
        pairs += [(v, "***") for k, v in parse_qsl(query) if k.lower() in _QUERY_SECRETS and v]
        pairs += [(h, f"<{name} host>") for h in hosts if h not in _LOOPBACK]
        if url.startswith("unix://"):
            pairs.append((url[len("unix://"):].split("?", 1)[0], f"<{name} socket>"))
    # Both spellings: as resolved (symlinks followed) and as the adapters make it absolute (app/storage/sqlite.py).
    pairs += [(str(settings.data_dir.resolve()), "<DATA_DIR>"), (str(settings.data_dir.absolute()), "<DATA_DIR>")]
    unique = {value: replacement for value, replacement in pairs if len(value) >= _MIN_LENGTH}
    return sorted(unique.items(), key=lambda pair: len(pair[0]), reverse=True)


def redactor(pairs: Iterable[tuple[str, str]]) -> Callable[[str], str]:
    pairs = list(pairs)

    def redact(text: str) -> str:
        for value, replacement in pairs:
            if value in text:
                text = text.replace(value, replacement)
        return text

    return redact


_installed: list[Callable[[str], str]] = []  # the redactor of this process's settings, once installed


def install_log_redaction(settings: Settings) -> None:
    """Make every log record of this process (and of the processes it forks) carry its message and traceback
    already redacted. Idempotent: a second call (a second entry point in the same process) replaces the values."""
    redact = redactor(replacements(settings))
    if _installed:
        _installed[0] = redact
        return
    _installed.append(redact)
    make_record = logging.getLogRecordFactory()

    def redacted_record(*args, **kwargs) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        scrub = _installed[0]
        try:
            record.msg, record.args = scrub(record.getMessage()), None
        except Exception:  # noqa: BLE001  a record whose arguments do not fit its format: logging reports it itself
            return record
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = scrub("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        return record

    logging.setLogRecordFactory(redacted_record)
