"""The OpenAPI document, with the errors each route can answer and the one body they all have.

FastAPI documents only 422, with its own ``HTTPValidationError`` body, which is not what the app
answers (see the handlers in api/main.py). This module rewrites the generated document so that
every error response is a ``Problem`` and every operation lists the errors it can give, derived
from the route itself, so a route added anywhere is documented without a list to keep here:

- 401, 403, 429: every route that is not public in api/access.py;
- 404: routes with a path parameter (the resource may not exist, or not be the caller's);
- 400 (a body that cannot be decoded) and 413: routes with a request body;
- 422: routes with parameters or a body;
- 503: routes that need Temporal to answer (they depend on ``get_control``);
- 409 (the same ``Idempotency-Key`` still in flight) on routes that take one, whose answers may
  also be replays (``Idempotent-Replayed: true``);
- anything a route declares itself with ``responses=problems(409, 503)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import fastapi.routing
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from api.access import roles_for
from api.deps import get_control
from api.idempotency import REPLAYED_HEADER, idempotent_create
from api.schemas.base import Problem

_REF = "#/components/schemas/{model}"
PROBLEM_REF = _REF.format(model="Problem")

#: What each error means, as the document says it.
DESCRIPTIONS: dict[int, str] = {
    400: "Malformed body: not JSON, or not UTF-8",
    401: "Missing or invalid credentials",
    403: "The key's role may not call this route",
    404: "Not found (or not the caller's tenant's)",
    409: "Conflict with the resource's current state",
    413: "Request body too large",
    415: "Unsupported media type: send the body as the content type documented",
    422: "Invalid input: `detail` names each field at fault",
    429: "Too many requests: slow down (see `Retry-After`)",
    503: "A service this route needs (Temporal) is unreachable; try again later",
}

_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": "The scheme to authenticate with.",
            "schema": {"type": "string"},
        }
    },
    429: {
        "Retry-After": {
            "description": "Seconds to wait before trying again.",
            "schema": {"type": "string"},
        }
    },
}


_REPLAYED = {
    "description": "`true` when this is the stored answer to an earlier request with the same "
    "`Idempotency-Key`.",
    "schema": {"type": "string", "enum": ["true"]},
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses=`` for errors it can answer that its shape does not imply (409, or
    503 from a route that reaches Temporal through the gateway)."""
    return {status: {"model": Problem, "description": DESCRIPTIONS[status]} for status in statuses}


def install(app: FastAPI) -> None:
    """Make ``app.openapi()`` return the documented-errors document (built once, then cached)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(generate(), app.routes)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def document_errors(document: dict[str, Any], routes: Iterable[Any]) -> dict[str, Any]:
    """The document with every operation's errors listed, each with the ``Problem`` body."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    problem = Problem.model_json_schema(ref_template=_REF)
    schemas.update(problem.pop("$defs", {}))
    schemas["Problem"] = problem
    needs_temporal, idempotent = set(), set()
    for route in _api_routes(routes):
        for method in route.methods:
            operation = (method.lower(), route.path_format)
            if _depends_on(route.dependant, get_control):
                needs_temporal.add(operation)
            if _depends_on(route.dependant, idempotent_create):
                idempotent.add(operation)
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            statuses = set(_implied(method, path, operation))
            if (method, path) in needs_temporal:
                statuses.add(503)
            responses = operation.setdefault("responses", {})
            if (method, path) in idempotent:
                statuses.add(409)
                for status, response in responses.items():
                    if status.startswith("2"):
                        response.setdefault("headers", {})[REPLAYED_HEADER] = _REPLAYED
            for status in statuses:
                responses.setdefault(str(status), {"description": DESCRIPTIONS[status]})
            for status, response in responses.items():
                if status[:1] in ("4", "5"):
                    _as_problem(int(status), response)
            operation["responses"] = dict(sorted(responses.items()))
    # FastAPI's own 422 body, now referred to by nothing (ValidationError only by it).
    for unused in ("HTTPValidationError", "ValidationError"):
        others = {name: schema for name, schema in schemas.items() if name != unused}
        if unused not in _refs([document.get("paths", {}), others]):
            schemas.pop(unused, None)
    return document


def _implied(method: str, path: str, operation: dict[str, Any]) -> Iterable[int]:
    parameters = operation.get("parameters", [])
    body = "requestBody" in operation
    if roles_for(method, path) is not None:
        yield from (401, 403, 429)
    if any(p.get("in") == "path" for p in parameters):
        yield 404
    if body:
        yield from (400, 413)
    if parameters or body:
        yield 422


def _as_problem(status: int, response: dict[str, Any]) -> None:
    response["content"] = {"application/json": {"schema": {"$ref": PROBLEM_REF}}}
    if not response.get("description") or response["description"] == "Validation Error":
        response["description"] = DESCRIPTIONS.get(status, "Error")
    if status in _HEADERS:
        response.setdefault("headers", {}).update(_HEADERS[status])


def _api_routes(routes: Iterable[Any]) -> Iterator[Any]:
    """Each API route as the app serves it. Newer FastAPI keeps included routers whole and
    gives their routes, with prefixes and app-wide dependencies applied, as route contexts."""
    contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    for route in contexts(list(routes)) if contexts is not None else routes:
        if isinstance(getattr(route, "original_route", route), APIRoute):
            yield route


def _depends_on(dependant: Dependant, call: Callable[..., Any]) -> bool:
    return any(sub.call is call or _depends_on(sub, call) for sub in dependant.dependencies)


def _refs(node: Any) -> set[str]:
    """The component names a part of the document refers to."""
    if isinstance(node, dict):
        found = {str(node["$ref"]).rsplit("/", 1)[-1]} if "$ref" in node else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(item) for item in node)) if node else set()
    return set()
