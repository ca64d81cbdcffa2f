"""Who may call what: every route of the OpenAPI document, with every role and with none,
answers as api/access.py says; and a new route without a rule stops the app from starting."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter

from api.access import ROUTE_ROLES, MissingRule, roles_for
from api.main import _check_every_route_has_a_rule, create_app
from tailor.config import Settings
from tailor.db import Database
from tailor.demo.seed import seed_demo
from tailor.models import Role
from tests.conftest import key_headers

# A value of the right shape for each path parameter: the gate must answer before lookups.
SAMPLE_PARAMS = {
    "key_id": "key_0000000000000000",
    "sku": "SKU-1",
    "token": "not-a-token",
    "endpoint_id": "whe_0000000000000000",
}


def _operations(app_paths: dict[str, dict[str, object]]) -> list[tuple[str, str]]:
    return [(method.upper(), path) for path, ops in app_paths.items() for method in ops]


def _fill(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: SAMPLE_PARAMS.get(m.group(1), "1"), path)


@pytest.fixture
async def http(sqlite_db: Database) -> AsyncIterator[httpx.AsyncClient]:
    await seed_demo(sqlite_db, contacts=5)
    # No Temporal here: routes that need it answer 503, after the gate has let them in.
    settings = Settings(
        database_url=sqlite_db.url, rag_enabled=False, redis_url=None,
        temporal_address="127.0.0.1:9",
    )  # fmt: skip
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://tailor") as client:
            yield client


async def test_every_route_answers_every_role_as_the_table_says(
    sqlite_db: Database, http: httpx.AsyncClient
) -> None:
    paths = (await http.get("/openapi.json")).json()["paths"]
    operations = _operations(paths)
    assert len(operations) == len(ROUTE_ROLES), "a rule names a route the app does not have"
    keys = {role: await key_headers(sqlite_db, "demo", role) for role in Role if role != "platform"}
    keys[Role.PLATFORM] = await _platform_key(sqlite_db)
    wrong: list[str] = []
    for method, path in operations:
        allowed = roles_for(method, path)
        url = _fill(path)
        body: dict[str, object] | None = {} if method in ("POST", "PUT", "PATCH") else None
        anonymous = await http.request(method, url, json=body)
        if allowed is not None and anonymous.status_code != 401:
            wrong.append(f"{method} {path} anonymous: {anonymous.status_code}, expected 401")
        if allowed is None and anonymous.status_code in (401, 403):
            wrong.append(f"{method} {path} is public but answered {anonymous.status_code}")
        for role, headers in keys.items():
            answer = await http.request(method, url, json=body, headers=headers)
            gate = answer.status_code in (401, 403)
            if allowed is not None and role in allowed and gate:
                wrong.append(f"{method} {path} {role}: {answer.status_code}, expected to pass")
            if allowed is not None and role not in allowed and answer.status_code != 403:
                wrong.append(f"{method} {path} {role}: {answer.status_code}, expected 403")
            assert answer.status_code < 500 or answer.status_code == 503, (method, path, role)
    assert not wrong, "\n".join(wrong)


async def _platform_key(db: Database) -> dict[str, str]:
    from tailor.accounts.keys import issue_key

    async with db.session() as session:
        issued = await issue_key(
            session=session, tenant_id=None, role=Role.PLATFORM, name="ops", created_by="tests"
        )
    return {"Authorization": f"Bearer {issued.secret}"}


def test_the_table_keeps_each_roles_promise() -> None:
    """What the roles mean, checked on every row: an edit that breaks a promise fails here."""
    events = {"/v1/track", "/v1/identify", "/v1/batch", "/v1/events", "/v1/events/engagement"}
    for (method, path), allowed in ROUTE_ROLES.items():
        if allowed is None:
            # Signed in the path (unsubscribe, tracking) or by the provider (ESP webhooks).
            signed = ("/v1/unsubscribe/{token}", "/t/o/{token}", "/t/c/{token}")
            webhook = path.startswith("/v1/webhooks/")
            assert path == "/healthz" or path in signed or webhook, f"{path} is public"
            continue
        # The platform's own routes: onboarding tenants, and metrics across them.
        onboarding = path.startswith("/v1/platform/") or path == "/metrics"
        assert (Role.PLATFORM in allowed) == onboarding, f"{method} {path}"
        assert (Role.ADMIN in allowed) != onboarding, f"admins may do all in a tenant: {path}"
        assert (Role.INGEST in allowed) == (path in events), f"ingest keys send events: {path}"
        if method != "GET":
            assert Role.ANALYST not in allowed, f"analysts only read: {method} {path}"
        if path.startswith(("/v1/keys", "/v1/audit", "/v1/products")) or path.endswith("/settings"):
            assert method == "GET" or allowed == {Role.ADMIN}, f"admin only: {method} {path}"
        if path.startswith("/v1/reviews/") and method == "POST":
            assert Role.REVIEWER in allowed and Role.MARKETER not in allowed, path


def test_a_route_without_a_rule_stops_the_app_from_starting() -> None:
    app = create_app(Settings(rag_enabled=False))
    extra = APIRouter()

    @extra.post("/v1/unguarded")
    async def unguarded() -> dict[str, str]:
        return {}

    app.include_router(extra)
    app.openapi_schema = None
    with pytest.raises(MissingRule, match=r"POST /v1/unguarded has no access rule"):
        _check_every_route_has_a_rule(app)


async def test_revoked_keys_stop_on_the_next_request_and_secrets_are_shown_once(
    sqlite_db: Database, http: httpx.AsyncClient
) -> None:
    admin = await key_headers(sqlite_db, "demo", "admin")
    created = await http.post("/v1/keys", json={"name": "CDP", "role": "ingest"}, headers=admin)
    assert created.status_code == 201, created.text
    issued = created.json()
    ingest = {"Authorization": f"Bearer {issued['secret']}"}
    event = {"anonymousId": "a-1", "event": "Page Viewed"}
    assert (await http.post("/v1/track", json=event, headers=ingest)).status_code == 200
    listed = (await http.get("/v1/keys", headers=admin)).json()["items"]
    mine = next(k for k in listed if k["id"] == issued["id"])
    assert "secret" not in mine and issued["secret"] not in str(listed)
    assert mine["last_used_at"] is not None and issued["secret"].startswith(
        f"tlr_{mine['prefix']}_"
    )

    revoked = await http.post(f"/v1/keys/{issued['id']}/revoke", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert (await http.post("/v1/track", json=event, headers=ingest)).status_code == 401

    # Keys of another tenant cannot be seen or revoked from here, and look like missing ones.
    acme = await _acme_admin(sqlite_db)
    other = await http.post(f"/v1/keys/{issued['id']}/revoke", headers=acme)
    missing = await http.post("/v1/keys/key_0000000000000000/revoke", headers=acme)
    assert other.status_code == missing.status_code == 404
    assert other.json()["message"].replace(issued["id"], "X") == missing.json()["message"].replace(
        "key_0000000000000000", "X"
    )
    assert issued["id"] not in str((await http.get("/v1/keys", headers=acme)).json())
    # A tampered secret with a real prefix proves nothing.
    tampered = issued["secret"][:-4] + "AAAA"
    assert (
        await http.get("/v1/keys", headers={"Authorization": f"Bearer {tampered}"})
    ).status_code == 401


async def _acme_admin(db: Database) -> dict[str, str]:
    from tests.conftest import other_tenant_headers

    return await other_tenant_headers(db, "acme")
