"""Where a tenant may have Tailor send its events, checked twice.

Outbound webhooks make the worker post to URLs a tenant typed in, so without care they are a way
into Tailor's own network (server-side request forgery): the cloud metadata service, a database's
admin port, anything on 10.0.0.0/8. So:

- at registration (``check_url``): ``https`` only, no credentials in the URL, at most 2,048
  characters, and no host that is plainly private (``localhost``, a private or loopback IP);
- at every connection (``GuardedBackend``): the host name is resolved and *each* address must be
  public (``is_global``, not multicast); the socket then connects to the address that was
  checked, so a DNS answer that changes between the check and the connection (rebinding) cannot
  slip a private address through. TLS still verifies the certificate against the host name.

Redirects are never followed. With ``TAILOR_OUTBOUND_ALLOW_PRIVATE_URLS`` (on by default in
development only) private addresses are allowed, and so is plain ``http`` to a loopback host,
for receivers on a developer's machine and the tests'.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import typing
from collections.abc import Awaitable, Callable, Iterable

import httpcore
import httpx

from tailor.errors import InvalidInput

MAX_URL = 2048
Resolver = Callable[[str, int], Awaitable[list[str]]]


class PrivateAddress(Exception):
    """The endpoint's host is, or resolves to, an address Tailor will not post to."""


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def is_public(address: str) -> bool:
    ip = _ip(address.split("%", 1)[0])  # an IPv6 zone (fe80::1%eth0) is link-local anyway
    if ip is None:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    ip = _ip(host)
    return ip is not None and ip.is_loopback


def check_url(url: str, *, allow_private: bool) -> str:
    """The URL, if Tailor may post events to it; InvalidInput naming ``url`` otherwise."""
    if len(url) > MAX_URL:
        raise InvalidInput("url", f"at most {MAX_URL} characters")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise InvalidInput("url", f"not a URL ({error})") from error
    host = parsed.host.lower()
    if parsed.scheme not in ("https", "http") or not host:
        raise InvalidInput("url", "must be an https:// URL")
    if parsed.userinfo:
        raise InvalidInput(
            "url", "must not hold credentials; a Segment write key goes in segment_write_key"
        )
    if parsed.fragment:
        raise InvalidInput("url", "must not have a #fragment")
    if parsed.scheme == "http" and not (allow_private and _loopback(host)):
        raise InvalidInput("url", "must be an https:// URL")
    if not allow_private and (_loopback(host) or (_ip(host) is not None and not is_public(host))):
        raise InvalidInput("url", "must not point at a private, loopback or link-local address")
    return url


async def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, in the resolver's order, once each."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, resolving host names itself so that it connects only to
    addresses it has checked (see the module's docstring)."""

    def __init__(self, *, allow_private: bool, resolver: Resolver = resolve) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._allow_private = allow_private
        self._resolve = resolver

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await self._resolve(host, port)
        except OSError as error:
            raise httpcore.ConnectError(f"{host} does not resolve") from error
        if not addresses:
            raise httpcore.ConnectError(f"{host} does not resolve")
        if not self._allow_private and not all(is_public(a) for a in addresses):
            raise PrivateAddress(f"{host} resolves to a private address")
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address,
                    socket_options=socket_options,
                )  # fmt: skip
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as failed:
                last = failed
        assert last is not None
        raise last

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_client(
    *, allow_private: bool, timeout_s: float, resolver: Resolver = resolve, connections: int = 20
) -> httpx.AsyncClient:
    """An HTTP client that connects only where ``GuardedBackend`` allows, follows no redirect,
    reads no proxy from the environment (a proxy would connect on our behalf, unchecked)."""
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    # httpx builds its connection pool without a way to pass a network backend; swap the pool
    # for one with ours (same TLS defaults as httpx's own).
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=connections,
        max_keepalive_connections=connections,
        keepalive_expiry=15.0,
        network_backend=GuardedBackend(allow_private=allow_private, resolver=resolver),
    )
    return httpx.AsyncClient(
        transport=transport, timeout=timeout_s, follow_redirects=False, trust_env=False
    )
