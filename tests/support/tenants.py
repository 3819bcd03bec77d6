"""A tenant with a key and an owner, set up over the API; its sessions; the test clock moved over the API."""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.support.service import operator_headers


@dataclass
class TenantAccess:
    id: str
    key_headers: dict[str, str]
    owner_headers: dict[str, str]
    more_keys: list[dict[str, str]] = field(default_factory=list)  # key_headers first, then any others

    def __post_init__(self) -> None:
        if not self.more_keys:
            self.more_keys.append(self.key_headers)


def setup_tenant(client, tenant_id: str = "acme", role: str = "owner") -> TenantAccess:
    op = operator_headers()
    r = client.post("/v1/tenants", json={"id": tenant_id, "name": tenant_id.title(),
                                          "billing_email": f"billing@{tenant_id}.test"}, headers=op)
    assert r.status_code == 201, r.text
    key = client.post(f"/v1/tenants/{tenant_id}/api-keys", headers=op).json()["key"]
    r = client.post(f"/v1/tenants/{tenant_id}/users", json={"id": "u-owner", "email": f"owner@{tenant_id}.test",
                                                             "role": role}, headers=op)
    assert r.status_code == 201, r.text
    token = client.post(f"/v1/tenants/{tenant_id}/users/u-owner/tokens", headers=op).json()["token"]
    return TenantAccess(tenant_id, {"Authorization": f"Bearer {key}"}, {"Authorization": f"Bearer {token}"})


def open_session(client, access: TenantAccess, session_id: str, direction: str = "inbound", agent_id: str = "agent-1"):
    return client.post("/v1/sessions", json={"id": session_id, "agent_id": agent_id, "direction": direction},
                       headers=access.key_headers)


def advance(client, **body) -> str:
    r = client.post("/v1/clock/advance", json=body, headers=operator_headers())
    assert r.status_code == 200, r.text
    return r.json()["now"]
