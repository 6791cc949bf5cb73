"""E-mail against a real SMTP server (aiosmtpd): parts, threading, AUTH, STARTTLS, errors."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.targets import PermanentError, RetryableError
from bridge.targets.email import message_id
from tests.fakes.smtp import PASSWORD, USER, SMTPFake, free_port
from tests.targets.conftest import NOW, MakeTarget, incident, make_notification


@pytest.fixture
def smtp() -> Iterator[SMTPFake]:
    fake = SMTPFake().start()
    yield fake
    fake.stop()


def _email(make_target: MakeTarget, port: int, **extra: object):  # type: ignore[no-untyped-def]
    settings: dict[str, object] = {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "from": "bridge@example.com",
        "to": ["oncall@example.com"],
    }
    settings.update(extra)
    return make_target("email", **settings)


async def test_text_and_html_parts_and_threading(smtp: SMTPFake, make_target: MakeTarget) -> None:
    target = _email(make_target, smtp.port)
    first = await target.send(make_notification("opened", sequence=1))
    root = first.state["message_id"]
    second = await target.send(
        make_notification("acknowledged", state=dict(first.state), sequence=2)
    )
    assert second.state["message_id"] == root  # the root stays the first message
    m1, m2 = smtp.messages
    assert m1["Message-ID"] == root == message_id("42:opened:t:1", "example.com")
    assert "In-Reply-To" not in m1
    assert m2["In-Reply-To"] == root and m2["References"] == root
    assert m1["Subject"] == "[SEV2] #42 High error rate on checkout (triggered)"
    assert m1["Date"].datetime.timestamp() == NOW  # the injected clock
    text = m1.get_body(preferencelist=("plain",))
    html = m1.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    assert "Severity:  sev2" in text.get_content()
    assert "<h2>Incident opened" in html.get_content()
    assert smtp.handler.envelopes[0] == ("bridge@example.com", ["oncall@example.com"])


async def test_same_row_twice_has_the_same_message_id(
    smtp: SMTPFake, make_target: MakeTarget
) -> None:
    target = _email(make_target, smtp.port)
    n = make_notification("opened")
    await target.send(n)
    await target.send(n)
    assert smtp.messages[0]["Message-ID"] == smtp.messages[1]["Message-ID"]


@pytest.mark.parametrize(
    ("where", "reply", "error", "reason"),
    [
        ("rcpt", "450 4.2.1 mailbox busy", RetryableError, "smtp_4xx"),
        ("rcpt", "550 5.1.1 no such user", PermanentError, "smtp_recipients_refused"),
        ("data", "451 4.3.0 try again later", RetryableError, "smtp_451"),
        ("data", "554 5.7.1 rejected as spam", PermanentError, "smtp_554"),
    ],
)
async def test_smtp_errors(
    smtp: SMTPFake,
    make_target: MakeTarget,
    where: str,
    reply: str,
    error: type[Exception],
    reason: str,
) -> None:
    queue = smtp.handler.rcpt_replies if where == "rcpt" else smtp.handler.data_replies
    queue.append(reply)
    with pytest.raises(error) as err:
        await _email(make_target, smtp.port).send(make_notification())
    assert err.value.reason == reason  # type: ignore[attr-defined]
    assert reply.split(" ", 2)[2] not in str(err.value)


async def test_unreachable_server_is_retryable(make_target: MakeTarget) -> None:
    with pytest.raises(RetryableError) as err:
        await _email(make_target, free_port(), timeout_s=2).send(make_notification())
    assert err.value.reason == "connection"


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_auth(make_target: MakeTarget) -> None:
    fake = SMTPFake(auth=True).start()
    try:
        ok = _email(make_target, fake.port, username=USER, password=PASSWORD)
        await ok.send(make_notification())
        assert len(fake.messages) == 1
        bad = _email(make_target, fake.port, username=USER, password="wrong-password")
        with pytest.raises(PermanentError) as err:
            await bad.send(make_notification())
        assert err.value.reason == "smtp_auth"
        assert "wrong-password" not in repr(err.value) + str(err.value)
    finally:
        fake.stop()


@pytest.fixture
def cert(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    key, crt = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(crt),
        ],
        check=True,
        capture_output=True,
    )
    return key, crt


async def test_starttls_with_auth(make_target: MakeTarget, cert: tuple[Path, Path]) -> None:
    key, crt = cert
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(crt, key)
    fake = SMTPFake(auth=True, tls_context=ctx).start()
    try:
        target = _email(
            make_target,
            fake.port,
            security="starttls",
            ca_file=str(crt),
            username=USER,
            password=PASSWORD,
        )
        await target.send(make_notification())
        assert len(fake.messages) == 1
        # without the CA the certificate is refused, permanently
        untrusted = _email(
            make_target, fake.port, security="starttls", username=USER, password=PASSWORD
        )
        with pytest.raises(PermanentError) as err:
            await untrusted.send(make_notification())
        assert err.value.reason == "tls_verify"
    finally:
        fake.stop()


def test_message_id_is_deterministic_and_valid() -> None:
    a = message_id("1:opened:mail:1", "example.com")
    assert a == message_id("1:opened:mail:1", "example.com")
    assert a != message_id("1:opened:mail:2", "example.com")
    assert a.startswith("<ib.") and a.endswith("@example.com>")


async def test_html_part_escapes_labels(smtp: SMTPFake, make_target: MakeTarget) -> None:
    inc = incident(title="</h2><script>alert(1)</script>")
    await _email(make_target, smtp.port).send(make_notification(inc=inc))
    html = smtp.messages[0].get_body(preferencelist=("html",))
    assert html is not None
    assert "<script>" not in html.get_content()
    assert "&lt;script&gt;" in html.get_content()


async def test_implicit_tls(make_target: MakeTarget, cert: tuple[Path, Path]) -> None:
    key, crt = cert
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(crt, key)
    fake = SMTPFake(implicit_tls=ctx).start()
    try:
        await _email(make_target, fake.port, security="tls", ca_file=str(crt)).send(
            make_notification()
        )
        assert len(fake.messages) == 1
    finally:
        fake.stop()
