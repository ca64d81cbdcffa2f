"""Token prices (US dollars per million tokens) and the cost of one call."""

from __future__ import annotations

# Configuration, not code: TAILOR_LLM_PRICES overrides or extends this table.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4o-mini": (0.15, 0.60),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-sonnet-4-5": (3.00, 15.00),
}


def call_cost(
    prices: dict[str, tuple[float, float]], model: str, input_tokens: int, output_tokens: int
) -> float:
    """Dollars for one call; an unknown model costs nothing but is flagged by the caller."""
    per_input, per_output = prices.get(model, (0.0, 0.0))
    return (input_tokens * per_input + output_tokens * per_output) / 1_000_000
