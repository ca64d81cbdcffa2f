"""Why an attempt of the send pipeline stops short; the activities map each to a Temporal
failure (``activities/errors.py``). All are retryable: what was settled stays settled.

Also raised through the pipeline: ``DeliveryUnavailable`` (no provider could take the sends),
``LookupFailed`` (a provider's records could not be read), ``LlmQuotaExhausted`` and
``TemplateRenderError`` (the campaign's template cannot render, and there is no default).
"""

from __future__ import annotations


class SendsDeferred(Exception):
    """A provider said "not now" after the claim: nothing was accepted, so they go again."""

    def __init__(self, count: int) -> None:
        super().__init__(f"{count} sends deferred by the provider")
        self.count = count


class ProfilesUnavailable(Exception):
    """Recipients whose profile could not be read (and had no fresh cached copy)."""

    def __init__(self, count: int) -> None:
        super().__init__(f"{count} recipients have no profile now")
        self.count = count


class AwaitingReconciliation(Exception):
    """Sends an earlier attempt left unclear, too young to look up at the provider yet."""

    def __init__(self, count: int, wait_s: float) -> None:
        super().__init__(f"{count} unclear sends; look them up in {wait_s:.0f}s")
        self.count = count
        self.wait_s = wait_s
