"""WS-Security UsernameTokens as the bridge's SOAP services check them: the digest zeep's own
UsernameToken writes is accepted for the right password only, once per nonce, while its
Created is fresh; the password in clear only where a service allows it."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from lxml import etree
from zeep.wsse.username import UsernameToken

from bridge.adapters.soap.wssecurity import (
    AuthenticationFailed,
    TokenUser,
    UsernameTokenVerifier,
    username_of,
)
from bridge.core.username_token import NonceRegister, created_problem, password_digest

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
NOW = datetime(2026, 12, 6, 9, 0, 0, tzinfo=UTC)
_WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
_WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
PASSWORDS = {"de-atlas": "correct horse battery", "nl-ags": "another staple"}


def header(username: str, password: str, *, created=NOW, nonce: str | None = None, **opts):
    """The SOAP Header zeep writes for this token (its own digest, nonce and Created)."""
    envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope")
    etree.SubElement(envelope, f"{{{SOAP_ENV}}}Header")
    etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body")
    token = UsernameToken(
        username,
        password,
        use_digest=opts.pop("use_digest", True),
        created=created,
        nonce=nonce,
        zulu_timestamp=True,
    )
    token.apply(envelope, {})
    return envelope.find(f"{{{SOAP_ENV}}}Header")


def verifier(**options) -> UsernameTokenVerifier:
    return UsernameTokenVerifier(PASSWORDS, clock=lambda: NOW, **options)


def refusal(check: UsernameTokenVerifier, token_header) -> AuthenticationFailed:
    with pytest.raises(AuthenticationFailed) as failed:
        check.verify(token_header)
    return failed.value


def test_a_digest_made_by_zeep_authenticates_its_user():
    check = verifier()
    assert check.verify(header("de-atlas", PASSWORDS["de-atlas"])) == TokenUser(
        "de-atlas", "password-digest"
    )
    assert check.verify(header("nl-ags", PASSWORDS["nl-ags"])).username == "nl-ags"


def test_our_digest_is_the_one_zeep_computes():
    token = header("de-atlas", PASSWORDS["de-atlas"], nonce="0123456789abcdef")
    ns = {"wsse": _WSSE, "wsu": _WSU}
    given = token.findtext(".//wsse:Password", namespaces=ns)
    created = token.findtext(".//wsu:Created", namespaces=ns)
    assert password_digest(b"0123456789abcdef", created, PASSWORDS["de-atlas"]) == given


def test_a_wrong_password_and_an_unknown_user_read_alike_to_the_caller():
    check = verifier()
    wrong = refusal(check, header("de-atlas", "guess"))
    unknown = refusal(check, header("mallory", "guess"))
    assert wrong.reason == unknown.reason == "unknown user or wrong password"
    assert wrong.detail == "the password digest does not match"
    assert unknown.detail == "unknown user"
    assert wrong.username == "de-atlas"


def test_one_users_password_does_not_open_anothers_account():
    failed = refusal(verifier(), header("de-atlas", PASSWORDS["nl-ags"]))
    assert failed.detail == "the password digest does not match"


def test_a_replayed_token_is_refused_the_second_time():
    check = verifier()
    token = header("de-atlas", PASSWORDS["de-atlas"])
    assert check.verify(token).username == "de-atlas"
    assert "used before (a replay)" in refusal(check, token).reason


def test_a_failed_attempt_does_not_spend_the_nonce():
    check = verifier()
    nonce = "fixed-nonce-0001"
    refusal(check, header("de-atlas", "guess", nonce=nonce))
    assert check.verify(header("de-atlas", PASSWORDS["de-atlas"], nonce=nonce))


def test_a_stale_or_future_token_is_refused_even_with_the_right_password():
    check = verifier()
    stale = refusal(
        check, header("de-atlas", PASSWORDS["de-atlas"], created=NOW - timedelta(minutes=6))
    )
    assert "stale" in stale.reason
    future = refusal(
        check, header("de-atlas", PASSWORDS["de-atlas"], created=NOW + timedelta(minutes=6))
    )
    assert "from now" in future.reason
    near = NOW - timedelta(minutes=4)  # clock skew within the window
    assert check.verify(header("de-atlas", PASSWORDS["de-atlas"], created=near))


def test_the_password_itself_is_refused_unless_the_service_accepts_it():
    clear = header("de-atlas", PASSWORDS["de-atlas"], use_digest=False)
    assert "only a password digest" in refusal(verifier(), clear).reason
    assert verifier(accept_password_text=True).verify(clear) == TokenUser(
        "de-atlas", "password-text"
    )
    wrong = header("de-atlas", "guess", use_digest=False)
    assert refusal(verifier(accept_password_text=True), wrong).reason == (
        "unknown user or wrong password"
    )


def test_no_token_is_no_user_and_the_claimed_name_can_be_read_unchecked():
    check = verifier()
    assert check.verify(None) is None
    assert check.verify(etree.Element(f"{{{SOAP_ENV}}}Header")) is None
    assert username_of(header("nl-ags", "anything")) == "nl-ags"


def test_a_malformed_nonce_or_missing_created_is_refused():
    token = header("de-atlas", PASSWORDS["de-atlas"])
    nonce = token.find(f".//{{{_WSSE}}}Nonce")
    nonce.text = "not base64!"
    assert "not Base64" in refusal(verifier(), token).reason
    token = header("de-atlas", PASSWORDS["de-atlas"])
    created = token.find(f".//{{{_WSU}}}Created")
    created.getparent().remove(created)
    assert "Nonce and Created" in refusal(verifier(), token).reason


def test_an_expired_timestamp_is_refused():
    token = header("de-atlas", PASSWORDS["de-atlas"])
    security = token.find(f"{{{_WSSE}}}Security")
    stamp = etree.SubElement(security, f"{{{_WSU}}}Timestamp")
    etree.SubElement(stamp, f"{{{_WSU}}}Expires").text = "2026-12-06T08:59:00Z"
    assert "expired" in refusal(verifier(), token).reason


def test_created_problem_and_the_nonce_register_work_on_the_given_time():
    assert created_problem("2026-12-06T08:58:00Z", NOW) is None
    assert "not a date" in created_problem("yesterday", NOW)
    register = NonceRegister(timedelta(minutes=5))
    nonce = base64.b64encode(b"n").decode()
    assert register.first_use("u", nonce, NOW)
    assert not register.first_use("u", nonce, NOW + timedelta(minutes=1))
    assert register.first_use("other", nonce, NOW)  # per user
    assert register.first_use("u", nonce, NOW + timedelta(minutes=6))  # forgotten after window
