"""Blueprint `dashboard`: the page at `/` and the static assets it and /docs load (app/api/static/, vendored
libraries under static/vendor/; no CDN, so it works offline)."""
from __future__ import annotations

from flask import Blueprint, make_response, render_template

bp = Blueprint("dashboard", __name__, static_folder="static", static_url_path="/static")

# Everything the page loads is ours: scripts, styles and data from this origin only (uPlot sizes its elements
# through the style attribute, hence 'unsafe-inline' for styles alone).
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                           "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'")


@bp.get("/")
def index():
    response = make_response(render_template("dashboard.html"))
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Cache-Control"] = "no-cache"
    return response
