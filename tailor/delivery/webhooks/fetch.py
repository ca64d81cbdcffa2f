"""The two HTTP calls the SNS route makes: fetch a signing certificate, confirm a subscription.

Both URLs have already passed ``sns.py``'s allow-list (``https://sns.<region>.amazonaws.com/``)
before they get here. Timeouts are short: SNS retries a delivery we answer 5xx, and a slow fetch
would hold a request for nothing. Redirects are not followed, so the allow-list stays the whole
story of where we connect.
"""

from __future__ import annotations

import httpx

TIMEOUT_S = 5.0
MAX_CERTIFICATE_BYTES = 64 * 1024  # a PEM certificate is about 2 KB


class FetchFailed(Exception):
    """The certificate or confirmation URL did not answer well: answer 503 so SNS retries."""


class SnsHttp:
    """Certificate fetcher (a ``sns.Fetcher``) and subscription confirmer over one client."""

    def __init__(self, client: httpx.AsyncClient | None = None) -> None:
        self._client = client or httpx.AsyncClient(timeout=TIMEOUT_S, follow_redirects=False)

    async def certificate(self, url: str) -> bytes:
        try:
            response = await self._client.get(url)
        except httpx.HTTPError as error:
            raise FetchFailed("signing certificate could not be fetched") from error
        if response.status_code != 200 or len(response.content) > MAX_CERTIFICATE_BYTES:
            raise FetchFailed(f"signing certificate fetch answered {response.status_code}")
        return response.content

    async def confirm(self, subscribe_url: str) -> None:
        try:
            response = await self._client.get(subscribe_url)
        except httpx.HTTPError as error:
            raise FetchFailed("subscription confirmation failed") from error
        if response.status_code != 200:
            raise FetchFailed(f"subscription confirmation answered {response.status_code}")

    async def close(self) -> None:
        await self._client.aclose()
