"""A loopback server that speaks the SendGrid v3, Mailgun and Amazon SES v2 sending APIs.

The real adapters (``activities/providers``) talk to it over HTTP, so tests and benchmarks exercise
their request building, authentication (bearer key, HTTP Basic, and SigV4 *verified*: the stub
recomputes the signature with botocore), error mapping and response parsing.

Each provider is steered through a :class:`Behaviour`: directly from a test
(``stub.sendgrid.fail_status = 503``) or from another process (``POST /_stub/behaviour``).

Accepted messages are recorded cheaply enough for benchmarks of a million recipients: counts and
a hash of every message's identity (its Message-ID, else its ``tailor_send_id``) for all, so
duplicates across providers are counted; full bodies only for the most recent ``keep``; and for
SendGrid and Mailgun, each ``tailor_send_id`` with a hash of its address (~105 MB a million), so
their delivery lookups answer for every message. The stub only stores that hash, so a lookup
names the recipient as ``<hash>@hash.invalid``. Lookups see a message as soon as it is accepted;
the real APIs lag by seconds to minutes, which is why Tailor only reconciles sends older than
``provider_reconcile_after_s``.

Routes::

    POST /v3/mail/send                    GET /v3/scopes                SendGrid
    GET  /v3/messages?query=unique_args['tailor_send_id'] IN ("1","2")
    POST /v3/{domain}/messages            GET /v3/domains/{domain}      Mailgun
    GET  /v3/{domain}/events?event=accepted&user-variables={"tailor_send_id":"1"}, and its pages
    POST /v2/email/outbound-emails        GET /v2/email/account         Amazon SES v2
    POST /v2/email/outbound-bulk-emails
    POST /_stub/behaviour   POST /_stub/reset   GET /_stub/messages   GET /_stub/stats

Modules: ``sendgrid``, ``mailgun`` and ``ses`` (one provider each), ``store`` (what was
accepted), ``control`` (injected faults), ``api`` (what the providers share), ``stub``
(dispatch and the ``/_stub/`` routes), ``server`` (HTTP serving). Import from this package:
it re-exports their public names.
"""

from tailor.devtools.esp_stub.api import Reply, Request, Route, json_reply
from tailor.devtools.esp_stub.control import Behaviour, valid_address
from tailor.devtools.esp_stub.mailgun import (
    MAILGUN_MAX_RECIPIENTS,
    STUB_MAILGUN_DOMAIN,
    STUB_MAILGUN_KEY,
    MailgunApi,
)
from tailor.devtools.esp_stub.sendgrid import (
    SENDGRID_MAX_PERSONALIZATIONS,
    SENDGRID_MAX_SUBSTITUTION_BYTES,
    STUB_SENDGRID_KEY,
    SendGridApi,
)
from tailor.devtools.esp_stub.server import running_esp_stub, serve
from tailor.devtools.esp_stub.ses import (
    SES_MAX_BULK_ENTRIES,
    SES_MAX_CLOCK_SKEW_S,
    STUB_SES_ACCESS_KEY,
    STUB_SES_SECRET,
    SesApi,
    ses_signature,
)
from tailor.devtools.esp_stub.store import (
    KEEP_MESSAGES,
    LOOKUP_PROVIDERS,
    PROVIDERS,
    Accepted,
    Counts,
    Ledger,
    StubMessage,
    hashed_address,
)
from tailor.devtools.esp_stub.stub import EspStub

__all__ = [
    "KEEP_MESSAGES",
    "LOOKUP_PROVIDERS",
    "MAILGUN_MAX_RECIPIENTS",
    "PROVIDERS",
    "SENDGRID_MAX_PERSONALIZATIONS",
    "SENDGRID_MAX_SUBSTITUTION_BYTES",
    "SES_MAX_BULK_ENTRIES",
    "SES_MAX_CLOCK_SKEW_S",
    "STUB_MAILGUN_DOMAIN",
    "STUB_MAILGUN_KEY",
    "STUB_SENDGRID_KEY",
    "STUB_SES_ACCESS_KEY",
    "STUB_SES_SECRET",
    "Accepted",
    "Behaviour",
    "Counts",
    "EspStub",
    "Ledger",
    "MailgunApi",
    "Reply",
    "Request",
    "Route",
    "SendGridApi",
    "SesApi",
    "StubMessage",
    "hashed_address",
    "json_reply",
    "running_esp_stub",
    "serve",
    "ses_signature",
    "valid_address",
]
