"""``email``: SMTP with STARTTLS (587), implicit TLS (465) or plain (tests, local relays),
optional AUTH; a text and an HTML part. smtplib runs in a thread so the loop never blocks.

Message-IDs are deterministic per (incident, event, target, sequence) -- a resend after a
crash carries the same id, which lets mail systems drop it -- and every message after the
first of an incident has ``In-Reply-To``/``References`` to the first so clients thread them.
SMTP 4xx is retried, 5xx is permanent.
"""

from __future__ import annotations

import asyncio
import hashlib
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from typing import Literal

from pydantic import ConfigDict, Field

from bridge.core.secrets import Secret
from bridge.delivery.protocol import (
    DeliveryError,
    DeliveryResult,
    Notification,
    PermanentError,
    RetryableError,
)
from bridge.targets.base import Target, TargetConfig

SUBJECT_MAX = 200


class EmailConfig(TargetConfig):
    model_config = ConfigDict(
        extra="forbid", frozen=True, hide_input_in_errors=True, populate_by_name=True
    )

    host: str
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: Secret | None = None
    # "from" in the rules (a Python keyword, hence the attribute name)
    sender: str = Field(alias="from", min_length=3)
    to: list[str] = Field(min_length=1)
    domain: str | None = None
    verify_tls: bool = True
    ca_file: str | None = None
    subject_prefix: str = ""


def message_id(idempotency_key: str, domain: str) -> str:
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]
    return f"<ib.{digest}@{domain}>"


class EmailTarget(Target):
    type_name = "email"
    extra_parts = {".html.j2": "html"}  # the HTML alternative, HTML-escaped
    Config = EmailConfig
    config: EmailConfig

    @property
    def domain(self) -> str:
        return (
            self.config.domain
            or self.config.sender.rpartition("@")[2].strip("> ")
            or "incident-bridge"
        )

    def message(self, n: Notification) -> EmailMessage:
        text = self.render(n)
        html = self.render(n, suffix=".html.j2")
        msg = EmailMessage()
        subject = text.title or str(n.incident.get("title", "incident"))
        msg["Subject"] = (self.config.subject_prefix + subject)[:SUBJECT_MAX]
        msg["From"] = self.config.sender
        msg["To"] = ", ".join(self.config.to)
        msg["Date"] = formatdate(self.deps.clock(), usegmt=True)
        own = message_id(n.idempotency_key, self.domain)
        msg["Message-ID"] = own
        root = str(n.state.get("message_id") or "")
        if root and root != own:
            msg["In-Reply-To"] = root
            msg["References"] = root
        msg["X-Incident-Bridge-Incident"] = str(n.incident.get("id", ""))
        msg["X-Incident-Bridge-Event"] = n.event
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(text.body + "\n")
        msg.add_alternative(html.body + "\n", subtype="html")
        return msg

    async def send(self, notification: Notification) -> DeliveryResult:
        n = notification
        msg = self.message(n)
        await asyncio.to_thread(self._deliver, msg)
        own = str(msg["Message-ID"])
        state = dict(n.state)
        state.setdefault("message_id", own)  # the first message is the thread's root
        return DeliveryResult(state=state, provider_ids={"message_id": own})

    def _tls(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.config.ca_file)
        if not self.config.verify_tls:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _deliver(self, msg: EmailMessage) -> None:
        try:
            self._smtp(msg)
        except DeliveryError:
            raise
        except Exception as exc:
            raise smtp_error(exc) from None

    def _smtp(self, msg: EmailMessage) -> None:
        cfg = self.config
        smtp: smtplib.SMTP
        if cfg.security == "tls":
            smtp = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout_s, context=self._tls())
        else:
            smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s)
        with smtp:
            smtp.ehlo()
            if cfg.security == "starttls":
                smtp.starttls(context=self._tls())
                smtp.ehlo()
            if cfg.username:
                password = cfg.password.reveal() if cfg.password else ""
                smtp.login(cfg.username, password)
            refused = smtp.send_message(msg, from_addr=cfg.sender, to_addrs=cfg.to)
        if refused:  # some recipients got it: a retry would send them a duplicate
            self.deps.logger.warning(
                "email target %s: %d recipient(s) refused", self.name, len(refused)
            )


def smtp_error(exc: BaseException) -> DeliveryError:
    """SMTP and socket failures -> errors with bounded reasons and no server text."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        if codes and all(400 <= c < 500 for c in codes):
            return RetryableError("smtp_4xx")
        return PermanentError("smtp_recipients_refused")
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return PermanentError("smtp_auth")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return PermanentError("smtp_not_supported")
    if isinstance(exc, smtplib.SMTPResponseException):
        code = exc.smtp_code
        if 400 <= code < 500:
            return RetryableError(f"smtp_{code}")
        if 500 <= code < 600:
            return PermanentError(f"smtp_{code}")
        return RetryableError("smtp_protocol")
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return RetryableError("connection")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return PermanentError("tls_verify")
    if isinstance(exc, ssl.SSLError):
        return RetryableError("tls")
    if isinstance(exc, TimeoutError):
        return RetryableError("timeout")
    if isinstance(exc, OSError):
        return RetryableError("connection")
    if isinstance(exc, smtplib.SMTPException):
        return RetryableError("smtp_protocol")
    return RetryableError("internal")
