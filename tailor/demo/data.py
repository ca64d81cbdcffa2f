"""Synthetic demo data for Tailor: a product catalog, a contact stream, a tenant and a template.

Everything here is SYNTHETIC. The people do not exist; every email address is on a reserved
example domain (example.com / example.org / example.net, RFC 2606) so nothing can ever be
delivered to a real mailbox. The generator is pure and deterministic: no I/O, no network, no
global random state. Contact ``i`` depends only on ``(seed, i, now)``, never on how many contacts
were requested, so a stream of a million contacts can be produced lazily and resumed anywhere.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

__all__ = [
    "CATEGORIES",
    "DEMO_TEMPLATE",
    "DEMO_TENANT",
    "DemoContact",
    "DemoProduct",
    "demo_catalog",
    "demo_contacts",
]


@dataclass(frozen=True)
class DemoProduct:
    sku: str
    name: str
    category: str
    price_cents: int
    url: str  # https://shop.example.com/p/<sku>


@dataclass(frozen=True)
class DemoContact:
    email: str
    first_name: str
    last_name: str
    timezone: str  # IANA zone name
    locale: str
    device: str  # "mobile" | "desktop" | "tablet"
    engagement_score: int  # 0..100
    last_open_at: datetime | None  # tz-aware UTC, never after `now`; None = never opened
    purchase_frequency: float  # purchases per month, 0..6
    preferred_categories: list[str]
    cart_items: list[str]  # SKUs
    browse_items: list[str]  # SKUs
    consent: bool


# --------------------------------------------------------------------------------------------
# Catalog
# --------------------------------------------------------------------------------------------

CATEGORIES: Final[tuple[str, ...]] = (
    "outdoor",
    "running",
    "home",
    "kitchen",
    "beauty",
    "books",
    "electronics",
    "kids",
)

_SHOP_BASE_URL: Final = "https://shop.example.com/p/"

# (category, sku prefix, [(name, price in cents), ...])
_CATALOG_SPEC: Final[tuple[tuple[str, str, tuple[tuple[str, int], ...]], ...]] = (
    (
        "outdoor",
        "OUT",
        (
            ("Ridgeline 2-Person Backpacking Tent", 24900),
            ("Summit 28L Daypack", 8900),
            ("Alpine Down Sleeping Bag (20°F)", 18900),
            ("Trailhead Insulated Water Bottle, 32 oz", 3400),
            ("Cascade Packable Rain Jacket", 12900),
        ),
    ),
    (
        "running",
        "RUN",
        (
            ("Tempo Lightweight Road Running Shoes", 13000),
            ("Stride Seamless Running Socks (3-Pack)", 2400),
            ("Pacer Reflective Running Vest", 4500),
            ("Cadence GPS Running Watch", 19900),
            ("Breeze Quarter-Zip Running Top", 5800),
        ),
    ),
    (
        "home",
        "HOM",
        (
            ("Linen Blend Throw Blanket", 6900),
            ("Stoneware Table Lamp", 8900),
            ("Organic Cotton Percale Sheet Set (Queen)", 14900),
            ("Woven Seagrass Storage Basket", 3900),
            ("Cedar & Sage Soy Candle", 2800),
            ("Hand-Tufted Wool Area Rug, 5x8", 32900),
        ),
    ),
    (
        "kitchen",
        "KIT",
        (
            ("Cast Iron Skillet, 12-inch", 4500),
            ("Pour-Over Coffee Set", 5400),
            ("Chef's Knife, 8-inch", 9900),
            ("Bamboo Cutting Board Set", 3200),
            ("Enameled Dutch Oven, 5.5 qt", 17900),
        ),
    ),
    (
        "beauty",
        "BEA",
        (
            ("Daily Mineral Sunscreen SPF 30", 2600),
            ("Hydrating Hyaluronic Serum", 3800),
            ("Botanical Hand Cream Trio", 2200),
            ("Overnight Repair Lip Mask", 1800),
            ("Gentle Foaming Cleanser", 2000),
        ),
    ),
    (
        "books",
        "BOK",
        (
            ("The Long Trail: A Hiker's Field Guide", 2400),
            ("Weeknight Kitchen: 100 Simple Dinners", 3200),
            ("Run Smarter: Training for Every Distance", 1900),
            ("The Quiet Garden (Hardcover)", 2800),
            ("Stargazing for Beginners", 1600),
        ),
    ),
    (
        "electronics",
        "ELE",
        (
            ("Wireless Noise-Cancelling Headphones", 24900),
            ("Portable Solar Power Bank, 20,000 mAh", 5900),
            ("Waterproof Bluetooth Speaker", 7900),
            ("Rechargeable LED Headlamp", 3900),
            ("Smart Sleep Tracker", 12900),
        ),
    ),
    (
        "kids",
        "KID",
        (
            ("Junior Explorer Binoculars", 2900),
            ("Kids' Waterproof Hiking Boots", 5900),
            ("Wooden Camp Kitchen Play Set", 7400),
            ("Glow-in-the-Dark Constellation Puzzle", 2200),
            ("Kids' Fleece Zip Hoodie", 3600),
        ),
    ),
)


def _build_catalog() -> tuple[DemoProduct, ...]:
    products: list[DemoProduct] = []
    for category, prefix, items in _CATALOG_SPEC:
        for index, (name, price_cents) in enumerate(items, start=1):
            sku = f"{prefix}-{100 + index}"
            products.append(
                DemoProduct(
                    sku=sku,
                    name=name,
                    category=category,
                    price_cents=price_cents,
                    url=f"{_SHOP_BASE_URL}{sku}",
                )
            )
    return tuple(products)


_CATALOG: Final[tuple[DemoProduct, ...]] = _build_catalog()
_SKUS_BY_CATEGORY: Final[dict[str, tuple[str, ...]]] = {
    category: tuple(p.sku for p in _CATALOG if p.category == category) for category in CATEGORIES
}
_ALL_SKUS: Final[tuple[str, ...]] = tuple(p.sku for p in _CATALOG)


def demo_catalog() -> list[DemoProduct]:
    """The demo shop's products (about 40, five or six per category). A fresh list each call."""
    return list(_CATALOG)


