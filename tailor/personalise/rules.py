"""The rule-based executor: personalises subject, preheader, body and CTA from features.

It is the always-available tier of the executor (LLM tiers build on it). Templates are Jinja2 in
a sandbox, so a template author cannot reach Python internals; the rules decide the headline,
intro and call to action from the recipient's cart, engagement tier and favourite category.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from jinja2 import StrictUndefined, TemplateError

from tailor.models import Contact, Product, TemplateVersion
from tailor.personalise.sandbox import TemplateSandbox

HIGH_ENGAGEMENT = 70
LOW_ENGAGEMENT = 30
DORMANT_AFTER = timedelta(days=60)


@dataclass(frozen=True)
class ProductView:
    name: str
    price: str
    url: str
    category: str


@dataclass(frozen=True)
class Personalised:
    subject: str
    preheader: str
    body: str
    cta_text: str
    cta_url: str
    rules: list[str] = field(default_factory=list)  # which rules fired, for "why this email"
    # Allow-listed HTML for bodies Tailor did not write (LLM, reviewer); None: escape ``body``.
    body_html: str | None = None


@dataclass(frozen=True)
class ExemplarHint:
    """What the rules tier borrows from the top retrieved exemplar."""

    id: str
    cta: str


# Journey emails: (headline, intro, call to action, path under the shop) per goal. The cart
# reminder is the cart rule below; milestone copy is picked by the occasion ("milestone:birthday").
JOURNEY_COPY: dict[str, tuple[str, str, str, str]] = {
    "welcome_1": ("welcome, we're glad you're here",
                  "Thanks for joining us. Here is a first look at our {category} picks.",
                  "Start exploring", "/c/{category}"),
    "welcome_2": ("the {category} picks our regulars love",
                  "A few days in, here is what people like you buy most in {category}.",
                  "See the favourites", "/c/{category}"),
    "welcome_3": ("one last tip to get you started",
                  "Tell us what you like and every email gets more useful. Start with {category}.",
                  "Set your preferences", "/account/preferences"),
    "re_engagement_1": ("we miss you",
                        "It's been a while. Here is what's new in {category} lately.",
                        "See what's new", "/c/{category}"),
    "re_engagement_2": ("should we keep writing?",
                        "We only want to send what you read. One click keeps you on the list.",
                        "Keep me subscribed", "/account/preferences"),
    "milestone": ("a little thank-you from us",
                  "Thanks for being with us. Here are some {category} picks to celebrate.",
                  "Celebrate with us", "/c/{category}"),
    "milestone:birthday": ("happy birthday",
                           "Happy birthday from all of us. We picked a few {category} treats.",
                           "Pick your treat", "/c/{category}"),
    "milestone:anniversary": ("happy anniversary",
                              "A year ago today you joined us. Thank you for being here.",
                              "See what's new", "/c/{category}"),
    "milestone:nth_order": ("thank you for another order",
                            "You keep coming back, and we notice. Here are {category} picks.",
                            "Shop {category}", "/c/{category}"),
}  # fmt: skip


class TemplateRenderError(ValueError):
    """A template that cannot render for a recipient; fixing it needs a new template version."""


# A link the model or a profile field might carry; the system alone puts links in emails.
URL = re.compile(r"(https?://|www\.)\S+", re.IGNORECASE)
_URLISH = re.compile(r"(https?://|www\.)\S+|\S+\.(com|net|org|io|example)\S*", re.IGNORECASE)
_NAME_CHARS = re.compile(r"[^\w\s'.-]", re.UNICODE)


def safe_name(value: str | None) -> str | None:
    """A profile name as it may appear in an email. Profile fields are untrusted input: no
    links, no markup or symbols, at most 40 characters."""
    if not value:
        return None
    cleaned = " ".join(_NAME_CHARS.sub(" ", _URLISH.sub(" ", value)).split())[:40].strip()
    return cleaned or None


def _money(cents: int) -> str:
    return f"${cents / 100:,.2f}"


def engagement_tier(contact: Contact, now: datetime) -> str:
    dormant = contact.last_open_at is None or now - contact.last_open_at > DORMANT_AFTER
    if contact.engagement_score < LOW_ENGAGEMENT or dormant:
        return "low"
    return "high" if contact.engagement_score >= HIGH_ENGAGEMENT else "mid"


class Catalog:
    """A tenant's products, indexed for the rules."""

    def __init__(self, products: list[Product], shop_url: str) -> None:
        self.by_sku = {p.sku: p for p in products}
        self.by_category: dict[str, list[Product]] = {}
        for product in sorted(products, key=lambda p: p.price_cents, reverse=True):
            self.by_category.setdefault(product.category, []).append(product)
        self.shop_url = shop_url.rstrip("/")

    def top_category(self, contact: Contact) -> str:
        """The contact's first preferred category the catalog carries, else the catalog's first."""
        return next(
            (c for c in contact.preferred_categories if c in self.by_category),
            next(iter(self.by_category), "new arrivals"),
        )

    def view(self, product: Product) -> ProductView:
        return ProductView(product.name, _money(product.price_cents), product.url, product.category)


