from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import jinja2
import jinja2.sandbox
import pytest

from tailor.demo.data import (
    CATEGORIES,
    DEMO_TEMPLATE,
    DEMO_TENANT,
    DemoContact,
    demo_catalog,
    demo_contacts,
)

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
EXAMPLE_DOMAINS = {"example.com", "example.org", "example.net"}


@pytest.fixture(scope="module")
def five_thousand() -> list[DemoContact]:
    return list(demo_contacts(5_000, now=NOW))


# ---- catalog -------------------------------------------------------------------------------


def test_catalog_shape() -> None:
    catalog = demo_catalog()
    assert 35 <= len(catalog) <= 50
    skus = [p.sku for p in catalog]
    assert len(set(skus)) == len(skus)
    for category in CATEGORIES:
        assert 4 <= sum(p.category == category for p in catalog) <= 6
    for p in catalog:
        assert p.category in CATEGORIES
        assert p.url == f"https://shop.example.com/p/{p.sku}"
        assert 500 <= p.price_cents <= 100_000
        assert p.name.strip()


def test_catalog_returns_fresh_list() -> None:
    first = demo_catalog()
    first.clear()
    assert demo_catalog()


# ---- contacts: determinism and streaming -----------------------------------------------------


def test_same_seed_same_contacts() -> None:
    assert list(demo_contacts(50, seed=3, now=NOW)) == list(demo_contacts(50, seed=3, now=NOW))


def test_different_seed_different_contacts() -> None:
    assert list(demo_contacts(50, seed=3, now=NOW)) != list(demo_contacts(50, seed=4, now=NOW))


def test_contact_i_independent_of_n() -> None:
    small = list(demo_contacts(10, now=NOW))
    large = list(demo_contacts(100, now=NOW))
    assert small[5] == large[5]
    assert small == large[:10]


def test_streaming_is_lazy() -> None:
    stream = demo_contacts(1_000_000, now=NOW)
    head = list(itertools.islice(stream, 3))
    assert len(head) == 3
    assert head == list(demo_contacts(3, now=NOW))


def test_rejects_naive_now_and_negative_n() -> None:
    with pytest.raises(ValueError):
        list(demo_contacts(1, now=datetime(2025, 3, 1, 12, 0)))
    with pytest.raises(ValueError):
        list(demo_contacts(-1, now=NOW))
    assert list(demo_contacts(0, now=NOW)) == []


# ---- contacts: properties over 5,000 -------------------------------------------------------


def test_emails_unique_and_on_example_domains(five_thousand: list[DemoContact]) -> None:
    emails = [c.email for c in five_thousand]
    assert len(set(emails)) == len(emails)
    for email in emails:
        local, _, domain = email.partition("@")
        assert domain in EXAMPLE_DOMAINS, email
        assert local and local == local.lower()


def test_skus_and_categories_exist(five_thousand: list[DemoContact]) -> None:
    skus = {p.sku for p in demo_catalog()}
    for c in five_thousand:
        assert 1 <= len(c.preferred_categories) <= 3
        assert len(set(c.preferred_categories)) == len(c.preferred_categories)
        assert set(c.preferred_categories) <= set(CATEGORIES)
        assert 0 <= len(c.cart_items) <= 3
        assert 0 <= len(c.browse_items) <= 5
        assert set(c.cart_items) <= skus
        assert set(c.browse_items) <= skus


def test_ratios_in_sane_bands(five_thousand: list[DemoContact]) -> None:
    n = len(five_thousand)
    consent = sum(c.consent for c in five_thousand) / n
    assert 0.95 <= consent <= 0.99
    assert consent < 1.0  # the demo needs some suppressed contacts
    with_cart = sum(bool(c.cart_items) for c in five_thousand) / n
    assert 0.15 <= with_cart <= 0.25
    mobile = sum(c.device == "mobile" for c in five_thousand) / n
    tablet = sum(c.device == "tablet" for c in five_thousand) / n
    assert 0.55 <= mobile <= 0.65
    assert 0.05 <= tablet <= 0.11
    assert {c.device for c in five_thousand} == {"mobile", "desktop", "tablet"}
    assert len({c.timezone for c in five_thousand}) >= 10
    assert len({c.locale for c in five_thousand}) >= 4


def test_engagement_and_purchase_frequency(five_thousand: list[DemoContact]) -> None:
    scores = [c.engagement_score for c in five_thousand]
    assert all(0 <= s <= 100 for s in scores)
    middling = sum(30 <= s <= 75 for s in scores) / len(scores)
    disengaged = sum(s < 20 for s in scores) / len(scores)
    assert middling > 0.5
    assert 0.05 <= disengaged <= 0.25
    assert all(0.0 <= c.purchase_frequency <= 6.0 for c in five_thousand)

    def mean_freq(contacts: list[DemoContact]) -> float:
        return sum(c.purchase_frequency for c in contacts) / len(contacts)

    high = [c for c in five_thousand if c.engagement_score >= 70]
    low = [c for c in five_thousand if c.engagement_score < 30]
    assert mean_freq(high) > 3 * mean_freq(low)


