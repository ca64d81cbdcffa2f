"""The stub itself (:class:`EspStub`): dispatches each request to its provider, applies that
provider's injected faults before it answers, and serves the ``/_stub/`` control routes."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict
from typing import Any

from tailor.devtools.esp_stub.api import Reply, Request, Route, _Api, json_reply
from tailor.devtools.esp_stub.control import Behaviour, _Bucket
from tailor.devtools.esp_stub.mailgun import MailgunApi
from tailor.devtools.esp_stub.sendgrid import SendGridApi
from tailor.devtools.esp_stub.ses import SesApi
from tailor.devtools.esp_stub.store import KEEP_MESSAGES, PROVIDERS, Ledger, StubMessage


class EspStub:
    """The three providers' behaviour and what they accepted; ``url`` serves all three."""

    def __init__(self, keep: int = KEEP_MESSAGES) -> None:
        self.sendgrid = Behaviour()
        self.mailgun = Behaviour()
        self.ses = Behaviour()
        self.ledger = Ledger(keep)
        self.url = ""
        self._apis: list[_Api] = [
            SendGridApi(self.ledger),
            MailgunApi(self.ledger),
            SesApi(self.ledger),
        ]
        self._buckets = {name: _Bucket() for name in PROVIDERS}
        self._bucket_lock = threading.Lock()

    def behaviour(self, provider: str) -> Behaviour:
        if provider not in PROVIDERS:
            raise ValueError(f"unknown provider {provider!r}: expected one of {PROVIDERS}")
        behaviour: Behaviour = getattr(self, provider)
        return behaviour

    def messages(self, provider: str | None = None, since: int = 0) -> list[StubMessage]:
        return self.ledger.messages(provider, since)

    def stats(self) -> dict[str, Any]:
        return self.ledger.stats()

    def reset(self) -> None:
        """Forget every message and count, and restore default behaviours."""
        for name in PROVIDERS:
            setattr(self, name, Behaviour())
        with self._bucket_lock:
            self._buckets = {name: _Bucket() for name in PROVIDERS}
        self.ledger.reset()

    def handle(self, request: Request) -> Reply | None:
        """The answer to one request, or None to hang up without one."""
        if request.path.startswith("/_stub/"):
            return self._control(request)
        found = next(
            ((api, r) for api in self._apis if (r := api.route(request.method, request.path))), None
        )
        if found is None:
            return json_reply(404, {"message": f"no route {request.method} {request.path}"})
        api, route = found
        behaviour = self.behaviour(api.name)
        self.ledger.count(api.name, "requests")
        if behaviour.latency_s:
            time.sleep(behaviour.latency_s)
        try:
            reply = self._answer(api, route, request, behaviour)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # a malformed body
            self.ledger.count(api.name, "bad_requests")
            reply = api.error(400, f"malformed request: {exc!r}")
        with self._bucket_lock:
            api.decorate(reply, self._buckets[api.name], behaviour)
        if behaviour.drop_after_read:
            self.ledger.count(api.name, "dropped")
            return None
        return reply

    def _answer(self, api: _Api, route: Route, request: Request, behaviour: Behaviour) -> Reply:
        if (status := behaviour.failing_status()) is not None:
            self.ledger.count(api.name, "failed")
            reply = api.error(status, "injected failure")
            if behaviour.fail_retry_after_s is not None:
                reply.headers["Retry-After"] = str(behaviour.fail_retry_after_s)
            return reply
        if (denied := api.authorise(request)) is not None:
            self.ledger.count(api.name, "unauthorised")
            return denied
        if behaviour.rate_limit_per_s:
            with self._bucket_lock:
                wait = self._buckets[api.name].wait_s(behaviour.rate_limit_per_s, time.monotonic())
            if wait > 0:
                self.ledger.count(api.name, "rate_limited")
                reply = api.error(429, "too many requests")
                reply.headers["Retry-After"] = str(max(1, math.ceil(wait)))
                return reply
        return route(request, behaviour)

    def _control(self, request: Request) -> Reply:
        key = (request.method, request.path)
        try:
            if key == ("POST", "/_stub/behaviour"):
                values = request.json()
                behaviour = self.behaviour(values.pop("provider", ""))
                behaviour.update(values)
                current = asdict(behaviour)
                current["reject_addresses"] = sorted(behaviour.reject_addresses)
                return json_reply(200, current)
        except (ValueError, TypeError, AttributeError) as exc:
            return json_reply(400, {"message": str(exc)})
        if key == ("POST", "/_stub/reset"):
            self.reset()
            return json_reply(200, {"reset": True})
        if key == ("GET", "/_stub/stats"):
            return json_reply(200, self.stats())
        if key == ("GET", "/_stub/messages"):
            provider = (request.query.get("provider") or [""])[0] or None
            since = int((request.query.get("since") or ["0"])[0])
            found = self.messages(provider, since)
            last = found[-1].seq if found else since
            return json_reply(200, {"messages": [asdict(m) for m in found], "last": last})
        return json_reply(404, {"message": f"no control route {request.method} {request.path}"})
