"""JSON log lines (LOG_FORMAT=json, python-json-logger) and the request id they carry; text stays bootstrap's format."""
from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.json import JsonFormatter

# The id of the HTTP request this thread is answering (app/api/guard.py sets it), None outside a request.
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"


class PlatformJsonFormatter(JsonFormatter):
    """One JSON object per record: time, level, logger, message, the process role, and `request_id` (web) or
    `task_id` (worker: tasks/prices.py puts the running task's id on every record as `task`)."""

    def __init__(self, role: str = "web", **kwargs: Any) -> None:
        super().__init__(FIELDS, rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                         static_fields={"process": role}, reserved_attrs=[*_RESERVED, "task"], **kwargs)

    def add_fields(self, log_record: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_record, record, message_dict)
        rid = request_id.get()
        if rid:
            log_record["request_id"] = rid
        task = (getattr(record, "task", "") or "").strip()
        if task:
            log_record["task_id"] = task


_RESERVED = list(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) + ["message", "asctime"]


def formatter(log_format: str, role: str, text_format: str) -> logging.Formatter:
    """The formatter of a process: JSON when LOG_FORMAT=json, else `text_format` (bootstrap.log_format)."""
    if log_format == "json":
        return PlatformJsonFormatter(role)
    return logging.Formatter(text_format)


def formatter_config(log_format: str, role: str, text_format: str) -> dict[str, Any]:
    """The same, as a logging.config dictConfig formatter entry (gunicorn's logconfig_dict)."""
    if log_format == "json":
        return {"()": PlatformJsonFormatter, "role": role}
    return {"format": text_format}


def use(logger: logging.Logger, log_format: str, role: str) -> None:
    """Give every handler of `logger` the JSON formatter when LOG_FORMAT=json (Celery makes its own handlers)."""
    if log_format != "json":
        return
    for handler in logger.handlers:
        handler.setFormatter(PlatformJsonFormatter(role))
