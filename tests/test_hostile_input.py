"""Bad input at the edge: ids no row can have, header injection, oversized and unicode names,
and templates that try to leave the Jinja sandbox. Each case answers 4xx with the usual error
body (or renders harmlessly), never 500, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from typing import Any, cast

import httpx
import pytest
from temporalio.client import Client as TemporalClient

from api.main import create_app
from api.paging import id_cursor
from tailor.db import Database
from tailor.demo.seed import seed_demo
from tailor.models import Contact, TemplateVersion
from tailor.personalise.rules import Catalog, RuleBasedExecutor, TemplateRenderError
from tailor.sending.compose import build_message
from tailor.sending.guardrail import Guardrail
from tests.test_contacts import CONSENT, Client, app_settings, new_key

BEYOND_64_BITS = 99999999999999999999
BEYOND_INT4 = 2**31  # PostgreSQL's INTEGER ids: asyncpg refuses to even send it
BAD_IDS = [BEYOND_64_BITS, BEYOND_INT4, 0, -1]
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

VERSION = {
    "subject": "Hello {{ first_name or 'there' }}",
    "body": "Some words for you.",
    "cta_text": "Shop",
    "cta_url": "https://shop.example.com",
}


class NoTemporal:
    """Stands in for the Temporal client: routes that take campaign control connect before
    they validate, and every request here must be refused before Temporal is used."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a refused request reached Temporal ({name})")


@pytest.fixture
async def client(db: Database) -> AsyncIterator[Client]:
    await seed_demo(db, contacts=0)
    headers, key_id = await new_key(db)
    app = create_app(app_settings(db), temporal_client=cast(TemporalClient, NoTemporal()))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tailor") as http:
            yield Client(http, headers, key_id)


