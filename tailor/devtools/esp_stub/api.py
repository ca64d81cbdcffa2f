"""HTTP plumbing the provider modules share: the parsed :class:`Request`, the :class:`Reply`,
and the ``_Api`` base each provider implements (routes, authentication, error format)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tailor.devtools.esp_stub.control import Behaviour, _Bucket
from tailor.devtools.esp_stub.store import Ledger


@dataclass
class Request:
    method: str
    path: str
    target: str  # path and query, as sent (SigV4 signs it)
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"{}")


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(status: int, payload: object, headers: dict[str, str] | None = None) -> Reply:
    merged = {"Content-Type": "application/json", **(headers or {})}
    return Reply(status, json.dumps(payload).encode(), merged)


Route = Callable[[Request, Behaviour], Reply]


class _Api:
    """One provider's routes, authentication and error format."""

    name = ""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def route(self, method: str, path: str) -> Route | None:
        raise NotImplementedError

    def authorise(self, request: Request) -> Reply | None:
        """None when the credentials are right, else the provider's refusal."""
        raise NotImplementedError

    def error(self, status: int, message: str) -> Reply:
        return json_reply(status, {"message": message})

    def decorate(self, reply: Reply, bucket: _Bucket, behaviour: Behaviour) -> None:
        """Headers every answer carries (SendGrid's rate-limit headers)."""


def _header(headers: dict[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name), None)
