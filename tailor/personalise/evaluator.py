"""The evaluator: scores LLM-written content and checks its facts before anyone receives it.

- **Facts** (hallucination checks): every price must be the catalog price of a product the
  prompt was given; the model may not write links (the system adds them); no date in the past.
- **Quality** (0-1): shape heuristics — length, subject, the reader's name, no shouting.
- **Relevance** (0-1): does it talk about the cluster's category or products. Embedding
  similarity replaces this once retrieval (rag/) provides embeddings.

Content with a fact violation or relevance < 0.6 is regenerated once with another prompt
version, then replaced by the rules tier. Quality < 0.7 or a broken brand rule is regenerated
once too, then goes to the human review queue. Every verdict is kept for "why this email".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime

from tailor.personalise.prompts import ClusterRequest, GeneratedEmail, ProductFact
from tailor.personalise.rules import URL

MIN_QUALITY = 0.7
MIN_RELEVANCE = 0.6

_PRICE = re.compile(r"\$\s?(\d{1,3}(?:,\d{3})*(?:\.\d{2})?)")
_ISO_DATE = re.compile(r"\b(20\d{2})-(\d{2})-(\d{2})\b")
_MONTHS = "january february march april may june july august september october november december"
_LONG_DATE = re.compile(
    r"\b(" + "|".join(_MONTHS.split()) + r")\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(20\d{2})\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Evaluation:
    quality: float
    relevance: float
    violations: list[str] = field(default_factory=list)  # facts: never sent, never reviewed
    brand: list[str] = field(default_factory=list)  # brand rules: a person may approve

    @property
    def passed(self) -> bool:
        return (
            not self.brand
            and not self.violations
            and self.quality >= MIN_QUALITY
            and (self.relevance >= MIN_RELEVANCE)
        )

    @property
    def needs_review(self) -> bool:
        """Factually sound and on topic, but below the quality bar or off-brand: a person
        decides, rather than the rules tier silently replacing it."""
        return not self.passed and not self.violations and self.relevance >= MIN_RELEVANCE

    @property
    def outcome(self) -> str:
        """passed, review (a person decides) or rejected (wrong facts or off topic)."""
        if self.passed:
            return "passed"
        return "review" if self.needs_review else "rejected"

    def verdict(self) -> str:
        if self.violations:
            return "blocked: " + "; ".join(self.violations)
        if self.relevance < MIN_RELEVANCE:
            return f"rejected: relevance {self.relevance:.2f}"
        reasons = [f"quality {self.quality:.2f}"] if self.quality < MIN_QUALITY else []
        reasons += self.brand
        if reasons:
            return "needs review: " + "; ".join(reasons)
        return "passed"

    def as_dict(self) -> dict[str, object]:
        return {
            "quality": self.quality,
            "relevance": self.relevance,
            "violations": self.violations,
            "brand": self.brand,
            "verdict": self.verdict(),
        }


def _dates(text: str) -> list[date]:
    found: list[date] = []
    for year, month, day in _ISO_DATE.findall(text):
        try:
            found.append(date(int(year), int(month), int(day)))
        except ValueError:
            continue
    months = _MONTHS.split()
    for month, day, year in _LONG_DATE.findall(text):
        try:
            found.append(date(int(year), months.index(month.lower()) + 1, int(day)))
        except ValueError:
            continue
    return found


def check_facts(email: GeneratedEmail, request: ClusterRequest, now: datetime) -> list[str]:
    text = "\n".join([email.subject, email.preheader, email.body, email.cta_text])
    known = {p.price.lstrip("$").strip() for p in [*request.cart, *request.recommendations]}
    violations = [
        f"price ${price} is not a catalog price"
        for price in _PRICE.findall(text)
        if price not in known and f"{price}.00" not in known
    ]
    if URL.search(text):
        violations.append("the model wrote a link")
    violations += [f"date {d.isoformat()} is in the past" for d in _dates(text) if d < now.date()]
    return violations


def quality_score(email: GeneratedEmail) -> float:
    score = 1.0
    words = len(email.body.split())
    if words < 20 or words > 250:
        score -= 0.3
    if len(email.subject) > 80:
        score -= 0.2
    if "{{first_name}}" not in email.subject + email.body:
        score -= 0.1
    letters = [c for c in email.subject if c.isalpha()]
    if letters and sum(c.isupper() for c in letters) / len(letters) > 0.5:
        score -= 0.3  # shouting
    if (email.subject + email.body).count("!") > 3:
        score -= 0.2
    return max(score, 0.0)


def relevance_score(email: GeneratedEmail, request: ClusterRequest) -> float:
    text = f"{email.subject} {email.body}".lower()
    products = [p.name.lower() for p in request.recommendations]
    score = 0.4
    if request.top_category.lower() in text:
        score += 0.3
    if any(name.split(",")[0] in text for name in products):
        score += 0.3
    if "{{cart_item}}" in text:
        score += 0.3
    return min(score, 1.0)


def evaluate(email: GeneratedEmail, request: ClusterRequest, now: datetime) -> Evaluation:
    return Evaluation(
        quality=quality_score(email),
        relevance=relevance_score(email, request),
        violations=check_facts(email, request, now),
    )


_ALLOWED_PLACEHOLDERS = {"first_name", "cart_item"}
_ANY_PLACEHOLDER = re.compile(r"\{\{\s*(\w*)\s*\}\}")


def check_edit(email: GeneratedEmail, prices: list[ProductFact], now: datetime) -> list[str]:
    """What a reviewer's edit may not do either: prices outside the tenant's catalog, links
    (the system adds them), past dates, placeholders the system cannot fill. Brand rules are
    the reviewer's call: approving is how an exception is made."""
    request = ClusterRequest("", "", "", "", "", "", recommendations=prices)
    problems = check_facts(email, request, now)
    text = "\n".join([email.subject, email.preheader, email.body, email.cta_text])
    unknown = sorted(set(_ANY_PLACEHOLDER.findall(text)) - _ALLOWED_PLACEHOLDERS)
    problems += [f"unknown placeholder {{{{{name}}}}}" for name in unknown]
    return problems
