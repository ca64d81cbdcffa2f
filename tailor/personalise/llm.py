"""The LLM tiers of the executor: OpenAI, then Anthropic, then (by the caller) the rules.

The official clients are built with ``max_retries=0``: Temporal owns retries, so every attempt is
visible in history. A provider that times out, answers 5xx, cannot be reached, or returns
something that is not valid JSON for the schema hands over to the next tier. When every tier
that was tried answered 429, the quota is exhausted: ``LlmQuotaExhausted`` asks the caller to
defer instead of falling back, because the rules tier is a fallback for failures, not for load.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import anthropic
import openai
from pydantic import ValidationError

from tailor.config import Settings
from tailor.observability.metrics import AGENT_RUNS, LLM_REQUESTS, WRITER
from tailor.observability.tracing import llm_call, note_usage
from tailor.personalise.pricing import DEFAULT_PRICES, call_cost
from tailor.personalise.prompts import ClusterRequest, GeneratedEmail, Prompt, system_message

log = logging.getLogger(__name__)
_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


class LlmQuotaExhausted(Exception):
    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"every LLM provider is out of quota; retry in {retry_after_s:.0f}s")
        self.retry_after_s = retry_after_s


class TierFailed(Exception):
    """One provider could not produce a valid email; the next tier is tried."""

    def __init__(
        self,
        reason: str,
        *,
        quota: bool = False,
        outage: bool = False,
        retry_after_s: float = 60.0,
    ) -> None:
        super().__init__(reason)
        self.quota = quota
        self.outage = outage  # unreachable, timed out or 5xx: likely to fail again right away
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class Generation:
    email: GeneratedEmail
    tier: str  # "openai" | "anthropic"
    model: str
    prompt_version: str
    usage: Usage
    cost_usd: float
    attempts: list[str] = field(default_factory=list)  # why earlier tiers were skipped


class Tier(Protocol):
    name: str
    model: str

    async def complete(self, system: str, user: str) -> tuple[str, Usage]: ...


def _retry_after(headers: object) -> float:
    try:
        return float(headers.get("retry-after", 60))  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return 60.0


@contextmanager
def _provider_errors(name: str, sdk: Any) -> Iterator[None]:
    """Both official SDKs raise the same family of errors; map them to a tier decision."""
    try:
        yield
    except sdk.RateLimitError as exc:
        raise TierFailed(
            f"{name} 429: {getattr(exc, 'code', None) or 'rate limited'}",
            quota=True,
            retry_after_s=_retry_after(exc.response.headers),
        ) from exc
    except (sdk.APITimeoutError, sdk.APIConnectionError) as exc:
        raise TierFailed(f"{name} unreachable: {type(exc).__name__}", outage=True) from exc
    except sdk.APIStatusError as exc:
        raise TierFailed(f"{name} HTTP {exc.status_code}", outage=exc.status_code >= 500) from exc


class OpenAiTier:
    name = "openai"

    def __init__(self, client: openai.AsyncOpenAI, model: str, max_tokens: int) -> None:
        self._client = client
        self.model = model
        self._max_tokens = max_tokens

    async def complete(self, system: str, user: str) -> tuple[str, Usage]:
        with _provider_errors(self.name, openai):
            response = await self._client.chat.completions.create(
                model=self.model,
                messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
                response_format={"type": "json_object"},
                max_completion_tokens=self._max_tokens,
            )
        usage = response.usage
        text = response.choices[0].message.content or ""
        return text, Usage(usage.prompt_tokens if usage else 0,
                           usage.completion_tokens if usage else 0)  # fmt: skip


class AnthropicTier:
    name = "anthropic"

    def __init__(self, client: anthropic.AsyncAnthropic, model: str, max_tokens: int) -> None:
        self._client = client
        self.model = model
        self._max_tokens = max_tokens

    async def complete(self, system: str, user: str) -> tuple[str, Usage]:
        with _provider_errors(self.name, anthropic):
            response = await self._client.messages.create(
                model=self.model,
                system=system,
                messages=[{"role": "user", "content": user}],
                max_tokens=self._max_tokens,
            )
        text = "".join(block.text for block in response.content if block.type == "text")
        return text, Usage(response.usage.input_tokens, response.usage.output_tokens)


def _parse(text: str) -> GeneratedEmail:
    match = _JSON_OBJECT.search(text)
    if match is None:
        raise TierFailed("no JSON object in the reply")
    try:
        return GeneratedEmail.model_validate(json.loads(match.group(0)))
    except (ValueError, ValidationError) as exc:
        raise TierFailed(f"reply does not match the schema: {str(exc)[:200]}") from exc


def build_tiers(settings: Settings) -> list[Tier]:
    """The configured LLM tiers, in fallback order. Empty: rules only."""
    tiers: list[Tier] = []
    if settings.openai_enabled:
        client = openai.AsyncOpenAI(
            api_key=settings.openai_api_key or "not-needed-for-this-server",
            base_url=settings.llm_base_url or None,  # "" from compose means the default
            max_retries=0,
            timeout=settings.llm_timeout_s,
        )
        tiers.append(OpenAiTier(client, settings.openai_model, settings.llm_max_output_tokens))
    if settings.anthropic_enabled:
        aclient = anthropic.AsyncAnthropic(
            api_key=settings.anthropic_api_key,
            base_url=settings.anthropic_base_url or None,
            max_retries=0,
            timeout=settings.llm_timeout_s,
        )
        tiers.append(
            AnthropicTier(aclient, settings.anthropic_model, settings.llm_max_output_tokens)
        )
    return tiers


# After an outage-type failure a tier is skipped for this long, so a dead provider costs one
# timeout per worker and half-minute, not one per cluster.
CIRCUIT_OPEN_S = 30.0


class LlmExecutor:
    def __init__(
        self,
        tiers: list[Tier],
        prices: dict[str, tuple[float, float]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tiers = tiers
        self._prices = {**DEFAULT_PRICES, **prices}
        self._clock = clock
        self._open_until: dict[str, float] = {}

    @property
    def enabled(self) -> bool:
        return bool(self._tiers)

    async def generate(self, request: ClusterRequest, prompt: Prompt) -> Generation | None:
        """An email for the cluster from the first tier that can write one; None: use rules."""
        system = system_message(prompt, request.tenant_name)
        user = prompt.user_message(request)
        failures: list[TierFailed] = []
        for tier in self._tiers:
            if self._open_until.get(tier.name, 0.0) > self._clock():
                AGENT_RUNS.labels(WRITER, tier.name, "skipped").inc()
                failures.append(TierFailed(f"{tier.name} skipped: failing recently"))
                continue
            started = time.perf_counter()
            try:
                with llm_call(tier.name, tier.model) as span:
                    text, usage = await tier.complete(system, user)
                    note_usage(span, usage.input_tokens, usage.output_tokens)
                    email = _parse(text)
            except TierFailed as exc:
                LLM_REQUESTS.labels(tier.name, "failed").observe(time.perf_counter() - started)
                AGENT_RUNS.labels(WRITER, tier.name, "failure").inc()
                log.warning("LLM tier %s skipped: %s", tier.name, exc)
                if exc.outage:
                    self._open_until[tier.name] = self._clock() + CIRCUIT_OPEN_S
                failures.append(exc)
                continue
            LLM_REQUESTS.labels(tier.name, "ok").observe(time.perf_counter() - started)
            AGENT_RUNS.labels(WRITER, tier.name, "success").inc()
            if tier.model not in self._prices:
                log.warning("no price for model %s; its cost counts as 0", tier.model)
            return Generation(
                email=email,
                tier=tier.name,
                model=tier.model,
                prompt_version=prompt.version,
                usage=usage,
                cost_usd=call_cost(self._prices, tier.model, usage.input_tokens,
                                   usage.output_tokens),
                attempts=[str(f) for f in failures],
            )  # fmt: skip
        if failures and all(f.quota for f in failures):
            raise LlmQuotaExhausted(min(f.retry_after_s for f in failures))
        return None
