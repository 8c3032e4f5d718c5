"""Access to every review route, for every kind of caller: tenants and guild scopes are isolated
(a moderator of one guild can neither read nor act on another's items; another tenant sees
nothing), viewers read but never act, and a session without its CSRF token changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.test_review_queue import HELD, login_client, queue, setup_guild, wait

PASSWORD = "correct horse battery"
ROLES = ["api_key", "admin", "moderator", "moderator_other_guild", "viewer", "viewer_other_guild",
         "other_tenant", "anonymous"]


def caller(client: Any, rt: Any, role: str) -> tuple[Any, dict[str, str]]:
    """(a client, the headers it sends on writes) for `role`, over the same app."""
    from fastapi.testclient import TestClient

    tenant = rt.store.tenants.ensure("acme")
    if role == "api_key":
        return client, {}
    if role == "other_tenant":
        _, key = rt.store.tenants.create_api_key("globex")
        c = TestClient(client.app)
        c.headers["Authorization"] = f"Bearer {key}"
        return c, {}
    if role == "anonymous":
        return TestClient(client.app), {}
    kind, guilds = {
        "admin": ("admin", []), "moderator": ("moderator", ["g1"]), "moderator_other_guild": ("moderator", ["g2"]),
        "viewer": ("viewer", ["g1"]), "viewer_other_guild": ("viewer", ["g2"]),
    }[role]
    rt.store.reviewers.create(tenant, role.replace("_", "-"), PASSWORD, kind, guilds)
    c = login_client(client, role.replace("_", "-"))
    return c, c.csrf


# What each caller gets on an item of guild g1: "ok", or the status code.
SEES = {"api_key": True, "admin": True, "moderator": True, "viewer": True}
ACTS = {"api_key": True, "admin": True, "moderator": True}


@pytest.mark.parametrize("role", ROLES)
def test_every_review_route_for_every_role(api: Any, role: str) -> None:
    client, rt = api
    setup_guild(client)
    setup_guild(client, "g2")
    for mid in ("m1", "m2", "m3"):
        client.post("/v1/moderate", json={"id": mid, "guild_id": "g1", "text": HELD})
    items = wait(lambda: (q := queue(client)) and len(q) == 3 and q)
    ids = {i["message_id"]: i["id"] for i in items}
    c, h = caller(client, rt, role)
    sees, acts = SEES.get(role, False), ACTS.get(role, False)
    unauth = 401 if role == "anonymous" else None
    hidden = unauth or 404  # an item the caller may not see does not exist for it
    forbidden = unauth or (403 if sees else 404)

    r = c.get("/v1/review/items")
    assert r.status_code == (unauth or 200)
    if not unauth:
        assert {i["id"] for i in r.json()["items"]} == (set(ids.values()) if sees else set())
    assert c.get("/v1/review/items", params={"guild_id": "g1"}).status_code == (unauth or 200)
    assert c.get(f"/v1/review/items/{ids['m1']}").status_code == (200 if sees else hidden)
    assert c.get("/v1/review/reasons").status_code == (unauth or 200)
    r = c.get("/v1/review/stats")
    assert r.status_code == (unauth or 200)

    r = c.post(f"/v1/review/items/{ids['m1']}/claim", headers=h)
    assert r.status_code == (200 if acts else forbidden), r.text
    r = c.post(f"/v1/review/items/{ids['m1']}/release", headers=h)
    assert r.status_code == (200 if acts else forbidden), r.text
    c.post(f"/v1/review/items/{ids['m1']}/claim", headers=h)
    r = c.post(f"/v1/review/items/{ids['m1']}/resolve", headers=h, json={"verdict": "uphold"})
    assert r.status_code == (200 if acts else forbidden), r.text
    c.post(f"/v1/review/items/{ids['m2']}/claim", headers=h)
    r = c.post(f"/v1/review/items/{ids['m2']}/escalate", headers=h, json={"reason": "policy_unclear"})
    assert r.status_code == (200 if acts else forbidden), r.text
    # escalated: only admins (and the API key) may still see it
    after = c.get(f"/v1/review/items/{ids['m2']}").status_code
    assert after == (200 if role in ("api_key", "admin") or (sees and not acts) else hidden)
    r = c.post("/v1/review/bulk", headers=h, json={"item_ids": [ids["m3"]], "verdict": "overturn"})
    if acts:
        assert r.status_code == 200 and r.json()["resolved"] == 1
    elif sees:
        assert r.status_code == 403
    else:
        assert r.status_code == (unauth or 200)
        if not unauth:
            assert r.json()["results"][0]["error"]["code"] == "review_item_not_found"
    admin_only = 200 if role in ("api_key", "admin", "other_tenant") else (unauth or 403)
    r = c.put("/v1/review/clusters/c1", headers=h, json={"message_ids": ["m1", "m3"]})
    assert r.status_code == admin_only
    if role == "other_tenant":
        assert r.json()["items"] == 0  # its own tenant has no such items; ours are untouched
    r = c.post("/v1/reports", headers=h, json={"message_id": "m1", "reporter": "u1", "reason": "rude"})
    assert r.status_code == (201 if role in ("api_key", "admin") else (404 if role == "other_tenant" else
                                                                       (unauth or 403)))
    r = c.post("/v1/appeals", headers=h, json={"decision_id": "m1", "appellant": "a1", "reason": "joke"})
    assert r.status_code == (201 if role in ("api_key", "admin") else (404 if role == "other_tenant" else
                                                                       (unauth or 403)))

    # nothing the caller was not allowed to do changed the item of m1 or m2
    if not acts:
        assert {i["status"] for i in queue(client, status="all")} == {"open"}
        assert rt.store.decisions.get(rt.store.tenants.ensure("acme"), "m1").revision == 1  # type: ignore[union-attr]


@pytest.mark.parametrize("role", ["admin", "moderator", "moderator_other_guild", "viewer", "anonymous"])
def test_every_ui_route_for_every_role(api: Any, role: str) -> None:
    client, rt = api
    setup_guild(client)
    client.post("/v1/moderate", json={"id": "m1", "guild_id": "g1", "text": HELD})
    client.post("/v1/moderate", json={"id": "m2", "guild_id": "g1", "text": HELD})
    items = wait(lambda: (q := queue(client)) and len(q) == 2 and q)
    ids = {i["message_id"]: i["id"] for i in items}
    c, h = caller(client, rt, role)
    csrf = h.get("X-CSRF-Token", "")
    sees = SEES.get(role, False)
    acts = ACTS.get(role, False)
    if role == "anonymous":
        for path in ("/review", "/review/queue", f"/review/items/{ids['m1']}", "/review/stats"):
            r = c.get(path, follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"].startswith("/review/login")
        r = c.post(f"/review/items/{ids['m1']}/claim", data={"csrf_token": "x"}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/review/login")
        return
    page = c.get("/review")
    assert page.status_code == 200 and ("HELD" not in page.text)
    assert (f'href="/review/items/{ids["m1"]}"' in page.text) == sees
    assert c.get("/review/queue").status_code == 200
    assert c.get("/review/stats").status_code == 200
    assert c.get(f"/review/items/{ids['m1']}").status_code == (200 if sees else 404)
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    # a form post without the CSRF token is refused and changes nothing
    r = c.post(f"/review/items/{ids['m1']}/claim", data={}, follow_redirects=False)
    assert r.status_code in (403, 404)
    r = c.post(f"/review/items/{ids['m1']}/claim", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == (303 if acts else (403 if sees else 404)), r.text
    r = c.post(f"/review/items/{ids['m1']}/resolve", data={"csrf_token": csrf, "verdict": "uphold",
                                                           "categories": ["toxicity"]}, follow_redirects=False)
    assert r.status_code == (303 if acts else (403 if sees else 404)), r.text
    if acts:
        assert rt.store.decisions.get(rt.store.tenants.ensure("acme"), "m1").revision == 2  # type: ignore[union-attr]
    c.post(f"/review/items/{ids['m2']}/claim", data={"csrf_token": csrf}, follow_redirects=False)
    r = c.post(f"/review/items/{ids['m2']}/escalate", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == (303 if acts else (403 if sees else 404))
    r = c.post("/review/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert c.get("/review", follow_redirects=False).status_code == 303  # the session is gone


def test_password_guessing_is_throttled_per_username_and_per_client(make_api: Any) -> None:
    """After the login allowance is spent, even the right password is refused with 429 and a
    Retry-After until the window has room: guessing stops, and the page says why."""
    from fastapi.testclient import TestClient

    client, rt = make_api(rate_limit_login="3/minute")
    tenant = rt.store.tenants.ensure("acme")
    rt.store.reviewers.create(tenant, "mod-a", "correct horse battery", "moderator", ["g1"])
    rt.store.reviewers.create(tenant, "mod-b", "correct horse battery", "moderator", ["g1"])

    def attempt(c: TestClient, username: str, password: str) -> Any:
        page = c.get("/review/login")
        token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
        return c.post("/review/login", data={"username": username, "password": password, "csrf_token": token,
                                             "next": "/review"}, follow_redirects=False)

    c = TestClient(client.app)
    assert [attempt(c, "mod-a", f"guess {i}").status_code for i in range(3)] == [401, 401, 401]
    refused = attempt(c, "mod-a", "correct horse battery")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert "Too many sign-in attempts" in refused.text and "heron_session" not in refused.headers.get("set-cookie", "")
    # the same client address has spent its own allowance too, so another name is refused as well
    assert attempt(c, "mod-b", "correct horse battery").status_code == 429
    # a server with the login limit off lets the reviewer in (the limit, not the password, refused)
    open_client, open_rt = make_api(rate_limit_login="")
    open_rt.store.reviewers.create(open_rt.store.tenants.ensure("acme"), "mod-a", "correct horse battery",
                                   "moderator", ["g1"])
    c2 = TestClient(open_client.app)
    assert [attempt(c2, "mod-a", "nope").status_code for _ in range(5)] == [401] * 5
    assert attempt(c2, "mod-a", "correct horse battery").status_code == 303
