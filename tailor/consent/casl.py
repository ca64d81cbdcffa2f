"""Canada's anti-spam law (CASL): implied consent lasts only so long.

Consent implied by an existing business relationship lapses two years after the purchase, and
six months after an inquiry, unless express consent is recorded in the meantime. A ledger row
says which it is by its ``method``: ``implied-purchase`` or ``implied-inquiry`` (recorded when
the purchase or inquiry happened; a newer one renews it). Express consent is any other grant.
"""

from __future__ import annotations

from datetime import datetime, timedelta

IMPLIED_FOR: dict[str, timedelta] = {
    "implied-purchase": timedelta(days=730),
    "implied-inquiry": timedelta(days=183),
}
# The method of the revocation written when implied consent lapses.
LAPSED = "casl-lapsed"


def lapses_at(status: str, method: str, recorded_at: datetime) -> datetime | None:
    """When a contact whose newest ledger row this is stops consenting; None: not by itself."""
    window = IMPLIED_FOR.get(method)
    if status != "granted" or window is None:
        return None
    return recorded_at + window
