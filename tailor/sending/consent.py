"""Consent, checked twice before an email leaves: here in bulk, and atomically at the claim.

1. ``screen`` (here), before personalising: the chunk's pending sends whose contact's newest
   consent-ledger row is not ``granted``, is implied consent that has lapsed (CASL:
   ``tailor.consent.casl``; the daily job records the lapse in the ledger), or whose consent was
   revoked during the campaign (the workflow forwards revocations), are marked ``suppressed``
   and never personalised.
2. The claim, right before a provider can accept the message: one statement moves a send from
   ``pending`` to ``dispatched`` only if the contact's newest ledger row is still ``granted``
   (``tailor.store.sends.claim_for_dispatch``, group-committed by
   ``tailor/delivery/claims.py``). A revocation committed before the claim always stops it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tailor.db import Database
from tailor.models import SendStatus, utcnow
from tailor.store.consent import newest_rows
from tailor.store.sends import SendRow, mark, sends_for


@dataclass(frozen=True)
class Screened:
    pending: list[SendRow]  # consenting: personalise and deliver these
    settled: int  # sends an earlier attempt already finished (sent, failed, suppressed, held)
    suppressed: int = 0  # pending sends this screen suppressed (no consent, or revoked)


async def screen(
    db: Database,
    *,
    campaign_id: str,
    contact_ids: Sequence[int],
    revoked_contact_ids: Sequence[int],
    occurrence: str = "",
) -> Screened:
    """Suppress these contacts' pending sends that lack consent; return the rest."""
    async with db.read() as conn:
        sends = await sends_for(
            conn, campaign_id=campaign_id, contact_ids=contact_ids, occurrence=occurrence
        )
        pending = [s for s in sends if s.status == SendStatus.PENDING]
        newest = await newest_rows(conn, contact_ids=(s.contact_id for s in pending))
    revoked = set(revoked_contact_ids)
    now = utcnow()
    refused = {
        s.id
        for s in pending
        if not ((row := newest.get(s.contact_id)) and row.consenting(now))
        or s.contact_id in revoked
    }
    if refused:
        async with db.write() as conn:
            await mark(
                conn,
                send_ids=refused,
                status=SendStatus.SUPPRESSED,
                from_status=SendStatus.PENDING,
                error="no consent at send time",
            )
    return Screened(
        [s for s in pending if s.id not in refused], len(sends) - len(pending), len(refused)
    )
