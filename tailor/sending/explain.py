"""Why this email: every decision behind a send, stored with it, and nothing about the person.

The plan's steps, the template and rules that fired, the guardrail, the exemplars retrieved,
the tier that wrote it (with its evaluation and any review), where the profile came from, the
send time chosen, a journey's step, the control group (holdout) it is or is not in, and the
provider that delivered it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rag.retriever import Retrieval
from tailor.config import Settings
from tailor.models import Contact
from tailor.personalise.context import CampaignContext
from tailor.personalise.generation import ClusterContent
from tailor.personalise.rules import Personalised
from tailor.profiles.loader import Profile
from tailor.send_time import DEFAULT_HOUR, fixed_local_hour


def plan_steps(settings: Settings) -> list[str]:
    """The steps every send of a campaign goes through, in order."""
    tiers = [t for t, on in (("openai", settings.openai_enabled),
                             ("anthropic", settings.anthropic_enabled)) if on]  # fmt: skip
    personalise = "personalise:" + "→".join([*tiers, "rules"])
    steps = ["load_features", personalise]
    if tiers:
        steps.append("evaluate")
    return [*steps, "guardrail", "consent_at_send", "deliver:" + "→".join(settings.providers)]


def why_this_email(
    ctx: CampaignContext,
    steps: list[str],
    content: Personalised,
    written: ClusterContent | None,
    retrieval: Retrieval | None,
    *,
    profile: Profile,
    provider: str,
    now: datetime,
    tracked: bool = False,
    control: bool = False,
) -> dict[str, Any]:
    plain = control or ctx.rules_only  # the LLM tiers were not asked for this email
    if plain:
        steps = [_rules_only(step) for step in steps if step != "evaluate"]
    why: dict[str, Any] = {
        "plan": steps,
        "template_version_id": ctx.version.id,
        "rules": content.rules,
        "guardrail": {
            "consent": "granted: checked atomically with the claim, right before delivery",
            "can_spam": "postal address, unsubscribe link, List-Unsubscribe one-click",
            "subject": "honest: not a fake reply or forward",
        },
        "retrieved_exemplars": retrieval.explain() if retrieval is not None else [],
    }
    if plain:
        why["generator"] = {
            "tier": "rules",
            "why": "the control group gets the plain template" if control
            else "the campaign is written by the rules tier only (generator: rules)",
        }  # fmt: skip
    elif written is None or not written.usable:
        why["generator"] = {"tier": "rules"}
    else:
        source = "cache" if written.evaluation is None else "generated"
        why["generator"] = {
            "tier": written.provider,
            "model": written.model,
            "prompt_version": ctx.prompt_version,
            "source": "review" if written.review is not None else source,
        }
    if written is not None and written.evaluation is not None:
        why["evaluation"] = written.evaluation.as_dict()
    if written is not None and written.review is not None:
        why["review"] = {
            "id": written.review.id,
            "status": written.review.status.value,
            "edited": written.review.edited,
            "sent": "approved content" if written.usable else "rules-tier email instead",
        }
    if ctx.holdout.active:
        why["holdout"] = ctx.holdout.explain(control)
    why["profile"] = profile.explain(now)
    if ctx.send_round is not None:
        why["send_time"] = _send_time(ctx.send_round, profile.contact, ctx.send_time)
    if ctx.explain_extra:
        why.update(ctx.explain_extra)
    why["delivery"] = {"provider": provider}  # after any failover
    # An open pixel and click redirects (off when the tenant or the campaign switched them off).
    why["tracked"] = tracked
    return why


def _rules_only(step: str) -> str:
    return "personalise:rules" if step.startswith("personalise:") else step


def _send_time(send_round: str, contact: Contact, send_time: str) -> dict[str, object]:
    """Why the email went at this hour (send-time optimisation)."""
    hour = contact.best_send_hour if contact.best_send_hour is not None else DEFAULT_HOUR
    fixed = fixed_local_hour(send_time)
    if fixed is not None:
        hour = fixed
        why = f"the campaign goes at {fixed:02d}:00 in each recipient's own timezone"
        if send_round == "sweep":
            why = (
                f"{fixed:02d}:00 local did not come round in the 24 hourly rounds (a clock change)"
            )
    elif send_round == "sweep":
        why = "their best hour did not come round in the 24 hourly rounds (a clock change)"
    elif contact.best_send_hour is not None:
        why = "their best hour, learned daily from when they open email"
    else:
        why = f"no open history yet: the default {DEFAULT_HOUR}:00"
    return {"local_hour": hour, "timezone": contact.timezone, "round_utc": send_round,
            "why": why}  # fmt: skip
