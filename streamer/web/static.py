"""The browser SDK (``/sdk/frictionwatch.js``) and the demo shop (``/demo``)."""

from __future__ import annotations

from importlib import resources
from typing import Any

import faust
import orjson
from faust.web import Request, Response, View

from streamer.web.guard import Guard

CONTENT_TYPES = {
    # file under streamer/web -> content type
    "frictionwatch.js": "application/javascript; charset=utf-8",
    "demo/index.html": "text/html; charset=utf-8",
    "demo/shop.css": "text/css; charset=utf-8",
    "demo/shop.js": "application/javascript; charset=utf-8",
}


def _read() -> dict[str, bytes]:
    root = resources.files("streamer.web")
    return {name: (root / name).read_bytes() for name in CONTENT_TYPES}


def _asset(name: str, content: bytes, max_age: int = 300) -> type[View]:
    headers = {"Content-Type": CONTENT_TYPES[name], "Cache-Control": f"public, max-age={max_age}"}

    class Asset(View):
        async def get(self, request: Request, **_: Any) -> Response:
            return self.bytes(content, headers=headers)

    Asset.__name__ = "asset_" + name.replace("/", "_").replace(".", "_")
    return Asset


def register_sdk(app: faust.App) -> None:
    app.page("/sdk/frictionwatch.js", name="sdk")(_asset("frictionwatch.js", _read()["frictionwatch.js"]))


def register_demo(app: faust.App, guard: Guard) -> None:
    """The demo shop and its payment API, which declines every card."""
    files = _read()
    site_key = guard.site_keys[0] if guard.site_keys else ""
    html = files["demo/index.html"].replace(b'"__FW_SITE_KEY__"', orjson.dumps(site_key))
    for path in ("/demo", "/demo/cart", "/demo/checkout"):
        app.page(path, name="demo" + path.replace("/", "_"))(
            _asset("demo/index.html", html, max_age=0))
    app.page("/demo/static/shop.css", name="demo_css")(_asset("demo/shop.css", files["demo/shop.css"]))
    app.page("/demo/static/shop.js", name="demo_js")(_asset("demo/shop.js", files["demo/shop.js"]))

    @app.page("/demo/api/pay", name="demo_pay")
    class DemoPay(View):
        """The demo shop's payment provider: every card is declined."""

        async def post(self, request: Request) -> Response:
            await request.read()
            return self.json({"error": "card_declined",
                              "detail": "The card was declined by the issuer."}, status=402)
