"""GET /ops: the on-call page (plain HTML and a little JavaScript, web/static/ops.html).

Loading the page needs no token: it holds no data. It asks for an admin token, keeps it
in the tab's sessionStorage and sends it as a bearer token to the /v1/ops/* JSON
endpoints, which do the authorization. The Content-Security-Policy allows only the
page's own inline script and style (by hash) and requests to this origin.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from importlib import resources

from aiohttp import web

_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)


def _sha256(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


@cache
def page() -> tuple[bytes, str]:
    """The page and its Content-Security-Policy (read once per process)."""
    html = (resources.files("web") / "static" / "ops.html").read_text(encoding="utf-8")
    hashes: dict[str, list[str]] = {"script": [], "style": []}
    for tag, source in _INLINE.findall(html):
        hashes[tag].append(_sha256(source))
    csp = "; ".join(
        [
            "default-src 'none'",
            "script-src " + " ".join(hashes["script"]),
            "style-src " + " ".join(hashes["style"]),
            "connect-src 'self'",
            "img-src data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )
    return html.encode(), csp


async def ops_page(request: web.Request) -> web.Response:
    body, csp = page()
    return web.Response(
        body=body,
        content_type="text/html",
        charset="utf-8",
        headers={
            "Content-Security-Policy": csp,
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer",
        },
    )
