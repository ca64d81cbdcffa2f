"""Incoming ESP event webhooks: prove each request genuine, then read it as ``EspEvent`` s.

One module per provider (``sendgrid.py``, ``mailgun.py``, ``ses.py`` behind ``sns.py``), the
shared refusal and freshness rule (``refusal.py``), single-use tokens (``replay.py``) and the
normalised event with the out-of-order rule (``events.py``). Pure: keys, allow-lists, the
certificate fetcher and the replay store are passed in; nothing here reads settings or a database.
"""

from tailor.delivery.webhooks.events import EspEvent, EventKind, advance
from tailor.delivery.webhooks.refusal import WebhookRefused

__all__ = ["EspEvent", "EventKind", "WebhookRefused", "advance"]
