"""The dashboard as an ASGI app: Streamlit's `st.App` over `app.py`, with a Content-Security-Policy.

`pixelscope dashboard` runs this file (`streamlit run dashboards/server.py`). The policy lets the
page load only from its own origin: a Markdown image or link that slipped past the escaping in
`selection.md` (a hostile file name, label, card or URL) cannot make the browser fetch another
host. Streamlit's front end needs inline styles and scripts and `eval` (Vega, Plotly), images from
`data:` / `blob:` URLs, and its websocket on the same origin; nothing else is allowed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import streamlit as st
from starlette.middleware import Middleware

POLICY = "; ".join([
    "default-src 'self'",
    "img-src 'self' data: blob:",
    "media-src 'self' data: blob:",
    "style-src 'self' 'unsafe-inline'",
    "script-src 'self' 'unsafe-inline' 'unsafe-eval'",
    "font-src 'self' data:",
    "connect-src 'self'",
    "frame-src 'self'",
    "worker-src 'self' blob:",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
])

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class ContentSecurityPolicy:
    """ASGI middleware: every HTTP response carries POLICY."""

    def __init__(self, app: Callable[..., Awaitable[None]]):
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_policy(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"content-security-policy", POLICY.encode())]
            await send(message)

        await self.app(scope, receive, with_policy)


app = st.App(str(Path(__file__).resolve().with_name("app.py")), middleware=[Middleware(ContentSecurityPolicy)])
