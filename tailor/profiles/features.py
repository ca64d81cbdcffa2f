"""Real-time contact features: what one new event changes on its contact.

Applied by ``tailor.store.events`` in the transaction that stores the event, and only for events
that were not stored before, so a redelivery never counts twice. Timestamps only move forward: a
late, older event never moves ``last_open_at`` (or a click, or a purchase) back. Malformed
values (an unknown device type, a time zone that does not exist, a name too long for its column)
are skipped: the event itself is still stored as sent.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tailor.models import Contact

MAX_CART = 100  # as many SKUs as the contacts API accepts

Handler = Callable[[Contact, Mapping[str, Any], datetime], None]
Parser = Callable[[Any], Any]

# Segment's device types (and ours) onto the device a contact reads email on.
_DEVICES = {
    "mobile": "mobile",
    "ios": "mobile",
    "android": "mobile",
    "tablet": "tablet",
    "desktop": "desktop",
}
_BIRTHDAY = re.compile(r"(?:\d{4}-)?(\d{2})-(\d{2})")


def apply_event(
    contact: Contact,
    *,
    name: str,
    properties: Mapping[str, Any],
    context: Mapping[str, Any],
    occurred_at: datetime,
) -> bool:
    """Update ``contact`` from one new event (an identify is named ``identify`` and its
    properties are its traits); returns whether anything changed."""
    before = contact.model_dump()
    handler = _HANDLERS.get(name)
    if handler is not None:
        handler(contact, properties, occurred_at)
    _context(contact, context)
    return contact.model_dump() != before


def _latest(column: str) -> Handler:
    def handle(contact: Contact, _: Mapping[str, Any], at: datetime) -> None:
        current: datetime | None = getattr(contact, column)
        if current is None or at > current:
            setattr(contact, column, at)

    return handle


def _order_completed(contact: Contact, _: Mapping[str, Any], at: datetime) -> None:
    contact.order_count += 1
    # A late, older order must not empty a cart filled since the newest one.
    if contact.last_purchase_at is None or at >= contact.last_purchase_at:
        contact.last_purchase_at = at
        contact.cart_items = []


def _sku(item: Mapping[str, Any]) -> str | None:
    value = item.get("sku", item.get("product_id"))
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        return None
    return str(value)


def _cart_add(contact: Contact, properties: Mapping[str, Any], _: datetime) -> None:
    sku = _sku(properties)
    if sku is not None and sku not in contact.cart_items:
        # A new list, not append: the JSON column only notices assignment.
        contact.cart_items = [*contact.cart_items, sku][-MAX_CART:]


def _cart_remove(contact: Contact, properties: Mapping[str, Any], _: datetime) -> None:
    sku = _sku(properties)
    if sku is not None and sku in contact.cart_items:
        contact.cart_items = [s for s in contact.cart_items if s != sku]


def _cart_replace(contact: Contact, properties: Mapping[str, Any], _: datetime) -> None:
    products = properties.get("products")
    if not isinstance(products, list):
        return
    skus = [_sku(p) for p in products if isinstance(p, Mapping)]
    contact.cart_items = list(dict.fromkeys(s for s in skus if s is not None))[-MAX_CART:]


def _text(limit: int) -> Parser:
    def parse(value: Any) -> str | None:
        if not isinstance(value, str) or not value.strip() or len(value.strip()) > limit:
            return None
        return value.strip()

    return parse


def _timezone(value: Any) -> str | None:
    name: str | None = _text(64)(value)
    if name is None:
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return name


def _birthday(value: Any) -> str | None:
    match = _BIRTHDAY.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        return None
    month, day = int(match[1]), int(match[2])
    try:
        date(2000, month, day)  # a leap year, so 02-29 is a birthday
    except ValueError:
        return None
    return f"{month:02d}-{day:02d}"


def _device(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return _DEVICES.get(value.strip().lower())


# Identify traits (Segment's spelling first) onto contact columns. The email is not here: it
# identifies the contact (``tailor.store.events``) rather than describing it.
_TRAITS: tuple[tuple[tuple[str, ...], str, Parser], ...] = (
    (("firstName", "first_name"), "first_name", _text(100)),
    (("lastName", "last_name"), "last_name", _text(100)),
    (("timezone",), "timezone", _timezone),
    (("birthday",), "birthday", _birthday),
    (("language", "locale"), "locale", _text(16)),
)


def _identify(contact: Contact, traits: Mapping[str, Any], _: datetime) -> None:
    for keys, column, parse in _TRAITS:
        for key in keys:
            value = parse(traits.get(key))
            if value is not None:
                setattr(contact, column, value)
                break


def device_of(context: Mapping[str, Any]) -> str | None:
    """The device type an event's context names (mobile, tablet or desktop), if any."""
    device = context.get("device")
    return _device(device.get("type")) if isinstance(device, Mapping) else None


def timezone_of(context: Mapping[str, Any]) -> str | None:
    """The valid IANA timezone an event's context names, if any."""
    return _timezone(context.get("timezone"))


def _context(contact: Contact, context: Mapping[str, Any]) -> None:
    device = context.get("device")
    if isinstance(device, Mapping) and (kind := _device(device.get("type"))) is not None:
        contact.device = kind
    if (zone := _timezone(context.get("timezone"))) is not None:
        contact.timezone = zone


_HANDLERS: dict[str, Handler] = {
    "email.opened": _latest("last_open_at"),
    "email.clicked": _latest("last_click_at"),
    "order.completed": _order_completed,
    "product.added": _cart_add,
    "product.removed": _cart_remove,
    "cart.updated": _cart_replace,
    "cart.abandoned": _cart_replace,
    "identify": _identify,
}
