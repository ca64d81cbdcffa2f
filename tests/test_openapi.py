"""The OpenAPI document tells the truth about errors: every error answer is a ``Problem``, every
operation lists the errors it can give, and the bodies the app really sends match.

``scripts/api_check.py`` (run by CI) fuzzes the live API against the same document.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from api.access import roles_for
from api.main import create_app
from api.schemas.base import MAX_ROW_ID, Problem
from tailor.config import Settings
from tailor.db import Database
from tailor.demo.seed import seed_demo
from tests.conftest import free_port, key_headers

Message = MutableMapping[str, Any]


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    openapi: dict[str, Any] = create_app(Settings(redis_url=None)).openapi()
    return openapi


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    ]


def test_fastapis_validation_error_body_is_not_advertised(document: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in json.dumps(document)
    assert "ValidationError" not in document["components"]["schemas"]


def test_every_error_response_is_a_problem(document: dict[str, Any]) -> None:
    problem = {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    wrong = [
        f"{method.upper()} {path} {status}"
        for method, path, operation in _operations(document)
        for status, response in operation["responses"].items()
        if status[0] in "45" and response.get("content") != problem
    ]
    assert not wrong, wrong
    documented = document["components"]["schemas"]["Problem"]
    assert documented["required"] == ["message"]
    assert set(documented["properties"]) == {"message", "detail"}


def test_every_non_public_operation_documents_auth_and_rate_limit(
    document: dict[str, Any],
) -> None:
    missing = [
        f"{method.upper()} {path}"
        for method, path, operation in _operations(document)
        if roles_for(method, path) is not None
        and not {"401", "403", "429"} <= set(operation["responses"])
    ]
    assert not missing, missing
    public = document["paths"]["/healthz"]["get"]["responses"]
    assert "401" not in public and "403" not in public


def test_errors_follow_from_the_route(document: dict[str, Any]) -> None:
    paths = document["paths"]
    # A path parameter can name nothing: 404; a body can be malformed, too big or invalid.
    assert {"404", "422"} <= set(paths["/v1/contacts/{contact_id}"]["get"]["responses"])
    assert {"400", "413", "422"} <= set(paths["/v1/contacts"]["post"]["responses"])
    assert "422" not in paths["/v1/journeys"]["get"]["responses"]  # nothing to be invalid
    # Needs Temporal (off here): 503. Declared by the route: 409.
    assert "503" in paths["/v1/campaigns"]["post"]["responses"]
    assert {"409", "503"} <= set(paths["/v1/ab-tests/{test_id}/decide"]["post"]["responses"])
    assert "409" in paths["/v1/reviews/{review_id}/approve"]["post"]["responses"]
    # Ids are bounded, so an impossible one is invalid input rather than a database error.
    contact_id = paths["/v1/contacts/{contact_id}"]["get"]["parameters"][0]["schema"]
    assert contact_id["maximum"] == MAX_ROW_ID


@asynccontextmanager
async def _client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tailor") as client:
            yield client


def _app(db: Database) -> FastAPI:
    # Nothing listens at the Temporal address: routes that need it answer 503.
    return create_app(
        Settings(database_url=db.url, redis_url=None, temporal_address=f"127.0.0.1:{free_port()}")
    )


def _problem(response: httpx.Response) -> Problem:
    body = response.json()
    assert set(body) <= {"message", "detail"}, body
    return Problem.model_validate(body)


async def test_real_error_bodies_are_problems(db: Database) -> None:
    await seed_demo(db, contacts=3)
    headers = await key_headers(db, "demo", "admin")
    async with _client(_app(db)) as client:
        invalid = await client.post("/v1/campaigns", json={"name": ""}, headers=headers)
        assert invalid.status_code == 422
        fields = {d.field for d in _problem(invalid).detail}
        assert {"name", "template_version_id", "request"} & fields

        # An id past what the store can hold is refused, not handed to the database.
        too_big = await client.get(f"/v1/contacts/{MAX_ROW_ID + 1}", headers=headers)
        assert too_big.status_code == 422
        assert _problem(too_big).detail[0].field == "contact_id"

        unknown = await client.get("/v1/contacts/424242", headers=headers)
        assert unknown.status_code == 404 and _problem(unknown).message

        anonymous = await client.get("/v1/journeys")
        assert anonymous.status_code == 401 and _problem(anonymous).message
        assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")

        no_temporal = await client.post(
            "/v1/campaigns/nope/pause", headers=headers
        )  # the control is needed before the campaign is looked up
        assert no_temporal.status_code == 503 and "Temporal" in _problem(no_temporal).message

        for method, path, status in (("GET", "/v1/nowhere", 404), ("DELETE", "/healthz", 405)):
            response = await client.request(method, path)
            assert response.status_code == status and _problem(response).message


async def test_text_the_database_cannot_hold_is_invalid_input(db: Database) -> None:
    if not db.url.startswith("postgresql"):
        pytest.skip("SQLite stores NUL characters; PostgreSQL refuses them")
    await seed_demo(db, contacts=1)
    headers = await key_headers(db, "demo", "admin")
    template = {"name": "nul", "subject": "s", "body": "a\x00b", "cta_text": "c",
                "cta_url": "https://shop.example.com"}  # fmt: skip
    async with _client(_app(db)) as client:
        response = await client.post("/v1/templates", json=template, headers=headers)
        assert response.status_code == 422
        assert "NUL" in _problem(response).message
        # Nothing half-written: the template row went with the failed version.
        retry = await client.post("/v1/templates", json={**template, "body": "ab"}, headers=headers)
        assert retry.status_code == 201, retry.text


async def test_a_write_is_committed_before_the_answer_says_so(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client told 201 must find what it made: the commit comes before the response."""
    await seed_demo(db, contacts=1)
    headers = await key_headers(db, "demo", "admin")
    order: list[str] = []
    request_session = Database.request_session

    @asynccontextmanager
    async def recorded(self: Database) -> AsyncIterator[AsyncSession]:
        async with request_session(self) as session:
            yield session
        order.append("committed")

    monkeypatch.setattr(Database, "request_session", recorded)
    app = _app(db)

    async def recording(
        scope: Message, receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:  # fmt: skip
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                order.append("answered")
            await send(message)

        await app(scope, receive, sending)

    template = {"name": "ordered", "subject": "s", "body": "b", "cta_text": "c",
                "cta_url": "https://shop.example.com"}  # fmt: skip
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=recording)
        async with httpx.AsyncClient(transport=transport, base_url="http://tailor") as client:
            order.clear()
            created = await client.post("/v1/templates", json=template, headers=headers)
    assert created.status_code == 201, created.text
    assert order == ["committed", "answered"]
