"""Composing one recipient's email: the rules tier's words (or the LLM's for their cluster,
filled in for them), checked by the guardrail, with the legal footer and unsubscribe headers,
as the parts a provider takes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from html import escape

from rag.retriever import Retrieval
from tailor.delivery.dispatch import Envelope
from tailor.delivery.mime import (
    HeaderInjection,
    MailParts,
    check_header_values,
    display_name,
    render_message,
)
from tailor.delivery.providers.base import OutgoingEmail
from tailor.models import Contact
from tailor.personalise.context import CampaignContext
from tailor.personalise.generation import ClusterContent, fill
from tailor.personalise.html import body_html, body_text
from tailor.personalise.rules import (
    ExemplarHint,
    Personalised,
    RuleBasedExecutor,
    TemplateRenderError,
)
from tailor.sending.guardrail import Compliance, Guardrail, GuardrailViolation
from tailor.sending.recipients import Recipient
from tailor.tracking.urls import EmailLinks, TrackingConfig


@dataclass(frozen=True)
class Composed:
    content: Personalised
    envelope: Envelope  # with the original URLs of its tracked links (None: untracked)


class Composer:
    def __init__(self, guardrail: Guardrail, tracking: TrackingConfig | None = None) -> None:
        """``tracking``: where pixel and redirect URLs point; None, no email is tracked."""
        self._executor = RuleBasedExecutor()
        self._guardrail = guardrail
        self._tracking = tracking

    def tracks(self, ctx: CampaignContext) -> bool:
        """Whether this campaign's emails get an open pixel and click redirects."""
        return self._tracking is not None and ctx.tracked

    def compose(
        self,
        ctx: CampaignContext,
        recipient: Recipient,
        written: ClusterContent | None,
        retrieval: Retrieval | None,
        now: datetime,
    ) -> Composed | str:
        """The recipient's email, or why it cannot be sent (a guardrail)."""
        contact = recipient.contact
        try:
            content = self._rules_tier(ctx, contact, now, _hint(retrieval))
            if written is not None and written.usable:
                content = _from_llm(content, written, contact, ctx)
            self._guardrail.check_content(content)
            compliance = self._guardrail.compliance(
                campaign_id=ctx.campaign_id,
                contact_id=recipient.contact_id,
                tenant_name=ctx.tenant.name,
                postal_address=ctx.tenant.postal_address,
                disclaimer=ctx.brand.required_disclaimer,
                contact=ctx.tenant.website or ctx.tenant.from_email,
            )
            links = None
            if self._tracking is not None and self.tracks(ctx):
                links = EmailLinks(
                    self._tracking, ctx.tenant.id, ctx.tenant.tracking_key_version,
                    recipient.send_id,
                )  # fmt: skip
            parts = mail_parts(
                content=content,
                compliance=compliance,
                message_id=recipient.message_id,
                campaign_id=ctx.campaign_id,
                links=links,
            )
        except (GuardrailViolation, HeaderInjection) as exc:
            return f"guardrail: {exc}"
        email = OutgoingEmail(
            send_id=recipient.send_id,
            tenant_id=ctx.tenant.id,
            campaign_id=ctx.campaign_id,
            to_email=contact.email,
            from_email=ctx.tenant.from_email,
            from_name=display_name(ctx.tenant.from_name),  # providers put it in From
            subject=parts.subject,
            text=parts.text,
            html=parts.html,
            headers=parts.headers,
        )
        return Composed(
            content,
            Envelope(recipient.send_id, recipient.contact_id, email, now,
                     None if links is None else links.links),
        )  # fmt: skip

    def _rules_tier(
        self,
        ctx: CampaignContext,
        contact: Contact,
        now: datetime,
        exemplar: ExemplarHint | None = None,
    ) -> Personalised:
        """The rules tier on the campaign's template, or on the tenant's default template for a
        recipient the campaign's cannot render for (with no default, the campaign stops)."""
        try:
            return self._executor.personalise(
                contact=contact, version=ctx.version, catalog=ctx.catalog,
                tenant_name=ctx.tenant.name, now=now, exemplar=exemplar, goal=ctx.goal,
            )  # fmt: skip
        except TemplateRenderError as exc:
            if ctx.default_version is None:
                raise
            content = self._executor.personalise(
                contact=contact, version=ctx.default_version, catalog=ctx.catalog,
                tenant_name=ctx.tenant.name, now=now, exemplar=exemplar, goal=ctx.goal,
            )  # fmt: skip
            content.rules.append(
                f"template:tenant-default v{ctx.default_version.id} ({str(exc)[:120]})"
            )
            return content


