"""Was an open or a click a person, or a machine fetching on nobody's behalf?

Machine hits are still recorded, only flagged, and left out of "human" rates. The rule is the
data below: ``RULES`` is tried in order and the first rule that matches decides; a hit no rule
matches is human. Each rule says what it matches and why, and ``tests/test_tracking_machines.py``
holds a recorded request shape for each.

Two rules say *human*: Gmail's and Yahoo's image proxies fetch the pixel when a person opens
the email (the proxy hides the reader's address and browser, not the fact of the open), so
those fetches count.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from tailor.tracking.tokens import TrackingKind

# A click this soon after delivery is a link scanner on the receiving server (Microsoft Safe
# Links, Proofpoint, Mimecast...), not a person who has read the email.
SCANNER_SECONDS = 10
# Window in which a scanner clicks every link of an email; the recorder counts the send's
# clicks in it (``Hit.clicks_of_send_in_last_seconds``), and holds a person's click on an email
# with two or more links this long before it counts, so the first click of a burst is caught too.
BURST_SECONDS = 5
BURST_RULE = "scanner-clicks-every-link"

# Apple Mail Privacy Protection fetches images through Apple's proxies. These are Apple's own
# allocations (17.0.0.0/8, and its ARIN IPv6 block); MUST be refreshed from Apple's published
# egress list (https://mask-api.icloud.com/egress-ip-ranges.csv) by whoever maintains this
# table, since the proxies also egress through partner networks listed there.
APPLE_PROXY_NETWORKS = tuple(ipaddress.ip_network(cidr) for cidr in ("17.0.0.0/8", "2620:149::/32"))

# Lower-case substrings of user agents of crawlers, link scanners and HTTP libraries. "bot"
# covers Googlebot, bingbot, Slackbot...; the security gateways name themselves.
MACHINE_AGENTS = (
    "bot",
    "crawler",
    "spider",
    "barracuda",
    "proofpoint",
    "mimecast",
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "go-http-client",
    "headlesschrome",
)


@dataclass(frozen=True)
class Hit:
    """One request to the pixel or the redirect, with what the recorder knows of its send."""

    kind: TrackingKind
    method: str
    user_agent: str | None  # None: not reported (a provider's event without one)
    ip: str | None
    at: datetime
    delivered_at: datetime | None  # None: delivery not (yet) reported by the provider
    # Distinct OTHER links of this send clicked in the BURST_SECONDS before ``at``.
    clicks_of_send_in_last_seconds: int = 0
    links_in_email: int = 0  # how many tracked links the email carries
    # The provider that reported it says a machine made it (SendGrid's ``sg_machine_open``,
    # Mailgun's ``client-info.bot``).
    provider_says_machine: bool = False


@dataclass(frozen=True)
class Verdict:
    human: bool
    rule: str | None  # the rule that decided; None when none matched (a person, by default)


@dataclass(frozen=True)
class Rule:
    name: str
    human: bool  # the verdict when it matches
    matches: Callable[[Hit], bool]
    doc: str


def _ua(hit: Hit) -> str:
    return (hit.user_agent or "").strip().lower()


def _in_apple_proxy(hit: Hit) -> bool:
    try:
        address = ipaddress.ip_address(hit.ip or "")
    except ValueError:
        return False
    return any(address in network for network in APPLE_PROXY_NETWORKS)


def _soon_after_delivery(hit: Hit) -> bool:
    if hit.delivered_at is None:
        return False
    return hit.at - hit.delivered_at < timedelta(seconds=SCANNER_SECONDS)


def _every_link_at_once(hit: Hit) -> bool:
    return hit.links_in_email >= 2 and hit.clicks_of_send_in_last_seconds + 1 >= hit.links_in_email


RULES: tuple[Rule, ...] = (
    Rule(
        name="provider-says-machine",
        human=False,
        matches=lambda hit: hit.provider_says_machine,
        doc="The email provider that reported the open or click flagged it as a machine's: "
        "SendGrid's sg_machine_open (an Apple Mail Privacy Protection prefetch), Mailgun's "
        "client-info bot.",
    ),
    Rule(
        name="head-request",
        human=False,
        matches=lambda hit: hit.method.upper() == "HEAD",
        doc="A HEAD request checks that a URL answers; a mail client or browser showing an "
        "image or following a link sends GET.",
    ),
    Rule(
        name="no-user-agent",
        human=False,
        matches=lambda hit: hit.user_agent is not None and _ua(hit) == "",
        doc="Every mail client and browser names itself; an empty User-Agent is a script. (A "
        "provider's report that carries no user agent at all is not judged by it.)",
    ),
    Rule(
        name="gmail-image-proxy",
        human=True,
        matches=lambda hit: hit.kind is TrackingKind.OPEN and "googleimageproxy" in _ua(hit),
        doc="Gmail fetches images through its proxy when the reader opens the email (it hides "
        "the reader, not the open), so it is a human open.",
    ),
    Rule(
        name="yahoo-mail-proxy",
        human=True,
        matches=lambda hit: hit.kind is TrackingKind.OPEN and "yahoomailproxy" in _ua(hit),
        doc="Yahoo Mail fetches images through its proxy when the reader opens the email, like "
        "Gmail's: a human open.",
    ),
    Rule(
        name="apple-mpp-user-agent",
        human=False,
        matches=lambda hit: (hit.user_agent or "").strip() == "Mozilla/5.0",
        doc="Apple Mail Privacy Protection prefetches every image of every email as it arrives, "
        "read or not, with the bare User-Agent 'Mozilla/5.0'; no real client sends only that.",
    ),
    Rule(
        name="apple-mpp-proxy-ip",
        human=False,
        matches=lambda hit: hit.kind is TrackingKind.OPEN and _in_apple_proxy(hit),
        doc="An open fetched from Apple's proxy networks is a Mail Privacy Protection prefetch "
        "(clicks are not: a person's browser may be on Apple's network).",
    ),
    Rule(
        name="scanner-click-on-delivery",
        human=False,
        matches=lambda hit: hit.kind is TrackingKind.CLICK and _soon_after_delivery(hit),
        doc=f"A click within {SCANNER_SECONDS} s of delivery is the receiving server's link "
        "scanner (Safe Links, Proofpoint, Mimecast) checking the target before the reader "
        "could have read the email.",
    ),
    Rule(
        name=BURST_RULE,
        human=False,
        matches=lambda hit: hit.kind is TrackingKind.CLICK and _every_link_at_once(hit),
        doc=f"Every link of an email (two or more) clicked within {BURST_SECONDS} s is a "
        "scanner following each link; a person follows one. Every click of the burst is a "
        "machine's, the first one too (the recorder holds a person's click that long).",
    ),
    Rule(
        name="machine-user-agent",
        human=False,
        matches=lambda hit: any(token in _ua(hit) for token in MACHINE_AGENTS),
        doc="User agents of crawlers and bots, security gateways (Barracuda, Proofpoint, "
        "Mimecast) and HTTP libraries (curl, wget, python-requests, Go's client, headless "
        "Chrome).",
    ),
)


def classify(hit: Hit, rules: tuple[Rule, ...] = RULES) -> Verdict:
    for rule in rules:
        if rule.matches(hit):
            return Verdict(human=rule.human, rule=rule.name)
    return Verdict(human=True, rule=None)
