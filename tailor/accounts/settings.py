"""A tenant's settings changed by name: only the fields a caller names, each checked, and the
names of what actually changed for the audit log.

The brand policy merges key by key (a PATCH of ``{"tone": "formal"}`` keeps the banned phrases)
and the merged policy must pass ``BrandPolicy`` as a whole, since that is what generation reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import ValidationError

from tailor.errors import InvalidInput
from tailor.models import Tenant
from tailor.personalise.brand import BrandPolicy

#: The tenant's columns a settings change may write.
SETTINGS: Final = frozenset({"postal_address", "from_name", "from_email", "timezone",
                             "brand_policy", "daily_email_limit", "llm_daily_budget_usd",
                             "tracking_enabled", "attribution_click_hours",
                             "attribution_open_hours", "pause_complaint_rate",
                             "pause_bounce_rate", "pause_min_sent"})  # fmt: skip


@dataclass(frozen=True)
class SettingsChange:
    values: dict[str, Any] = field(default_factory=dict)  # column -> new value
    changed: list[str] = field(default_factory=list)  # names, brand policy keys as brand_policy.x


def settings_change(tenant: Tenant, requested: Mapping[str, Any]) -> SettingsChange:
    """What writing ``requested`` (already checked field by field) changes on ``tenant``.
    Raises InvalidInput naming the field for a brand policy that does not hold together."""
    unknown = set(requested) - SETTINGS
    if unknown:
        raise InvalidInput(sorted(unknown)[0], "not a tenant setting")
    values: dict[str, Any] = {}
    changed: list[str] = []
    for name, value in requested.items():
        if name == "brand_policy":
            policy, keys = _merged_policy(tenant.brand_policy, value)
            if keys:
                values[name] = policy
                changed += [f"brand_policy.{k}" for k in keys]
        elif getattr(tenant, name) != value:
            values[name] = value
            changed.append(name)
    return SettingsChange(values=values, changed=sorted(changed))


def _merged_policy(
    current: Mapping[str, Any], patch: Mapping[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    merged = {**current, **patch}
    try:
        BrandPolicy.of(merged)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise InvalidInput(f"brand_policy.{where}", error["msg"]) from exc
    after = BrandPolicy.of(merged)
    try:
        before = BrandPolicy.of(dict(current))
    except ValidationError:  # a policy stored before it was checked: every key named changes
        return merged, list(patch)
    # Compared by effective value: naming the default explicitly changes nothing.
    return merged, [k for k in patch if getattr(before, k) != getattr(after, k)]
