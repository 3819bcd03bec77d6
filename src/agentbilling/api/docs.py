"""/docs: Swagger UI 5 (OpenAPI 3.1) from the swagger-ui-py package's assets (no CDN: it works
offline), started by a static script of ours so the page needs no inline script under the CSP."""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} · API docs</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{openapi_url}"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script src="/billing/static/docs.js"></script>
</body>
</html>
"""


def install(app: FastAPI) -> None:
    assets = files("swagger_ui") / "static"  # the package's Swagger UI build; only its files are used
    app.mount("/docs/static", StaticFiles(directory=str(assets)), name="docs-static")
    page = PAGE.format(title=app.title, openapi_url=app.openapi_url)

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return HTMLResponse(page)
