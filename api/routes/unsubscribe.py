"""Recipient-facing unsubscribe: RFC 8058 one-click POST, and a confirmation page for humans.

GET never unsubscribes: link scanners and mail previews fetch links on their own.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from fastapi.responses import HTMLResponse

from api.deps import GatewayDep, SessionDep, SettingsDep
from tailor.journeys.definitions import journey_workflow_id
from tailor.models import utcnow
from tailor.outbound import publish, unsubscribe_event
from tailor.sending.unsubscribe import verify_unsubscribe_token
from tailor.store.campaigns import active_campaign_ids, get_campaign
from tailor.store.consent import revoke_consent
from tailor.store.journeys import journey_keys
from tailor.store.rollups import count_firsts
from tailor.store.sends import latest_sent

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/unsubscribe", tags=["unsubscribe"])
# <campaign id>.<contact id>.<32 hex>: well under 200 characters.
Token = Annotated[str, Path(min_length=1, max_length=200)]


@router.get("/{token}", response_class=HTMLResponse)
async def confirm_page(token: Token, settings: SettingsDep) -> str:
    if verify_unsubscribe_token(settings.unsubscribe_secret, token) is None:
        raise HTTPException(404, "unknown unsubscribe link")
    return (
        "<!doctype html><html><body><h1>Unsubscribe</h1>"
        "<p>Stop receiving these emails?</p>"
        f'<form method="post" action="/v1/unsubscribe/{token}">'
        '<button type="submit">Unsubscribe</button></form></body></html>'
    )


@router.post("/{token}")
async def one_click(
    token: Token, session: SessionDep, settings: SettingsDep, gateway: GatewayDep
) -> dict[str, str]:
    parsed = verify_unsubscribe_token(settings.unsubscribe_secret, token)
    if parsed is None:
        raise HTTPException(404, "unknown unsubscribe link")
    campaign_id, contact_id = parsed
    campaign = await get_campaign(session=session, campaign_id=campaign_id)
    # Ordered with claims as the API's revocation is: none succeeds after this commits.
    await revoke_consent(
        session=session,
        tenant_id=campaign.tenant_id,
        contact_id=contact_id,
        source=f"unsubscribe-link:{campaign_id}",
        method="one-click",
        wording_version="list-unsubscribe",
        recorded_by="recipient",
    )
    # In the same transaction: the report counts it against the email whose link it was (once
    # per email), and the tenant's webhooks hear of it.
    conn, now = await session.connection(), utcnow()
    send_id = await latest_sent(conn, campaign_id=campaign_id, contact_id=contact_id)
    if send_id is not None:
        await count_firsts(conn, firsts=[("unsubscribe", send_id, now)])
    await publish(conn, [unsubscribe_event(
        tenant_id=campaign.tenant_id, campaign_id=campaign_id, contact_id=contact_id,
        occurred_at=now)])  # fmt: skip
    campaigns = await active_campaign_ids(session=session, tenant_id=campaign.tenant_id)
    # Every journey the person may be on, by its deterministic id (one that is not running
    # is simply not reached).
    journeys = [
        journey_workflow_id(campaign.tenant_id, key, contact_id)
        for key in await journey_keys(session, tenant_id=campaign.tenant_id)
    ]
    await session.commit()
    try:
        control = await gateway.control()
        journey_control = await gateway.journeys()
    except HTTPException:
        log.warning("Temporal unreachable; unsubscribe enforced by the ledger alone")
    else:
        await control.revoke_consent(campaigns, contact_id)
        await journey_control.revoke_consent(journeys)
    return {"status": "unsubscribed"}