# --------------------------------------------------------------------------------------------
# Contacts
# --------------------------------------------------------------------------------------------

# A diverse pool of ASCII names (ASCII keeps the derived email local parts simple).
_FIRST_NAMES: Final[tuple[str, ...]] = (
    "Ava", "Liam", "Olivia", "Noah", "Emma", "Mateo", "Sofia", "Lucas", "Mia", "Ethan",
    "Amara", "Kofi", "Priya", "Arjun", "Mei", "Hiroshi", "Yuki", "Sora", "Chloe", "Leon",
    "Hannah", "Felix", "Lena", "Jonas", "Ines", "Diego", "Valentina", "Santiago", "Camila",
    "Gabriel", "Fatima", "Omar", "Layla", "Yusuf", "Zara", "Aisha", "Chidi", "Ngozi", "Tariq",
    "Elena", "Nikolai", "Anya", "Lars", "Freya", "Astrid", "Mateus", "Beatriz", "Joao",
    "Minh", "Linh", "Jae", "Seo-yeon", "Ravi", "Ananya", "Grace", "Samuel", "Isabella",
    "Daniel", "Chen", "Maya", "Owen", "Nora",
)  # fmt: skip

_LAST_NAMES: Final[tuple[str, ...]] = (
    "Nguyen", "Smith", "Garcia", "Johnson", "Muller", "Schmidt", "Rossi", "Bianchi", "Tanaka",
    "Sato", "Suzuki", "Kim", "Park", "Lee", "Chen", "Wang", "Li", "Patel", "Sharma", "Singh",
    "Okafor", "Mensah", "Adeyemi", "Diallo", "Hassan", "Haddad", "Khan", "Rahman", "Silva",
    "Santos", "Oliveira", "Costa", "Hernandez", "Lopez", "Martinez", "Rodriguez", "Dubois",
    "Martin", "Bernard", "Jansen", "de Vries", "Andersson", "Nilsson", "Hansen", "Kowalski",
    "Novak", "Ivanova", "Petrov", "O'Brien", "Murphy", "Walsh", "Brown", "Taylor", "Wilson",
    "Cohen", "Levi", "Yilmaz", "Demir", "Alvarez", "Fischer", "Weber", "Moreau",
)  # fmt: skip

# (IANA timezone, locale, relative weight)
_TIMEZONES: Final[tuple[tuple[str, str, int], ...]] = (
    ("America/New_York", "en", 20),
    ("America/Chicago", "en", 10),
    ("America/Denver", "en", 4),
    ("America/Los_Angeles", "en", 12),
    ("America/Toronto", "en", 4),
    ("America/Mexico_City", "es", 3),
    ("America/Sao_Paulo", "pt", 3),
    ("Europe/London", "en", 9),
    ("Europe/Dublin", "en", 2),
    ("Europe/Berlin", "de", 7),
    ("Europe/Paris", "fr", 5),
    ("Europe/Madrid", "es", 3),
    ("Europe/Amsterdam", "nl", 2),
    ("Europe/Stockholm", "sv", 1),
    ("Asia/Tokyo", "ja", 4),
    ("Asia/Seoul", "ko", 2),
    ("Asia/Singapore", "en", 2),
    ("Asia/Kolkata", "en", 3),
    ("Australia/Sydney", "en", 3),
    ("Pacific/Auckland", "en", 1),
)
_TZ_CHOICES: Final[tuple[tuple[str, str], ...]] = tuple((tz, loc) for tz, loc, _ in _TIMEZONES)
_TZ_WEIGHTS: Final[tuple[int, ...]] = tuple(w for _, _, w in _TIMEZONES)

