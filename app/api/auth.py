"""Admin routes' bearer token: `require_admin()` checks `Authorization: Bearer <ADMIN_TOKEN>`."""
from __future__ import annotations

import hmac

from flask import request

from app.domain.errors import NotAuthorized


def require_admin(token: str | None) -> None:
    """Raise NotAuthorized unless the request carries `Authorization: Bearer <token>`: "not_configured" (403) when
    ADMIN_TOKEN is unset, so admin routes stay off until an operator sets one; "missing" (401); "wrong" (403).
    Compared in constant time (hmac.compare_digest), so the answer's timing tells nothing of the token."""
    if not token:
        raise NotAuthorized("admin routes are off: ADMIN_TOKEN is not configured on this server",
                            reason="not_configured")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise NotAuthorized("this route needs the header Authorization: Bearer <ADMIN_TOKEN>", reason="missing")
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise NotAuthorized("the bearer token is not this server's ADMIN_TOKEN", reason="wrong")
