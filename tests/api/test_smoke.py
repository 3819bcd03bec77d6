"""The first story end to end over HTTP: a 36-hour conversation is 1 session and 2 billable sessions."""

from tests.support.tenants import advance, open_session, setup_tenant


def test_a_36_hour_conversation_is_one_session_and_two_billable_sessions(client):
    acme = setup_tenant(client)
    assert open_session(client, acme, "conv-1").status_code == 201
    advance(client, seconds=36 * 3600)
    r = client.post("/v1/sessions/conv-1/messages", json={"from": "customer"}, headers=acme.key_headers)
    assert r.status_code == 200, r.text
    assert r.json()["billable_sessions"] == 2

    sessions = client.get("/v1/billing/sessions", headers=acme.owner_headers).json()["data"]
    assert [(s["id"], s["billable_sessions"]) for s in sessions] == [("conv-1", 2)]
    card = client.get("/v1/billing", headers=acme.owner_headers).json()["cards"][0]
    assert card["sessions_count"] == 2
