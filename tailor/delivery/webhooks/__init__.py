"""Incoming ESP event webhooks: prove each request genuine, then read it as ``EspEvent`` s.

One module per provider (``sendgrid.py``, ``mailgun.py``, ``ses.py`` behind ``sns.py``), the
shared refusal and freshness rule (``refusal.py``), single-use tokens (``replay.py``) and the
normalised event with the out-of-order rule (``events.py``). Those are pure: keys, allow-lists,
the certificate fetcher and the replay store are passed in; nothing there reads settings or a
database. Around them: ``replay.py`` also has the Redis guard, ``fetch.py`` the HTTP calls SNS
needs, and ``ingest.py`` stores verified events and applies them (send state, soft bounces,
suppression in the consent ledger).
"""

from tailor.delivery.webhooks.events import EspEvent, EventKind, advance
from tailor.delivery.webhooks.refusal import WebhookRefused

__all__ = ["EspEvent", "EventKind", "WebhookRefused", "advance"]
