"""Blueprint `stream`: GET /api/v1/stream, the Server-Sent Events of the tracked coins (app/services/live.py)."""
from __future__ import annotations

from flask import Blueprint, Response, request

from app.api import extensions

bp = Blueprint("stream", __name__)


@bp.get("/api/v1/stream")
def stream():
    """A `snapshot` per coin, then a `price` event per coin of every stored update, `: heartbeat` in between.
    Errors (404 unknown coin, 400 bad currency, 503 too many streams) are answered before the stream starts.
    A plain streaming Response on a thread, without stream_with_context (docs/benchmarks.md, "For the SSE
    endpoint"); the slot is freed when granian closes the generator (the next write to a gone client fails)."""
    raw = request.args.get("coins")
    coins = [c.strip().lower() for c in raw.split(",") if c.strip()] if raw and raw.strip() else None
    currency = request.args.get("currency")
    events = extensions.live().open(coins, currency if currency and currency.strip() else None,
                                    request.headers.get("Last-Event-ID"))
    response = Response(events, mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx and friends: do not buffer the stream
    return response