_DEVICES: Final[tuple[str, ...]] = ("mobile", "desktop", "tablet")
_DEVICE_WEIGHTS: Final[tuple[int, ...]] = (60, 32, 8)

_EMAIL_DOMAINS: Final[tuple[str, ...]] = ("example.com", "example.org", "example.net")
_EMAIL_DOMAIN_WEIGHTS: Final[tuple[int, ...]] = (70, 20, 10)

# How popular each category is as a preference (same order as CATEGORIES).
_CATEGORY_WEIGHTS: Final[tuple[int, ...]] = (16, 14, 15, 14, 12, 9, 12, 8)

_CONSENT_RATE: Final = 0.97
_CART_RATE: Final = 0.20


def _email_slug(name: str) -> str:
    """Lower-case letters only: "O'Brien" -> "obrien", "de Vries" -> "devries"."""
    return "".join(ch for ch in name.lower() if "a" <= ch <= "z")


def _make_email(rng: random.Random, first: str, last: str, i: int) -> str:
    # Every pattern ends in the contact index and names never contain digits, so the trailing
    # digit run is exactly str(i): local parts (hence addresses) are unique per index.
    f, l_ = _email_slug(first), _email_slug(last)
    pattern = rng.random()
    if pattern < 0.55:
        local = f"{f}.{l_}.{i}"
    elif pattern < 0.75:
        local = f"{f}{l_}{i}"
    elif pattern < 0.90:
        local = f"{f[0]}{l_}{i}"
    else:
        local = f"{f}_{l_}_{i}"
    domain = rng.choices(_EMAIL_DOMAINS, weights=_EMAIL_DOMAIN_WEIGHTS)[0]
    return f"{local}@{domain}"


def _engagement(rng: random.Random) -> int:
    """Mostly middling, a band of fans, and a tail of disengaged subscribers."""
    bucket = rng.random()
    if bucket < 0.12:  # disengaged tail
        score = rng.uniform(0, 22)
    elif bucket < 0.82:  # the middle
        score = rng.gauss(55, 14)
    else:  # fans
        score = rng.gauss(84, 8)
    return max(0, min(100, round(score)))


def _last_open(rng: random.Random, engagement: int, now: datetime) -> datetime | None:
    if engagement < 20:
        if rng.random() < 0.45:
            return None
        ago = timedelta(days=rng.uniform(120, 720))
    else:
        if rng.random() < 0.02:
            return None
        # Engaged people opened recently; the mean gap grows as engagement falls.
        mean_days = 1.0 + (100 - engagement) * 0.9
        days = min(rng.expovariate(1.0 / mean_days), 365.0)
        ago = timedelta(days=days, minutes=rng.uniform(1, 60))
    return (now - ago).replace(microsecond=0)


def _purchase_frequency(rng: random.Random, engagement: int) -> float:
    if engagement < 20 and rng.random() < 0.7:
        return 0.0
    base = (engagement / 100) ** 2 * 3.0
    value = base * rng.lognormvariate(0.0, 0.5)
    return round(max(0.0, min(6.0, value)), 2)


def _pick_skus(
    rng: random.Random, count: int, preferred: Sequence[str], preferred_bias: float
) -> list[str]:
    """`count` distinct SKUs, each drawn from a preferred category with `preferred_bias`."""
    chosen: list[str] = []
    attempts = 0
    while len(chosen) < count and attempts < count * 10:
        attempts += 1
        if rng.random() < preferred_bias:
            pool = _SKUS_BY_CATEGORY[rng.choice(preferred)]
        else:
            pool = _ALL_SKUS
        sku = rng.choice(pool)
        if sku not in chosen:
            chosen.append(sku)
    return chosen


def _preferred_categories(rng: random.Random) -> list[str]:
    count = rng.choices((1, 2, 3), weights=(35, 45, 20))[0]
    chosen: list[str] = []
    while len(chosen) < count:
        category = rng.choices(CATEGORIES, weights=_CATEGORY_WEIGHTS)[0]
        if category not in chosen:
            chosen.append(category)
    return chosen


