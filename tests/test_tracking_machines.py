"""Machine opens and clicks, each rule shown with a request shape recorded from the client or
scanner it names; and ordinary people reading in iPhone Mail, Gmail and Outlook count."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from tailor.tracking.machines import RULES, Hit, Verdict, classify
from tailor.tracking.tokens import TrackingKind

OPEN, CLICK = TrackingKind.OPEN, TrackingKind.CLICK
DELIVERED = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
LATER = DELIVERED + timedelta(minutes=47)

IPHONE_MAIL = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148"
)
IPHONE_SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1.2 Mobile/15E148 Safari/604.1"
)
CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/119.0.0.0 Safari/537.36"
)
EDGE_WINDOWS = CHROME_WINDOWS + " Edg/119.0.2151.93"
OUTLOOK_DESKTOP = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17029; Pro)"
GMAIL_PROXY = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"  # noqa: E501
)
YAHOO_PROXY = "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"


def hit(kind: TrackingKind = OPEN, **changes: object) -> Hit:
    base = Hit(
        kind=kind,
        method="GET",
        user_agent=CHROME_WINDOWS,
        ip="203.0.113.24",
        at=LATER,
        delivered_at=DELIVERED,
        clicks_of_send_in_last_seconds=0,
        links_in_email=4,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


# People: counted human, and no rule claims them.
@pytest.mark.parametrize(
    "person",
    [
        hit(OPEN, user_agent=IPHONE_MAIL, ip="198.51.100.7"),  # iPhone Mail, MPP off
        hit(CLICK, user_agent=IPHONE_SAFARI, ip="198.51.100.7"),  # ...then the link in Safari
        hit(CLICK, user_agent=CHROME_WINDOWS),  # Gmail on the web, link clicked
        hit(OPEN, user_agent=OUTLOOK_DESKTOP, ip="192.0.2.10"),  # Outlook desktop images
        hit(CLICK, user_agent=EDGE_WINDOWS, ip="192.0.2.10"),  # Outlook opens the browser
        # a person at Apple clicking from the office network: only opens there are MPP
        hit(CLICK, user_agent=IPHONE_SAFARI, ip="17.58.100.3"),
        # a second link of the same email a minute later is still a person
        hit(CLICK, clicks_of_send_in_last_seconds=0, links_in_email=2),
        # two of four links within seconds (opened in tabs): not every link, still a person
        hit(CLICK, clicks_of_send_in_last_seconds=1, links_in_email=4),
        # delivery not reported yet: no timing rule applies
        hit(CLICK, delivered_at=None, at=DELIVERED),
        # a provider's open report that names no user agent (SES without it): not a script's
        hit(OPEN, user_agent=None, ip=None),
    ],
)
def test_people_reading_and_clicking_count_as_human(person: Hit) -> None:
    assert classify(person) == Verdict(human=True, rule=None)


# Machines, each with the request shape it was recorded with.
MACHINES = [
    # SendGrid's open event with sg_machine_open: true (Apple MPP, by SendGrid's signals)
    (
        hit(OPEN, user_agent=IPHONE_MAIL, ip="203.0.113.9", provider_says_machine=True),
        "provider-says-machine",
    ),  # fmt: skip
    (hit(CLICK, method="HEAD", user_agent=CHROME_WINDOWS), "head-request"),
    (hit(OPEN, method="head", user_agent=IPHONE_MAIL), "head-request"),
    (hit(OPEN, user_agent=""), "no-user-agent"),
    (hit(CLICK, user_agent="   "), "no-user-agent"),
    # Apple MPP prefetch: bare UA from Apple's proxy network
    (hit(OPEN, user_agent="Mozilla/5.0", ip="17.58.63.214"), "apple-mpp-user-agent"),
    (hit(OPEN, user_agent="Mozilla/5.0", ip="104.28.40.71"), "apple-mpp-user-agent"),
    # the proxy's address gives it away even when the UA is a full one
    (hit(OPEN, user_agent=IPHONE_MAIL, ip="17.58.63.214"), "apple-mpp-proxy-ip"),
    (hit(OPEN, user_agent=IPHONE_MAIL, ip="2620:149:a0c:4000::1"), "apple-mpp-proxy-ip"),
    # Safe Links-style scanner: a normal browser UA, 3 s after delivery
    (
        hit(CLICK, user_agent=CHROME_WINDOWS, ip="40.94.1.2", at=DELIVERED + timedelta(seconds=3)),  # noqa: E501
        "scanner-click-on-delivery",
    ),
    # the same scanner, its clock a little behind the provider's
    (hit(CLICK, at=DELIVERED - timedelta(seconds=1)), "scanner-click-on-delivery"),
    # every one of 4 links within the burst window, long after delivery
    (hit(CLICK, clicks_of_send_in_last_seconds=3, links_in_email=4), "scanner-clicks-every-link"),  # noqa: E501
    (hit(CLICK, user_agent="Barracuda Sentinel (EE)"), "machine-user-agent"),
    (hit(CLICK, user_agent="Proofpoint URL Defense/1.0"), "machine-user-agent"),
    (hit(CLICK, user_agent="Mozilla/5.0 (compatible; Mimecast URL Protect)"), "machine-user-agent"),  # noqa: E501
    (
        hit(
            OPEN,
            user_agent="Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        ),  # noqa: E501
        "machine-user-agent",
    ),
    (hit(CLICK, user_agent="Mozilla/5.0 (compatible; bingbot/2.0)"), "machine-user-agent"),
    (
        hit(CLICK, user_agent="Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"),
        "machine-user-agent",
    ),  # noqa: E501
    (hit(CLICK, user_agent="curl/8.4.0"), "machine-user-agent"),
    (hit(CLICK, user_agent="python-requests/2.31.0"), "machine-user-agent"),
    (hit(OPEN, user_agent="Go-http-client/1.1"), "machine-user-agent"),
    (hit(OPEN, user_agent="Mozilla/5.0 HeadlessChrome/119.0.6045.105"), "machine-user-agent"),
]


@pytest.mark.parametrize(("machine", "rule"), MACHINES)
def test_machines_are_flagged_by_the_rule_that_caught_them(machine: Hit, rule: str) -> None:
    assert classify(machine) == Verdict(human=False, rule=rule)


def test_gmail_and_yahoo_image_proxies_are_human_opens() -> None:
    gmail = hit(OPEN, user_agent=GMAIL_PROXY, ip="66.249.84.5")
    yahoo = hit(OPEN, user_agent=YAHOO_PROXY, ip="98.136.0.1")
    assert classify(gmail) == Verdict(human=True, rule="gmail-image-proxy")
    assert classify(yahoo) == Verdict(human=True, rule="yahoo-mail-proxy")
    # a HEAD through the proxy is still a machine: the HEAD rule comes first
    assert classify(replace(gmail, method="HEAD")).human is False


def test_clicking_one_link_of_a_one_link_email_is_not_a_burst() -> None:
    assert classify(hit(CLICK, clicks_of_send_in_last_seconds=0, links_in_email=1)).human


def test_an_unparseable_address_does_not_break_the_rule() -> None:
    assert classify(hit(OPEN, user_agent=IPHONE_MAIL, ip="not-an-ip")).human
    assert classify(hit(OPEN, user_agent=IPHONE_MAIL, ip=None)).human


def test_every_rule_is_documented_named_once_and_has_a_recorded_shape() -> None:
    names = [rule.name for rule in RULES]
    assert len(names) == len(set(names))
    assert all(len(rule.doc) > 40 for rule in RULES)
    shown = {rule for _, rule in MACHINES} | {"gmail-image-proxy", "yahoo-mail-proxy"}
    assert shown == set(names)
