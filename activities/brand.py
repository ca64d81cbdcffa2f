"""Brand compliance for generated content: the tenant's banned phrases, subject length, and
common spam triggers that hurt deliverability. The tenant's required disclaimer is not checked
here: the guardrail adds it to every email's footer, whoever wrote the email."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tailor.llm.prompts import GeneratedEmail

# Phrases spam filters weigh heavily; a tenant can add its own banned phrases on top.
SPAM_TRIGGERS = (
    "act now",
    "100% free",
    "risk-free",
    "no strings attached",
    "click here",
    "winner",
    "you have been selected",
    "guaranteed",
    "cash bonus",
    "limited time only",
)


class BrandPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    banned_phrases: list[str] = Field(default_factory=list)
    required_disclaimer: str | None = None
    max_subject_length: int = Field(80, ge=10, le=200)

    @classmethod
    def of(cls, raw: dict[str, Any] | None) -> BrandPolicy:
        return cls.model_validate(raw or {})


def _contains(text: str, phrase: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(phrase.lower())}(?!\w)", text) is not None


def brand_violations(email: GeneratedEmail, policy: BrandPolicy) -> list[str]:
    text = " ".join([email.subject, email.preheader, email.body, email.cta_text]).lower()
    found = [f"banned phrase {p!r}" for p in policy.banned_phrases if _contains(text, p)]
    found += [f"spam trigger {p!r}" for p in SPAM_TRIGGERS if _contains(text, p)]
    if len(email.subject) > policy.max_subject_length:
        found.append(f"subject longer than {policy.max_subject_length} characters")
    return found