def test_last_open_at(five_thousand: list[DemoContact]) -> None:
    opened = [c for c in five_thousand if c.last_open_at is not None]
    assert 0 < len(opened) < len(five_thousand)  # some never opened
    for c in opened:
        assert c.last_open_at is not None
        assert c.last_open_at.tzinfo is not None
        assert c.last_open_at.utcoffset() == timedelta(0)
        assert c.last_open_at <= NOW
    disengaged = [c for c in opened if c.engagement_score < 20]
    assert disengaged
    assert all(
        c.last_open_at is not None and NOW - c.last_open_at > timedelta(days=90) for c in disengaged
    )


def test_now_in_other_timezone_is_normalised_to_utc() -> None:
    tokyo_now = NOW.astimezone(timezone(timedelta(hours=9)))
    assert list(demo_contacts(20, now=tokyo_now)) == list(demo_contacts(20, now=NOW))


# ---- tenant and template -------------------------------------------------------------------


def test_tenant() -> None:
    assert DEMO_TENANT["id"] == "demo"
    assert DEMO_TENANT["name"] == "Northwind Outfitters"
    assert DEMO_TENANT["from_email"] == "hello@northwind.example.com"
    assert "San Francisco, CA 94105" in DEMO_TENANT["postal_address"]


@dataclass(frozen=True)
class _Item:
    name: str
    price: str
    url: str


def _context(
    *, cart: bool, first_name: str | None, tier: str, journey: str | None = None
) -> dict[str, Any]:
    catalog = demo_catalog()
    items = [
        _Item(name=p.name, price=f"${p.price_cents / 100:,.2f}", url=p.url) for p in catalog[:5]
    ]
    return {
        "first_name": first_name,
        "headline": "Spring trail season is here",
        "intro": "We picked a few things for your next weekend outside.",
        "tier": tier,
        "top_category": "outdoor",
        "cart": items[:2] if cart else [],
        "recommendations": items[2:5],
        "cta_text_suggestion": "Shop outdoor",
        "cta_url_suggestion": "https://shop.example.com/c/outdoor",
        "tenant_name": DEMO_TENANT["name"],
        "journey": journey,
    }


def _render(context: dict[str, Any]) -> dict[str, str]:
    env = jinja2.sandbox.SandboxedEnvironment(undefined=jinja2.StrictUndefined)
    return {
        key: env.from_string(source).render(**context)
        for key, source in DEMO_TEMPLATE.items()
        if key != "name"
    }


def test_a_journey_email_leads_with_its_headline() -> None:
    rendered = _render(_context(cart=False, first_name="Ada", tier="mid", journey="welcome_1"))
    assert rendered["subject"] == "Ada, Spring trail season is here"
    # A cart reminder keeps the cart subject.
    with_cart = _render(_context(cart=True, first_name="Ada", tier="mid", journey="cart_reminder"))
    assert "your cart is saved" in with_cart["subject"]


def test_template_keys() -> None:
    assert DEMO_TEMPLATE["name"] == "seasonal-picks"
    assert set(DEMO_TEMPLATE) == {"name", "subject", "preheader", "body", "cta_text", "cta_url"}
    assert DEMO_TEMPLATE["cta_text"] == "{{ cta_text_suggestion }}"
    assert DEMO_TEMPLATE["cta_url"] == "{{ cta_url_suggestion }}"


@pytest.mark.parametrize("tier", ["high", "mid", "low"])
@pytest.mark.parametrize("first_name", ["Valentina", None])
def test_template_renders_with_cart(first_name: str | None, tier: str) -> None:
    ctx = _context(cart=True, first_name=first_name, tier=tier)
    out = _render(ctx)
    assert 0 < len(out["subject"]) < 80
    assert "\n" not in out["subject"]
    body = out["body"]
    for item in ctx["cart"] + ctx["recommendations"]:
        assert item.name in body
        assert item.price in body
        assert item.url in body
    assert f"Hi {first_name or 'there'}," in body
    assert "unsubscribe" not in body.lower()
    assert "94105" not in body
    assert out["cta_text"] == "Shop outdoor"
    assert out["cta_url"] == "https://shop.example.com/c/outdoor"


def test_template_renders_without_cart() -> None:
    ctx = _context(cart=False, first_name=None, tier="mid")
    out = _render(ctx)
    assert 0 < len(out["subject"]) < 80
    assert "there" in out["subject"]
    assert "cart" not in out["body"].lower()
    assert "Hi there," in out["body"]
    for item in ctx["recommendations"]:
        assert item.name in out["body"]


def test_template_renders_with_nothing_to_show() -> None:
    ctx = _context(cart=False, first_name="Ava", tier="low")
    ctx["recommendations"] = []
    out = _render(ctx)
    assert "Hi Ava," in out["body"]
    assert "Picked for you" not in out["body"]
    assert "\n\n\n" not in out["body"]
