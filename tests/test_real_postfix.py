"""Campaigns sent to a real Postfix (Dovecot SASL, LMTP into Maildirs) on 127.0.0.1.

Each scenario asserts Postfix's own log and the Dovecot Maildirs against the delivery log.
"""

from __future__ import annotations

import smtplib
import ssl

from tests.mailservers import Postfix, delivered, queue_ids


def test_fixture_delivers_over_submission_with_starttls_and_auth(postfix: Postfix) -> None:
    mark = postfix.log_mark()
    context = ssl.create_default_context(cafile=str(postfix.ca_bundle))
    with smtplib.SMTP(
        "127.0.0.1", postfix.submission_port, local_hostname="client.example.org"
    ) as s:
        s.ehlo()
        assert "auth" not in s.esmtp_features  # AUTH only after STARTTLS
        s.starttls(context=context)
        s.ehlo()
        s.login("collectif@example.org", "mot-de-passe-1")
        s.sendmail(
            "collectif@example.org", ["alice@example.com"], b"Subject: essai\r\n\r\nbonjour\r\n"
        )
    lines = postfix.wait_delivered(1, mark=mark)
    assert len(lines) == 1
    assert len(queue_ids(postfix.log_since(mark))) == 1
    [message] = postfix.dovecot.messages("alice@example.com")
    assert message["Subject"] == "essai"


def test_fixture_cannot_relay(postfix: Postfix) -> None:
    with smtplib.SMTP("127.0.0.1", postfix.smtp_port) as s:
        refused = s.sendmail("a@example.org", ["someone@gmail.com", "b@example.org"], b"\r\nx\r\n")
    assert "someone@gmail.com" in refused
    postfix.wait_delivered(1)
    assert not any("gmail" in line for line in delivered(postfix.log_since()))


def test_fixture_reconfigures_and_resets(postfix: Postfix) -> None:
    postfix.refuse({"gone@example.org": "550 5.1.1 User unknown"})
    with smtplib.SMTP("127.0.0.1", postfix.smtp_port) as s:
        refused = s.sendmail(
            "a@example.org", ["gone@example.org", "here@example.org"], b"\r\nx\r\n"
        )
    assert list(refused) == ["gone@example.org"]
    assert refused["gone@example.org"][0] == 550
    postfix.reset()
    with smtplib.SMTP("127.0.0.1", postfix.smtp_port) as s:
        assert s.sendmail("a@example.org", ["gone@example.org"], b"\r\nx\r\n") == {}
