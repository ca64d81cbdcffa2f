"""Holdout groups: a random, deterministic control group per campaign or journey.

A contact is in the control group when its bucket for the campaign's salt is below
``fraction · 10,000`` (``BUCKETS``, the A/B slices' resolution: a fraction is honoured to 0.01%).
The bucket is a keyed hash (BLAKE2b) of the salt and the contact id, so membership is
the same in every process, attempt and worker, and needs nothing stored to be decided again.

Why not the A/B slices' ``bucket_of`` (``tailor/store/segments.py``): that hash is linear in the
contact id, ``(id · K + salt) mod 10,000``, which SQL can compute but which makes every salt a
rotation of one ordering. A holdout would then be a contiguous arc of the same order an A/B cell
is cut from: a cell's campaign would hold out all of its people or none, and the control groups
of different campaigns would be shifted copies of each other. A keyed hash is independent per
salt (tested: the control share inside an A/B cell is the fraction, and two campaigns' control
groups overlap by about fraction²).

The salt is the campaign id, except for a journey's emails: each send step has a campaign row of
its own (per step and version), but the unit of a journey's experiment is the journey, so a person
in its control group misses (or gets plain) every email of every version of it. A journey step's
campaign row names its journey in its workflow id pattern (``journey-<tenant>-<key>-*``), the
same for every step and version, and that is the salt.

What the send pipeline does with members (``tailor/sending/pipeline.py``): their send rows carry
``control``; with treatment ``none``, consenting members are marked ``held_out`` and never
claimed, counted against a daily limit or sent; with ``plain``, they get the rules tier's email
and no LLM call is made for them. Consent comes first: a person without it is ``suppressed``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tailor.models import Campaign, CampaignKind, HoldoutTreatment
from tailor.store.segments import BUCKETS


def salt_for(campaign: Campaign) -> str:
    """The salt a campaign's control group is drawn with (its journey's, for a journey email)."""
    if campaign.kind == CampaignKind.JOURNEY:
        return campaign.workflow_id  # journey-<tenant>-<key>-*: one per journey
    return campaign.id


def bucket(salt: str, contact_id: int) -> int:
    """The contact's bucket in [0, BUCKETS) for this salt (the 2⁶⁴ mod 10⁴ bias is < 10⁻¹⁵)."""
    digest = hashlib.blake2b(f"{salt}|{contact_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def in_control(salt: str, contact_id: int, fraction: float) -> bool:
    """Whether the contact is in the control group of ``fraction`` for this salt."""
    return fraction > 0 and bucket(salt, contact_id) < round(fraction * BUCKETS)


@dataclass(frozen=True)
class HoldoutPlan:
    """A campaign's control group: who is in it, and what they get."""

    salt: str
    fraction: float = 0.0
    treatment: HoldoutTreatment = HoldoutTreatment.NONE

    @classmethod
    def of(cls, campaign: Campaign) -> HoldoutPlan:
        return cls(salt_for(campaign), campaign.holdout_fraction,
                   HoldoutTreatment(campaign.holdout_treatment))  # fmt: skip

    @property
    def active(self) -> bool:
        return self.fraction > 0

    def controls(self, contact_ids: Iterable[int]) -> set[int]:
        """These contacts' members of the control group."""
        if not self.active:
            return set()
        return {c for c in contact_ids if in_control(self.salt, c, self.fraction)}

    def withholds(self, contact_id: int) -> bool:
        """The contact is in a control group that is not mailed."""
        return self.treatment == HoldoutTreatment.NONE and bool(self.controls([contact_id]))

    def explain(self, control: bool) -> dict[str, Any]:
        """The holdout's part of "why this email" (or why no email)."""
        share = f"{self.fraction:.2%}".replace(".00%", "%")
        if not control:
            return {"control": False, "fraction": self.fraction,
                    "why": f"in the treatment group; {share} of the audience is held out to "
                           "measure lift"}  # fmt: skip
        if self.treatment == HoldoutTreatment.PLAIN:
            why = (f"in the {share} control group: sent the plain template (rules tier, no AI "
                   "personalisation) to measure the AI's lift")  # fmt: skip
        else:
            why = f"in the {share} control group: deliberately not mailed, to measure lift"
        return {"control": True, "fraction": self.fraction,
                "treatment": self.treatment.value, "why": why}  # fmt: skip