def mail_parts(
    *,
    content: Personalised,
    compliance: Compliance,
    message_id: str,
    campaign_id: str,
    links: EmailLinks | None = None,
) -> MailParts:
    """The email's parts. With ``links``, its links (the body's, then the call to action) go
    through click redirects and the HTML ends with the open pixel; the unsubscribe link and
    List-Unsubscribe stay direct (an unsubscribe must work without Tailor's tracker, and is
    never counted as a click)."""
    headers = {"Message-ID": message_id, "X-Tailor-Campaign": campaign_id, **compliance.headers}
    check_header_values(content.subject, *headers.values())
    paragraphs = _paragraphs(content)
    cta_url = content.cta_url
    pixel = ""
    if links is not None:
        paragraphs = links.rewrite_html(paragraphs)
        cta_url = links.click(content.cta_url)
        pixel = (
            f'<img src="{escape(links.pixel(), quote=True)}" width="1" height="1" alt="" '
            'style="border:0;display:block">'
        )
    text = f"{content.body}\n\n{content.cta_text}: {cta_url}\n\n-- \n{compliance.footer}\n"
    html = _html(content, compliance, paragraphs=paragraphs, cta_url=cta_url, pixel=pixel)
    return MailParts(content.subject, text, html, headers)


def build_message(
    *,
    content: Personalised,
    compliance: Compliance,
    from_name: str,
    from_email: str,
    to_email: str,
    message_id: str,
    campaign_id: str,
    sent_at: datetime,
) -> bytes:
    """The whole RFC 5322 message for one email, as SMTP delivery writes it."""
    parts = mail_parts(
        content=content, compliance=compliance, message_id=message_id, campaign_id=campaign_id
    )
    return render_message(
        parts, from_name=from_name, from_email=from_email, to_email=to_email, sent_at=sent_at
    )


def _paragraphs(content: Personalised) -> str:
    return content.body_html or "".join(
        f"<p>{escape(p).replace(chr(10), '<br>')}</p>"
        for p in content.body.split("\n\n")
        if p.strip()
    )


def _html(
    content: Personalised, compliance: Compliance, *, paragraphs: str, cta_url: str, pixel: str
) -> str:
    footer = escape(compliance.footer).replace("\n", "<br>")
    return (
        "<!doctype html><html><body>"
        f'<div style="display:none">{escape(content.preheader)}</div>'
        f"{paragraphs}"
        f'<p><a href="{escape(cta_url, quote=True)}" '
        'style="background:#1a73e8;color:#fff;padding:10px 18px;text-decoration:none">'
        f"{escape(content.cta_text)}</a></p>"
        f'<hr><p style="font-size:12px;color:#666">{footer}</p>'
        f"{pixel}</body></html>"
    )


def _from_llm(
    rules: Personalised, written: ClusterContent, contact: Contact, ctx: CampaignContext
) -> Personalised:
    """The LLM's words for the cluster, filled for this recipient; the rules keep the link."""
    email = written.email
    body = fill(email.body, contact, ctx.catalog)
    return Personalised(
        subject=_plain(fill(email.subject, contact, ctx.catalog)),
        preheader=_plain(fill(email.preheader, contact, ctx.catalog)),
        body=body_text(body),
        cta_text=_plain(fill(email.cta_text, contact, ctx.catalog)) or rules.cta_text,
        cta_url=rules.cta_url,
        rules=[*rules.rules, f"llm:{written.provider}:{written.model}"],
        body_html=body_html(body),
    )


def _plain(text: str) -> str:
    """One line of text, with any markup the model wrote removed."""
    return " ".join(body_text(text).split())


def _hint(retrieval: Retrieval | None) -> ExemplarHint | None:
    if retrieval is None or not retrieval.exemplars:
        return None
    top = retrieval.exemplars[0]
    return ExemplarHint(top.id, top.cta)