def _refused(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code in (404, 422), (answer.status_code, answer.text)
    body: dict[str, Any] = answer.json()
    assert body["message"]
    return body


def _field_refused(answer: httpx.Response, field: str) -> str:
    assert answer.status_code == 422, answer.text
    body = answer.json()
    fields = [d["field"] for d in body["detail"]]
    assert field in fields, fields
    return str(body["message"])


# --- Integer ids no row can have ---------------------------------------------------------------

# Every route with an integer id in its path or query (list cursors are opaque: below).
PATH_IDS = [
    ("GET", "/v1/contacts/{id}", None),
    ("POST", "/v1/contacts/{id}/consent", CONSENT),
    ("GET", "/v1/templates/{id}", None),
    ("POST", "/v1/templates/{id}/versions", VERSION),
    ("GET", "/v1/reviews/{id}", None),
    ("POST", "/v1/reviews/{id}/approve", {}),
    ("POST", "/v1/reviews/{id}/reject", {}),
    ("GET", "/v1/sends/{id}/explain", None),
    ("POST", "/v1/dead-letters/{id}/replay", None),
    ("GET", "/v1/journeys/runs?contact_id={id}", None),
]


def _wrong(answer: httpx.Response) -> bool:
    return answer.status_code not in (404, 422) or not answer.json().get("message")


async def test_an_id_no_row_can_have_in_a_path_or_query_is_refused(client: Client) -> None:
    # One test over every route (each case is one request): a fresh store per case would cost
    # seconds each. The failure lists every route that answered otherwise.
    wrong = []
    for method, path, body in PATH_IDS:
        for bad in BAD_IDS:
            url = path.format(id=bad)
            answer = await client.http.request(method, url, json=body, headers=client.headers)
            if _wrong(answer):
                wrong.append(f"{method} {url}: {answer.status_code} {answer.text[:80]}")
    assert wrong == []


# Every list paged by id. A cursor is opaque, but one can be forged to hold any id.
ID_LISTS = ["/v1/contacts", "/v1/templates", "/v1/reviews", "/v1/products", "/v1/dead-letters",
            "/v1/audit", "/v1/campaigns/cmp_1/sends"]  # fmt: skip


async def test_a_cursor_holding_an_id_no_row_can_have_is_refused(client: Client) -> None:
    # PostgreSQL refuses to compare a past-INTEGER id with the column: a 500 if it got there.
    wrong = []
    for path in ID_LISTS:
        for bad in [BEYOND_64_BITS, BEYOND_INT4, 0, -1]:
            cursor = id_cursor(bad)
            answer = await client.http.get(path, params={"cursor": cursor}, headers=client.headers)
            fields = [d["field"] for d in answer.json().get("detail", [])]
            if answer.status_code != 422 or fields != ["cursor"] or _wrong(answer):
                wrong.append(f"{path} [{bad}]: {answer.status_code} {answer.text[:80]}")
    assert wrong == []


def _body_ids(bad: int) -> list[tuple[str, str, dict[str, Any]]]:
    variant = {"key": "A", "template_version_id": bad}
    return [
        ("POST", "/v1/campaigns", {"name": "c", "template_version_id": bad}),
        ("POST", "/v1/ab-tests", {"name": "t", "variants": [variant, {**variant, "key": "B"}]}),
        ("PUT", "/v1/templates/default", {"template_version_id": bad}),
        ("POST", "/v1/events/engagement", {"type": "open", "campaign_id": "c", "contact_id": bad}),
        ("POST", "/v1/journeys", {"key": "jx", "name": "j", "steps": [
            {"type": "send", "name": "s", "goal": "welcome_1", "template_version_id": bad}]}),
        ("POST", "/v1/trigger-rules", {"event": "e", "journey_key": "jx",
                                        "order_count_in": [bad]}),
    ]  # fmt: skip


async def test_an_id_no_row_can_have_in_a_body_is_refused_naming_it(client: Client) -> None:
    wrong = []
    for bad in BAD_IDS:
        for method, path, body in _body_ids(bad):
            answer = await client.http.request(method, path, json=body, headers=client.headers)
            fields = [d["field"] for d in answer.json().get("detail", [])]
            if answer.status_code != 422 or not any(
                f.endswith(("template_version_id", "contact_id")) or "order_count_in" in f
                for f in fields
            ):
                wrong.append(f"{method} {path} with {bad}: {answer.status_code} {fields}")
    assert wrong == []


async def test_a_text_id_past_its_length_or_alphabet_is_refused(client: Client) -> None:
    paths = [
        ("GET", "/v1/campaigns/" + "c" * 65),
        ("GET", "/v1/campaigns/cmp%0D%0Ax"),
        ("POST", "/v1/campaigns/" + "c" * 65 + "/pause"),
        ("GET", "/v1/campaigns/" + "c" * 65 + "/sends"),
        ("GET", "/v1/ab-tests/" + "a" * 65),
        ("POST", "/v1/ab-tests/ab%20x/cancel"),
        ("GET", "/v1/reviews?campaign_id=" + "c" * 65),
        ("GET", "/v1/unsubscribe/" + "t" * 201),
        ("DELETE", "/v1/products/" + "s" * 65),
        ("POST", "/v1/keys/key_" + "0" * 5000 + "/revoke"),
    ]
    wrong = []
    for method, path in paths:
        answer = await client.http.request(method, path, headers=client.headers)
        if _wrong(answer):
            wrong.append(f"{method} {path}: {answer.status_code}")
    assert wrong == []


# --- Header injection ---------------------------------------------------------------------------


async def test_a_line_break_in_a_contact_name_is_refused(client: Client) -> None:
    contact = {"email": "x@example.com", "first_name": "Eve\r\nBcc: x@evil.example"}
    answer = await client.http.post(
        "/v1/contacts", json={"contacts": [contact]}, headers=client.headers
    )
    _field_refused(answer, "contacts.0.first_name")


async def test_a_line_break_in_a_template_subject_is_refused(client: Client) -> None:
    body = {**VERSION, "name": "t", "subject": "Sale!\r\nBcc: x@evil.example"}
    answer = await client.http.post("/v1/templates", json=body, headers=client.headers)
    _field_refused(answer, "subject")


async def test_a_control_character_in_a_template_name_is_refused(client: Client) -> None:
    answer = await client.http.post(
        "/v1/templates", json={**VERSION, "name": "t\x00x"}, headers=client.headers
    )
    _field_refused(answer, "name")


def _contact(**fields: Any) -> Contact:
    return Contact(id=7, tenant_id="demo", email="r@example.com", **fields)


def _version(*, subject: str, body: str) -> TemplateVersion:
    return TemplateVersion(
        id=1, template_id=1, version=1, subject=subject, preheader="", body=body,
        cta_text="Shop", cta_url="https://s.example.com",
    )  # fmt: skip


def _message(subject: str, contact: Contact, from_name: str = "Northwind") -> EmailMessage:
    """The whole message the MIME builder writes for a template subject and a contact."""
    version = _version(subject=subject, body="Words.")
    content = RuleBasedExecutor().personalise(
        contact=contact, version=version, catalog=Catalog([], "https://s.example.com"),
        tenant_name="Northwind", now=NOW,
    )  # fmt: skip
    compliance = Guardrail(public_url="https://t.example.com", secret="s").compliance(
        campaign_id="cmp_1", contact_id=7, tenant_name="Northwind",
        postal_address="1 Main St",
    )  # fmt: skip
    raw = build_message(
        content=content, compliance=compliance, from_name=from_name,
        from_email="hello@s.example.com", to_email="r@example.com",
        message_id="<cmp_1.7@s.example.com>", campaign_id="cmp_1", sent_at=NOW,
    )  # fmt: skip
    message = message_from_bytes(raw, _class=EmailMessage, policy=default)
    assert isinstance(message, EmailMessage)
    return message


def test_a_stored_subject_with_a_line_break_adds_no_header() -> None:
    # A version stored before the API refused line breaks still renders one Subject line.
    message = _message("Sale!\r\nBcc: x@evil.example", _contact())
    assert message["Bcc"] is None
    assert message.get_all("Subject") == ["Sale! Bcc: x@evil.example"]


def test_a_name_with_a_line_break_rendered_into_the_subject_adds_no_header() -> None:
    message = _message("Hi {{ first_name }}", _contact(first_name="Eve\r\nBcc: x@evil.example"))
    assert message["Bcc"] is None
    assert len(message.get_all("Subject") or []) == 1


def test_a_sender_name_with_a_line_break_adds_no_header() -> None:
    message = _message("Hi", _contact(), from_name="Northwind\r\nBcc: x@evil.example")
    assert message["Bcc"] is None
    assert message["From"].addresses[0].display_name == "Northwind Bcc: x@evil.example"


# --- Size and unicode ---------------------------------------------------------------------------


async def test_a_5000_character_name_is_refused_naming_the_field(client: Client) -> None:
    contact = {"email": "x@example.com", "last_name": "n" * 5000}
    answer = await client.http.post(
        "/v1/contacts", json={"contacts": [contact]}, headers=client.headers
    )
    assert "at most 100 characters" in _field_refused(answer, "contacts.0.last_name")


async def test_infinity_is_not_a_number_a_contact_can_have(client: Client) -> None:
    content = '{"contacts": [{"email": "x@example.com", "purchase_frequency": Infinity}]}'
    answer = await client.http.post(
        "/v1/contacts",
        content=content,
        headers={**client.headers, "Content-Type": "application/json"},
    )
    _refused(answer)
    assert answer.status_code == 422


UNICODE_NAMES = {
    "rtl": ("\u200fمريم", "‏כהן"),  # Arabic with a right-to-left mark, Hebrew
    "emoji": ("Zoë 👩🏽‍💻", "O'Brien-Łukasz 🇵🇱"),
    "cjk": ("さくら", "王"),
}


@pytest.mark.parametrize("names", UNICODE_NAMES.values(), ids=UNICODE_NAMES.keys())
async def test_unicode_names_are_stored_as_given(client: Client, names: tuple[str, str]) -> None:
    first, last = names
    contact = {"email": "u@example.com", "first_name": first, "last_name": last}
    created = await client.http.post(
        "/v1/contacts", json={"contacts": [contact]}, headers=client.headers
    )
    assert created.status_code == 200, created.text
    contact_id = created.json()["data"][0]["id"]

    read = await client.http.get(f"/v1/contacts/{contact_id}", headers=client.headers)

    assert (read.json()["first_name"], read.json()["last_name"]) == (first, last)


@pytest.mark.parametrize(
    ("first_name", "shown"),
    [("\u200fمريم", "مريم"), ("さくら", "さくら"), ("Zoë 👩🏽‍💻", "Zoë")],
)
def test_unicode_names_render_into_a_well_formed_subject(first_name: str, shown: str) -> None:
    # Names reach emails through safe_name: letters in any script stay, symbols (emoji,
    # direction marks) are dropped, so nothing can reorder or spoof the line.
    message = _message("Hi {{ first_name }}!", _contact(first_name=first_name))
    assert message["Subject"] == f"Hi {shown}!"


# --- The Jinja sandbox --------------------------------------------------------------------------

ESCAPES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ lipsum.__globals__['os'] }}",
    "{{ ''|attr('__class__') }}",
    "{{ namespace()['__init__'] }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
]


