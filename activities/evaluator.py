"""The evaluator: scores LLM-written content and checks its facts before anyone receives it.

- **Facts** (hallucination checks): every price must be the catalog price of a product the
  prompt was given; the model may not write links (the system adds them); no date in the past.
- **Quality** (0-1): shape heuristics — length, subject, the reader's name, no shouting.
- **Relevance** (0-1): does it talk about the cluster's category or products. Embedding
  similarity replaces this once retrieval (rag/) provides embeddings.

Content with a fact violation or relevance < 0.6 is regenerated once with another prompt
version; quality < 0.7 is not sent by the LLM tier either (until the review queue exists, the
cluster gets the rules tier). Every verdict is kept for "why this email".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime

from activities.executor import URL
from tailor.llm.prompts import ClusterRequest, GeneratedEmail

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
    violations: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return (
            not self.violations and self.quality >= MIN_QUALITY and self.relevance >= MIN_RELEVANCE
        )

    def verdict(self) -> str:
        if self.violations:
            return "blocked: " + "; ".join(self.violations)
        if self.relevance < MIN_RELEVANCE:
            return f"rejected: relevance {self.relevance:.2f}"
        if self.quality < MIN_QUALITY:
            return f"needs review: quality {self.quality:.2f}"
        return "passed"


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
