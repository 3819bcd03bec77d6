"""Operator routes: tenants, keys, users and tokens, plans, offline subscriptions, the test clock."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, Response

from agentbilling.api.deps import BillingDep, Operator
from agentbilling.api.problems import Problem
from agentbilling.api.responses import (
    ApiKeyOut,
    BillingOut,
    ClockOut,
    DemoRequestsPage,
    PlansOut,
    StatusOut,
    TenantOut,
    TokenOut,
    UserOut,
    WebhookDeliveriesPage,
    WebhookEndpointCreated,
    WebhookEndpointOut,
    WebhookEndpointsPage,
    WorkerOut,
)
from agentbilling.api.schemas import (
    CardIn,
    ClockAdvanceIn,
    SubscriptionIn,
    TenantIn,
    TenantPatch,
    UserIn,
    UserPatch,
    WebhookEndpointIn,
    billing_json,
    demo_request_json,
    iso,
    plan_json,
    tenant_json,
    user_json,
    webhook_delivery_json,
    webhook_endpoint_json,
)

router = APIRouter(prefix="/v1", dependencies=[Operator], tags=["operator"])


@router.post("/tenants", status_code=201, response_model=TenantOut,
             summary="Create a tenant; its free trial starts now")
def create_tenant(body: TenantIn, billing: BillingDep) -> dict[str, Any]:
    return tenant_json(billing.create_tenant(body.id, body.name, body.billing_email))


@router.get("/tenants/{tenant_id}", response_model=TenantOut, summary="A tenant")
def get_tenant(tenant_id: str, billing: BillingDep) -> dict[str, Any]:
    return tenant_json(billing.get_tenant(tenant_id))


@router.patch("/tenants/{tenant_id}", response_model=TenantOut, summary="Rename a tenant or change its billing contact")
def update_tenant(tenant_id: str, body: TenantPatch, billing: BillingDep) -> dict[str, Any]:
    return tenant_json(billing.update_tenant(tenant_id, name=body.name, billing_email=body.billing_email))


@router.post("/tenants/{tenant_id}/api-keys", status_code=201, response_model=ApiKeyOut,
             summary="Issue an API key (shown once)")
def create_api_key(tenant_id: str, billing: BillingDep) -> dict[str, Any]:
    key = billing.create_api_key(tenant_id)
    return {"id": key.id, "key": key.key}


@router.delete("/tenants/{tenant_id}/api-keys/{key_id}", status_code=204, summary="Revoke an API key at once")
def revoke_api_key(tenant_id: str, key_id: str, billing: BillingDep) -> Response:
    billing.revoke_api_key(tenant_id, key_id)
    return Response(status_code=204)


@router.post("/tenants/{tenant_id}/users", status_code=201, response_model=UserOut, summary="Add a user with a role")
def create_user(tenant_id: str, body: UserIn, billing: BillingDep) -> dict[str, Any]:
    return user_json(billing.create_user(tenant_id, body.id, body.email, body.role))


@router.get("/tenants/{tenant_id}/users/{user_id}", response_model=UserOut,
            summary="A user, and whether to show them the Billing tab")
def get_user(tenant_id: str, user_id: str, billing: BillingDep) -> dict[str, Any]:
    return user_json(billing.get_user(tenant_id, user_id))


@router.patch("/tenants/{tenant_id}/users/{user_id}", response_model=UserOut, summary="Change a user's role or email")
def update_user(tenant_id: str, user_id: str, body: UserPatch, billing: BillingDep) -> dict[str, Any]:
    return user_json(billing.update_user(tenant_id, user_id, email=body.email, role=body.role))


@router.delete("/tenants/{tenant_id}/users/{user_id}", status_code=204, summary="Remove a user and end their sessions")
def delete_user(tenant_id: str, user_id: str, billing: BillingDep) -> Response:
    billing.delete_user(tenant_id, user_id)
    return Response(status_code=204)


@router.post("/tenants/{tenant_id}/users/{user_id}/tokens", status_code=201, response_model=TokenOut,
             summary="A user's API bearer token, and a single-use login link that opens the Billing tab")
def issue_token(tenant_id: str, user_id: str, request: Request, billing: BillingDep) -> dict[str, Any]:
    issued = billing.issue_token(tenant_id, user_id)
    base = billing.settings.public_url or str(request.base_url).rstrip("/")
    return {
        "token": issued.token,  # the API bearer token
        "login_url": f"{base}/billing/login?code={quote(issued.login_code, safe='')}",  # single-use, short-lived
        "expires_at": iso(issued.expires_at),
        "login_url_expires_at": iso(issued.login_expires_at),
    }


@router.get("/plans", response_model=PlansOut, summary="The plan catalog")
def list_plans(billing: BillingDep) -> dict[str, Any]:
    return {"data": [plan_json(p) for p in billing.plans()]}


@router.put("/tenants/{tenant_id}/subscription", response_model=BillingOut,
            summary="Put a tenant on a plan without the portal (an offline deal, with optional terms)")
def put_subscription(tenant_id: str, body: SubscriptionIn, billing: BillingDep) -> dict[str, Any]:
    terms = body.terms.to_domain() if body.terms else None
    return billing_json(billing.put_subscription(tenant_id, body.plan_id, terms))


def _test_clock(billing: BillingDep) -> None:
    if billing.test_clock is None:
        raise Problem(404, "not-found", "The test clock is off (AGENTBILLING_TEST_CLOCK=1 turns it on).")


@router.get("/clock", response_model=ClockOut, summary="The test clock's time (only when the test clock is on)")
def get_clock(billing: BillingDep) -> dict[str, Any]:
    _test_clock(billing)
    return {"now": iso(billing.now())}


@router.post("/clock/advance", response_model=ClockOut,
             summary="Move the test clock forward; returns once everything due is applied")
def advance_clock(body: ClockAdvanceIn, billing: BillingDep) -> dict[str, Any]:
    _test_clock(billing)
    return {"now": iso(billing.advance_clock(seconds=body.seconds, to=body.to))}


@router.get("/demo-requests", response_model=DemoRequestsPage,
            summary="The Book a demo requests, newest first (cursor pages)")
def list_demo_requests(
    billing: BillingDep, cursor: str | None = None, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> dict[str, Any]:
    data, nxt = billing.demo_requests(cursor=cursor, limit=limit)
    return {"data": [demo_request_json(d) for d in data], "next_cursor": nxt}


@router.get("/worker", response_model=WorkerOut, tags=["worker"],
            summary="How far behind the workers are: what is due and not done")
def worker_status(billing: BillingDep) -> dict[str, Any]:
    st = billing.worker_status()
    return {"now": st.now, "subscriptions_due": st.subscriptions_due,
            "emails": {"due": st.emails_due, "oldest_due_at": st.oldest_email_due_at},
            "webhooks": {"due": st.webhooks_due, "oldest_due_at": st.oldest_webhook_due_at},
            "behind_seconds": round(st.behind_seconds, 3)}


# -- webhooks out -------------------------------------------------------------------------------

@router.post("/webhook-endpoints", status_code=201, response_model=WebhookEndpointCreated, tags=["webhooks out"],
             summary="Register an endpoint: every notice and subscription change is posted to it, signed "
                     "per Standard Webhooks with the whsec_ secret shown once here")
def create_webhook_endpoint(body: WebhookEndpointIn, billing: BillingDep) -> dict[str, Any]:
    return webhook_endpoint_json(billing.create_webhook_endpoint(body.url))


@router.get("/webhook-endpoints", response_model=WebhookEndpointsPage, tags=["webhooks out"],
            summary="The endpoints, enabled or disabled")
def list_webhook_endpoints(billing: BillingDep) -> dict[str, Any]:
    return {"data": [webhook_endpoint_json(e) for e in billing.webhook_endpoints()], "next_cursor": None}


@router.get("/webhook-endpoints/{endpoint_id}", tags=["webhooks out"], response_model=WebhookEndpointOut,
            summary="One endpoint")
def get_webhook_endpoint(endpoint_id: str, billing: BillingDep) -> dict[str, Any]:
    return webhook_endpoint_json(billing.webhook_endpoint(endpoint_id))


@router.delete("/webhook-endpoints/{endpoint_id}", status_code=204, tags=["webhooks out"],
               summary="Remove an endpoint and what was still to be sent to it")
def delete_webhook_endpoint(endpoint_id: str, billing: BillingDep) -> Response:
    billing.delete_webhook_endpoint(endpoint_id)
    return Response(status_code=204)


@router.get("/webhook-endpoints/{endpoint_id}/deliveries", tags=["webhooks out"], response_model=WebhookDeliveriesPage,
            summary="The delivery log, newest first: status, attempts, the last answer, the next try")
def list_webhook_deliveries(
    endpoint_id: str, billing: BillingDep, cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    data, nxt = billing.webhook_deliveries(endpoint_id, cursor=cursor, limit=limit)
    return {"data": [webhook_delivery_json(d) for d in data], "next_cursor": nxt}


# -- the sandbox portal's automation: what a person does on its pages -------------------------

@router.post("/sandbox/checkouts/{checkout_id}/complete", tags=["sandbox"], response_model=StatusOut,
             summary="Pay a checkout with a test card (the outcome reaches the service by webhook)")
def sandbox_complete_checkout(checkout_id: str, body: CardIn, billing: BillingDep) -> dict[str, Any]:
    billing.sandbox_complete_checkout(checkout_id, body.card)
    return {"status": "complete"}


@router.post("/sandbox/tenants/{tenant_id}/payment-methods", tags=["sandbox"], response_model=StatusOut,
             summary="+ Add payment method: the new default card; open invoices are retried at once")
def sandbox_add_payment_method(tenant_id: str, body: CardIn, billing: BillingDep) -> dict[str, Any]:
    billing.sandbox_add_payment_method(tenant_id, body.card)
    return {"status": "added"}


@router.post("/sandbox/tenants/{tenant_id}/cancel", tags=["sandbox"], response_model=StatusOut,
             summary="Cancel subscription in the portal")
def sandbox_cancel(tenant_id: str, billing: BillingDep) -> dict[str, Any]:
    billing.sandbox_cancel(tenant_id)
    return {"status": "cancel requested"}


@router.post("/sandbox/tenants/{tenant_id}/resume", tags=["sandbox"], response_model=StatusOut,
             summary="Undo Cancel subscription")
def sandbox_resume(tenant_id: str, billing: BillingDep) -> dict[str, Any]:
    billing.sandbox_resume(tenant_id)
    return {"status": "resumed"}
