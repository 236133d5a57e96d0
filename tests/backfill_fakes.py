"""Hand-written fakes of the backfill ports: a history source, the usage counter and backfill state, a job queue."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from app.domain.errors import BrokerUnavailable
from app.domain.model import SOURCE_BACKFILL, Observation


class FakeHistorySource:
    """Hourly points of [start, end); `errors` are raised by the next calls, in order, before any answer."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls: list[tuple[datetime, datetime]] = []

    def fetch_range(self, coin: str, vs_currency: str, start: datetime, end: datetime) -> list[Observation]:
        self.calls.append((start, end))
        if self.errors:
            raise self.errors.pop(0)
        out, t = [], start
        while t < end:
            out.append(Observation(coin, vs_currency, 100.0 + t.hour, None, None, None, t, end, SOURCE_BACKFILL))
            t += timedelta(hours=1)
        return out


class FakeCounters:
    """UsageCounter and BackfillState in memory."""

    def __init__(self) -> None:
        self.progress: dict[tuple[str, str], dict[str, Any]] = {}
        self.chunks: dict[tuple[str, str], set[str]] = {}
        self.calls: list[tuple[int | None, datetime]] = []
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise BrokerUnavailable("fake Redis down")

    def count_call(self, status: int | None, now: datetime) -> None:
        self.calls.append((status, now))

    def usage(self, now: datetime) -> dict[str, int]:
        self._check()
        minute = now.replace(second=0, microsecond=0)
        return {"minute": sum(1 for _, at in self.calls if at.replace(second=0, microsecond=0) == minute),
                "month": sum(1 for _, at in self.calls if (at.year, at.month) == (now.year, now.month)),
                "rate_limited_month": sum(1 for s, _ in self.calls if s == 429)}

    def load_progress(self, coin: str, vs_currency: str) -> dict[str, Any] | None:
        self._check()
        return self.progress.get((coin, vs_currency))

    def save_progress(self, coin: str, vs_currency: str, progress: dict[str, Any]) -> None:
        self._check()
        self.progress[(coin, vs_currency)] = dict(progress)

    def held_chunks(self, coin: str, vs_currency: str) -> set[str]:
        self._check()
        return set(self.chunks.get((coin, vs_currency), set()))

    def mark_held(self, coin: str, vs_currency: str, chunk_key: str) -> None:
        self.chunks.setdefault((coin, vs_currency), set()).add(chunk_key)

    def close(self) -> None:
        pass


class FakeJobs:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []

    def send(self, name: str, kwargs: dict) -> None:
        self.sent.append((name, kwargs))
