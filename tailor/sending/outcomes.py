"""What became of each send of one attempt, recorded on the send rows in batches.

Accepted sends are flushed every ``SENT_FLUSH_EVERY`` so a killed worker loses little; the rest
(refusals, guardrail failures, deferrals, lost claims) are written once the attempt ends,
whether it ended well or not.
"""

from __future__ import annotations

from tailor.db import Database
from tailor.models import SendStatus
from tailor.observability.metrics import CONSENT, EMAILS, NONE
from tailor.store.consent import suppress_addresses
from tailor.store.sends import Accepted, mark, mark_sent

SENT_FLUSH_EVERY = 100


class Outcomes:
    def __init__(self, db: Database, tenant_id: str) -> None:
        self._db = db
        self.tenant_id = tenant_id
        self.accepted: list[Accepted] = []
        self.refused: list[tuple[int, str]] = []
        self.deferred: list[int] = []
        self.not_claimed: list[int] = []
        self.invalid: list[tuple[int, str]] = []
        self.suppress: list[int] = []  # contacts whose address a provider refused for good

    async def flush_accepted(self) -> None:
        """Record the accepted sends once enough have gathered."""
        if len(self.accepted) >= SENT_FLUSH_EVERY:
            await self.record(final=False)

    async def record(self, *, final: bool = True) -> None:
        accepted, self.accepted = self.accepted, []
        async with self._db.write() as conn:
            await mark_sent(conn, accepted=accepted)
            if not final:
                return
            for send_id, reason in self.refused:
                for from_status in (SendStatus.DISPATCHED, SendStatus.PENDING):
                    await mark(conn, send_ids=[send_id], status=SendStatus.FAILED,
                               from_status=from_status, error=reason)  # fmt: skip
            await suppress_addresses(
                conn, tenant_id=self.tenant_id, contact_ids=self.suppress, source="hard-bounce"
            )
            for send_id, reason in self.invalid:
                await mark(conn, send_ids=[send_id], status=SendStatus.FAILED,
                           from_status=SendStatus.PENDING, error=reason)  # fmt: skip
            # The server said "not now" after the claim: nothing was accepted, so it may go again.
            await mark(conn, send_ids=self.deferred, status=SendStatus.PENDING,
                       from_status=SendStatus.DISPATCHED)  # fmt: skip
            # The claim refused: consent was revoked in the meantime (a send another attempt
            # claimed is no longer pending, so this leaves it alone).
            await mark(conn, send_ids=self.not_claimed, status=SendStatus.SUPPRESSED,
                       from_status=SendStatus.PENDING,
                       error="consent revoked before delivery")  # fmt: skip
        # Counted once the rows are: a record that fails is retried with the attempt.
        failed = len(self.refused) + len(self.invalid)
        if failed:
            EMAILS.labels(self.tenant_id, NONE, NONE, "failed").inc(failed)
        if self.not_claimed:
            EMAILS.labels(self.tenant_id, NONE, NONE, "suppressed").inc(len(self.not_claimed))
            CONSENT.labels(self.tenant_id, "rejected").inc(len(self.not_claimed))
