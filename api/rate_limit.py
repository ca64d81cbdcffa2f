"""The app-wide request rate limit, per API key or token subject (``tailor.accounts.rate_limit``).

It runs after ``authorize``, so it counts only callers who proved who they are: public routes
(health checks, unsubscribe pages whose signed token is the credential) and refused credentials
are not counted. Limiting those by client IP would need the real address, which behind a load
balancer is whatever ``X-Forwarded-For`` claims; flood protection by address belongs at that
proxy, which sees it. Guessing a key gains nothing either way: keys carry 256 random bits.
"""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from api.access import roles_for
from api.deps import get_principal
from tailor.accounts.principal import Principal
from tailor.accounts.rate_limit import RequestLimiter, RequestRate, bucket_key
from tailor.config import Settings


async def limit_rate(
    request: Request, principal: Annotated[Principal | None, Depends(get_principal)]
) -> None:
    """Count the request against its caller's limit; 429 with ``Retry-After`` past it."""
    route = getattr(request.scope.get("route"), "path", request.url.path)
    if principal is None or roles_for(request.method, route) is None:
        return  # public routes are not counted, whoever calls them
    settings: Settings = request.app.state.settings
    limiter: RequestLimiter = request.app.state.rate_limiter
    rate = RequestRate.from_settings(settings)
    wait_s = await limiter.hit(bucket_key(principal), rate)
    if wait_s > 0:
        retry_after = max(1, math.ceil(wait_s))
        raise HTTPException(
            429,
            f"too many requests for this API key: at most {rate.per_min} a minute "
            f"(bursts of {rate.burst}); retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )
