"""Brand compliance for generated content: the tenant's banned phrases, tone, subject length,
and common spam triggers that hurt deliverability. A violation sends the content to human review
(a person may approve an exception). The tenant's required disclaimer is not checked here: the
guardrail adds it to every email's footer, whoever wrote the email."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tailor.personalise.prompts import GeneratedEmail

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
# Pressure that no tone of ours allows; a formal brand also rules out casual words.
PRESSURE = ("hurry", "last chance", "don't miss out", "before it's too late", "you must",
            "only today", "final warning")  # fmt: skip
CASUAL = ("gonna", "wanna", "gotta", "hey", "awesome", "super cool", "lol", "omg", "y'all",
          "yay", "woohoo", "folks")  # fmt: skip
MAX_EXCLAMATIONS = 2
_SHOUTED = re.compile(r"\b[A-Z]{4,}\b")
_EMOJI = re.compile("[\U0001f300-\U0001faff\u2600-\u27bf]")


class BrandPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    banned_phrases: list[str] = Field(default_factory=list)
    required_disclaimer: str | None = None
    max_subject_length: int = Field(80, ge=10, le=200)
    tone: Literal["friendly", "formal"] = "friendly"

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
    return found + tone_violations(email, policy.tone)


def tone_violations(email: GeneratedEmail, tone: str) -> list[str]:
    raw = " ".join([email.subject, email.preheader, email.body, email.cta_text])
    text = raw.lower()
    found = [f"tone: pressure {p!r}" for p in PRESSURE if _contains(text, p)]
    shouted = _SHOUTED.findall(raw)
    if len(shouted) >= 2:
        found.append(f"tone: shouting ({', '.join(shouted[:3])})")
    if raw.count("!") > MAX_EXCLAMATIONS:
        found.append(f"tone: {raw.count('!')} exclamation marks")
    if tone == "formal":
        found += [f"tone: {w!r} is too casual for a formal brand" for w in CASUAL
                  if _contains(text, w)]  # fmt: skip
        if _EMOJI.search(raw):
            found.append("tone: emoji in a formal brand's email")
    return found
