"""The ASGI application: `create_app` wires the service into FastAPI; nothing connects at import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from agentbilling.api import contract, docs, problems
from agentbilling.api.gate.fast_admission import FastAdmission
from agentbilling.api.guards import RequestGuards
from agentbilling.api.headers import SecurityHeaders
from agentbilling.api.idempotency import IdempotencyMiddleware
from agentbilling.api.responses import StatusOut
from agentbilling.api.routes import billing, operator, runtime, webhooks
from agentbilling.client import Billing, connect
from agentbilling.settings import Settings
from agentbilling.version import __version__
from agentbilling.web import forms as web_forms
from agentbilling.web import sandbox_portal as portal
from agentbilling.web import tab as web

READYZ_SECONDS = 4.0  # /readyz answers within this, ready or not


# The health checks: /livez touches nothing; /readyz asks the database, within READYZ_SECONDS.
health = APIRouter()


@health.get("/livez", tags=["health"], response_model=StatusOut, summary="The process is up (no I/O)")
async def livez() -> dict[str, str]:
    return {"status": "ok"}

@health.get("/readyz", tags=["health"], response_model=StatusOut,
         summary="The database answers and is migrated")
async def readyz(request: Request) -> Any:
    svc: Billing = request.app.state.billing

    def check() -> bool:
        return svc.ready()

    # Answered within READYZ_SECONDS whatever the database does: a check stuck on a hung
    # database is left to its own timeouts, on its thread.
    try:
        with anyio.fail_after(READYZ_SECONDS):
            current = await anyio.to_thread.run_sync(check, abandon_on_cancel=True)
    except TimeoutError:
        return problems.Problem(503, "not-ready", f"The database did not answer within {READYZ_SECONDS:g} s.",
                                headers={"Retry-After": str(problems.RETRY_AFTER_S)}).response()
    except Exception as exc:  # any failure to reach the database means not ready
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        return problems.Problem(503, "not-ready", f"The database does not answer: {type(exc).__name__}"
                                + (f": {reason}" if reason else ""),
                                headers={"Retry-After": str(problems.RETRY_AFTER_S)}).response()
    if not current:
        return problems.Problem(503, "not-ready", "The database is not migrated: run `agentbilling db upgrade`.") \
            .response()
    return JSONResponse({"status": "ready"})


def create_app(service: Billing | None = None, settings: Settings | None = None) -> FastAPI:
    """The app around a service; without one it connects (and migrates) at startup."""
    owned = service is None
    config = settings or (service.settings if service is not None else Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app.state.billing is None:
            app.state.billing = connect(config)
        # PostgreSQL: the gate's asyncio connections (api/routes/runtime.py), bound to this event loop.
        pool = app.state.gate_pool = app.state.billing.gate_pool()
        if pool is not None:
            await pool.open(wait=False)
        try:
            yield
        finally:
            app.state.gate_pool = None
            if pool is not None:
                await pool.close()
            if owned:
                app.state.billing.close()

    app = FastAPI(
        title="agentbilling",
        version=__version__,
        summary="Admission gate, billable sessions, trials and subscriptions for an AI-agent platform.",
        lifespan=lifespan,
        docs_url=None,  # served by api/docs.py from the swagger-ui-py package: /docs works offline
        redoc_url=None,
    )
    app.state.billing = service
    app.state.gate_pool = None
    problems.install(app)
    web.install(app)
    app.add_middleware(IdempotencyMiddleware)
    app.add_middleware(FastAdmission)  # the gate's requests skip the rest
    app.add_middleware(problems.DatabaseErrors)  # a database out of reach is a 503, never a 500
    # Outer: control characters in the URL and oversized bodies are refused before anything reads them.
    app.add_middleware(RequestGuards, max_body_bytes=config.max_body_bytes)
    app.add_middleware(SecurityHeaders, frame_ancestors=config.frame_ancestors,
                       https=(config.public_url or "").startswith("https://"))  # on every answer, refusals too
    app.include_router(runtime.router)  # the hot path, matched first
    app.include_router(operator.router)
    app.include_router(billing.router)
    app.include_router(web.router)
    app.include_router(web_forms.router)
    app.mount("/billing/static", StaticFiles(directory=Path(web.__file__).with_name("static")), name="billing-static")
    app.include_router(portal.router)
    docs.install(app)
    contract.install(app)
    app.include_router(webhooks.router)
    app.include_router(health)
    return app