@pytest.mark.parametrize("source", ESCAPES)
async def test_a_sandbox_escape_is_refused_when_the_template_is_created(
    client: Client, source: str
) -> None:
    answer = await client.http.post(
        "/v1/templates", json={**VERSION, "name": "t", "body": source}, headers=client.headers
    )
    assert "Python internals" in _field_refused(answer, "body")


@pytest.mark.parametrize(
    "source",
    [
        *ESCAPES,  # stored before the create-time check existed
        "{{ ''|attr('_' ~ '_class__') }}",  # a name the create-time check cannot see
        "{{ 2 ** 100000000 }}",  # would take seconds, then fail to print
        "{% set n = namespace(x=10 ** 64) %}{% for _ in range(40) %}{% set n.x = n.x * n.x %}"
        "{% endfor %}{{ n.x }}",  # would exhaust memory
        "{{ 'x' * 10 ** 10 }}",  # would exhaust memory
        "{{ 1 / 0 }}",  # plain Python errors are render errors too
        "{{ 10.0 ** 400 }}",
    ],
)
def test_a_sandbox_escape_renders_nothing_but_an_error(source: str) -> None:
    version = _version(subject="Hi", body=source)
    with pytest.raises(TemplateRenderError):
        RuleBasedExecutor().personalise(
            contact=_contact(), version=version, catalog=Catalog([], "https://s.example.com"),
            tenant_name="Northwind", now=NOW,
        )  # fmt: skip


async def test_a_template_that_only_uses_its_variables_is_accepted(client: Client) -> None:
    body = "{% for p in recommendations %}{{ p.name }} {{ p.price }}{% endfor %}{{ 2 ** 8 }}"
    answer = await client.http.post(
        "/v1/templates", json={**VERSION, "name": "t", "body": body}, headers=client.headers
    )
    assert answer.status_code == 201, answer.text