class RuleBasedExecutor:
    def __init__(self) -> None:
        self._env = TemplateSandbox(undefined=StrictUndefined, autoescape=False)
        self._compiled: dict[tuple[int, str], object] = {}

    def _render(self, version: TemplateVersion, part: str, context: dict[str, object]) -> str:
        key = (version.id or 0, part)
        try:
            template = self._compiled.get(key)
            if template is None:
                template = self._env.from_string(getattr(version, part))
                self._compiled[key] = template
            return template.render(context).strip()  # type: ignore[attr-defined, no-any-return]
        except TemplateError as exc:  # a sandbox refusal (SecurityError) is one too
            raise TemplateRenderError(f"template {part}: {exc}") from exc
        except (ArithmeticError, LookupError, TypeError, ValueError) as exc:
            # A template is code its author wrote: ``{{ 1 / 0 }}`` fails like a bad variable.
            raise TemplateRenderError(f"template {part}: {type(exc).__name__}: {exc}") from exc

    def personalise(
        self,
        *,
        contact: Contact,
        version: TemplateVersion,
        catalog: Catalog,
        tenant_name: str,
        now: datetime,
        exemplar: ExemplarHint | None = None,
        goal: str | None = None,
    ) -> Personalised:
        """``goal``: a journey email's goal (``JOURNEY_COPY``); None for batch campaigns."""
        rules: list[str] = []
        tier = engagement_tier(contact, now)
        cart = [catalog.view(catalog.by_sku[s]) for s in contact.cart_items if s in catalog.by_sku]
        top_category = catalog.top_category(contact)
        seen = set(contact.cart_items)
        recommendations = [
            catalog.view(p) for p in catalog.by_category.get(top_category, []) if p.sku not in seen
        ][:3]

        if cart:
            rules.append("cart:remind")
            headline = f"your {cart[0].name} is still waiting"
            intro = (
                f"You left {len(cart)} item{'s' if len(cart) > 1 else ''} in your cart."
                " We saved it for you."
            )
            cta_text, cta_url = "Return to your cart", f"{catalog.shop_url}/cart"
        elif tier == "low":
            rules.append("tier:low:win-back")
            headline = "we saved some favourites for you"
            intro = (
                f"It's been a while. Here is what's new in {top_category} since your last visit."
            )
            cta_text, cta_url = "See what's new", f"{catalog.shop_url}/c/{top_category}"
        elif tier == "high":
            rules.append("tier:high:early-access")
            headline = f"early access to new {top_category} picks"
            intro = f"As one of our regulars, you see our new {top_category} picks first."
            cta_text, cta_url = f"Shop {top_category}", f"{catalog.shop_url}/c/{top_category}"
        else:
            rules.append("tier:mid:category")
            headline = f"{top_category} picks chosen for you"
            intro = f"Based on what you like, we think these {top_category} picks fit."
            cta_text, cta_url = f"Shop {top_category}", f"{catalog.shop_url}/c/{top_category}"
        copy = JOURNEY_COPY.get(goal or "") if not (cart and goal == "cart_reminder") else None
        if copy is not None:
            rules.append(f"journey:{goal}")
            headline, intro, cta_text, path = (part.format(category=top_category) for part in copy)
            cta_url = f"{catalog.shop_url}{path}"
        rules.append(f"category:{top_category}")
        if exemplar is not None and exemplar.cta:
            # Proven phrasing from a retrieved exemplar written for the same goal.
            cta_text = exemplar.cta
            rules.append(f"exemplar:{exemplar.id}:cta")
        if contact.device == "mobile":
            rules.append("device:mobile:short")
            recommendations = recommendations[:2]

        context: dict[str, object] = {
            "first_name": safe_name(contact.first_name),
            "headline": headline,
            "intro": intro,
            "tier": tier,
            "top_category": top_category,
            "cart": cart,
            "recommendations": recommendations,
            "cta_text_suggestion": cta_text,
            "cta_url_suggestion": cta_url,
            "tenant_name": tenant_name,
            "journey": goal,  # a journey email's goal; None in a batch campaign
        }
        return Personalised(
            subject=" ".join(self._render(version, "subject", context).split()),
            preheader=" ".join(self._render(version, "preheader", context).split()),
            body=self._render(version, "body", context),
            cta_text=self._render(version, "cta_text", context),
            cta_url=self._render(version, "cta_url", context),
            rules=rules,
        )

    def check_template(self, version: TemplateVersion) -> None:
        """Compile every part, so a broken template is refused before any campaign uses it."""
        for part in ("subject", "preheader", "body", "cta_text", "cta_url"):
            try:
                self._env.from_string(getattr(version, part))
            except TemplateError as exc:
                raise TemplateRenderError(f"{part}: {exc}") from exc