def _contact(seed: int, i: int, now: datetime) -> DemoContact:
    # A private generator per (seed, i): contact i never depends on n or on other contacts.
    # String seeds are hashed with SHA-512 by `random`, so this is stable across processes.
    rng = random.Random(f"tailor-demo:{seed}:{i}")
    first = rng.choice(_FIRST_NAMES)
    last = rng.choice(_LAST_NAMES)
    email = _make_email(rng, first, last, i)
    timezone, locale = rng.choices(_TZ_CHOICES, weights=_TZ_WEIGHTS)[0]
    device = rng.choices(_DEVICES, weights=_DEVICE_WEIGHTS)[0]
    engagement = _engagement(rng)
    last_open_at = _last_open(rng, engagement, now)
    frequency = _purchase_frequency(rng, engagement)
    preferred = _preferred_categories(rng)
    cart: list[str] = []
    if rng.random() < _CART_RATE:
        cart = _pick_skus(rng, rng.randint(1, 3), preferred, preferred_bias=0.75)
    browse_count = rng.choices((0, 1, 2, 3, 4, 5), weights=(20, 18, 20, 18, 14, 10))[0]
    browse = _pick_skus(rng, browse_count, preferred, preferred_bias=0.7)
    consent = rng.random() < _CONSENT_RATE
    return DemoContact(
        email=email,
        first_name=first,
        last_name=last,
        timezone=timezone,
        locale=locale,
        device=device,
        engagement_score=engagement,
        last_open_at=last_open_at,
        purchase_frequency=frequency,
        preferred_categories=preferred,
        cart_items=cart,
        browse_items=browse,
        consent=consent,
    )


def demo_contacts(n: int, *, seed: int = 7, now: datetime) -> Iterator[DemoContact]:
    """Yield `n` synthetic contacts lazily (safe for n = 1_000_000).

    Deterministic for ``(seed, now)``: contact ``i`` is identical whatever ``n`` is. ``now`` must
    be timezone-aware; every ``last_open_at`` is UTC and not after it.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    now_utc = now.astimezone(UTC)
    for i in range(n):
        yield _contact(seed, i, now_utc)


# --------------------------------------------------------------------------------------------
# Tenant and template
# --------------------------------------------------------------------------------------------

DEMO_TENANT: Final[dict[str, str]] = {
    "id": "demo",
    "name": "Northwind Outfitters",
    "from_email": "hello@northwind.example.com",
    "from_name": "Northwind Outfitters",
    "postal_address": (
        "Northwind Outfitters, 500 Market Street, Suite 210, San Francisco, CA 94105, USA"
    ),
}

_SUBJECT: Final = (
    '{% if journey and not cart %}{{ first_name or "there" }}, {{ headline }}'
    '{% elif cart %}{{ first_name or "there" }}, your cart is saved + picks for you'
    '{% else %}{{ first_name or "there" }}, new {{ top_category }} picks for you'
    "{% endif %}"
)

_PREHEADER: Final = (
    "{% if cart %}Everything you left is still waiting, plus a few things we think you'll like."
    "{% else %}Hand-picked {{ top_category }} favourites from {{ tenant_name }}.{% endif %}"
)

# Plain text. The platform converts it to HTML and appends the legal footer (unsubscribe link,
# postal address) itself, so neither belongs here.
_BODY: Final = """\
Hi {{ first_name or "there" }},

{{ headline }}

{{ intro }}
{%- if cart %}

Still thinking it over? We saved your cart:
{% for p in cart %}
- {{ p.name }} ({{ p.price }})
  {{ p.url }}
{%- endfor %}
{%- endif %}
{%- if recommendations %}

{% if cart %}You might also like{% else %}Picked for you{% endif %}:
{% for p in recommendations %}
- {{ p.name }} ({{ p.price }})
  {{ p.url }}
{%- endfor %}
{%- endif %}

{% if tier == "high" -%}
Thank you for being one of our regulars. You get first pick of new {{ top_category }} arrivals.
{%- elif tier == "low" -%}
It's been a while, so we rounded up a few of our favourites to say hello.
{%- else -%}
Fresh {{ top_category }} gear lands every week. Here is what caught our eye.
{%- endif %}

Happy exploring,
The {{ tenant_name }} team
"""

DEMO_TEMPLATE: Final[dict[str, str]] = {
    "name": "seasonal-picks",
    "subject": _SUBJECT,
    "preheader": _PREHEADER,
    "body": _BODY,
    "cta_text": "{{ cta_text_suggestion }}",
    "cta_url": "{{ cta_url_suggestion }}",
}
