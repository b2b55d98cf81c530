"""The browser app: `/` serves the page, `/app/...` its static files (ES modules, styles,
translations), each with a strict Content-Security-Policy. The app talks only the public API.

Included last in `create_app`, so every API route takes precedence over these."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request, Response
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

# No inline script or style, no eval, no plugins, no framing. Trusted Types make every string
# write to an HTML sink (innerHTML and friends) throw in browsers that enforce them, so user
# text can only ever reach the page through textContent and other DOM APIs.
# connect-src 'self' covers fetch and the same-origin events WebSocket (ws: and wss:, CSP 3).
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    ]
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "microphone=(self), camera=(), geolocation=(), payment=()",
}

router = APIRouter(include_in_schema=False, tags=["web"])
_static = StaticFiles(directory=WEB_DIR, check_dir=False)


def _secured(response: Response, *, cache: str) -> Response:
    response.headers.update(SECURITY_HEADERS)
    # Revalidate on every load (ETag / Last-Modified make that cheap): a new server version
    # must never run against a cached old module.
    response.headers["Cache-Control"] = cache
    return response


@router.get("/")
async def index(request: Request) -> Response:
    response = await _static.get_response("index.html", request.scope)
    return _secured(response, cache="no-cache")


@router.get("/app/{path:path}")
async def asset(path: str, request: Request) -> Response:
    # StaticFiles resolves the path inside WEB_DIR (no `..` escapes, no symlinks out) and
    # answers conditional requests with 304.
    try:
        response = await _static.get_response(path, request.scope)
    except HTTPException as exc:  # keep the API's error shape for a missing file
        raise HTTPException(exc.status_code, "no such file in the web app") from exc
    return _secured(response, cache="no-cache")
