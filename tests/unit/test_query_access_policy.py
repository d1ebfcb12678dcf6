"""Who may ask the query service what: the access file read into identities with their scope,
every mistake in it named on one line, callers recognised by certificate or token, and the
scope applied to each question without telling whether a licence exists."""

from __future__ import annotations

import re
import tomllib

import pytest

from bridge.core.errors import ConfigError
from bridge.core.query_access import (
    ACCESS_DENIED,
    AUTHENTICATION_FAILED,
    AccessFileError,
    Identity,
    Refusal,
    access_policy_from,
    country_refusal,
    holder_refusal,
    identify,
    licence_refusal,
)
from bridge.services.query_access import is_loopback, load_access_file, query_access

ACCESS_FILE = """
[identities.de-atlas]
certificate_cn = "atlas.zoll.example"
customs_offices = ["DE004800", "DE004801"]

[identities.nl-ags]
username = "nl-ags"
password_file = "nl-ags.password"
member_states = ["NL"]

[identities.benelux]
certificate_san = ["gateway.benelux.example"]
member_states = ["BE", "NL", "LU"]
"""


def policy(text: str = ACCESS_FILE, source: str = "access.toml"):
    return access_policy_from(tomllib.loads(text), source)


def problem(text: str) -> str:
    with pytest.raises(AccessFileError) as wrong:
        policy(text)
    message = str(wrong.value)
    assert "\n" not in message and message.startswith("access file access.toml: ")
    return message


def test_an_office_counts_as_its_member_state():
    atlas = policy().by_certificate(["atlas.zoll.example"], [])[0]
    assert atlas.name == "de-atlas"
    assert atlas.member_states == {"DE"}
    assert atlas.customs_offices == ("DE004800", "DE004801")


def test_a_certificate_is_recognised_by_its_common_name_or_a_subject_alt_name():
    rules = policy()
    assert identify(rules, common_names=["atlas.zoll.example"]).name == "de-atlas"
    found = identify(rules, common_names=["gw"], alt_names=["gateway.benelux.example"])
    assert found.name == "benelux"


def test_an_unknown_certificate_is_denied_and_no_credential_at_all_fails_authentication():
    rules = policy()
    stranger = identify(rules, common_names=["stranger.example"], alt_names=["stranger.example"])
    assert isinstance(stranger, Refusal) and stranger.code == ACCESS_DENIED
    nobody = identify(rules)
    assert isinstance(nobody, Refusal) and nobody.code == AUTHENTICATION_FAILED


def test_a_verified_token_decides_over_the_certificate():
    found = identify(
        rules := policy(), common_names=["atlas.zoll.example"], token_username="nl-ags"
    )
    assert found == rules.by_username("nl-ags")


def test_a_certificate_matching_two_identities_is_denied():
    text = ACCESS_FILE + '\n[identities.second]\ncertificate_cn = "gw"\nmember_states = ["FR"]\n'
    both = identify(policy(text), common_names=["gw"], alt_names=["gateway.benelux.example"])
    assert both.code == ACCESS_DENIED and "several identities" in both.reason


def test_a_holder_is_asked_about_by_the_member_state_of_its_eori():
    atlas = policy().by_certificate(["atlas.zoll.example"], [])[0]
    assert holder_refusal(atlas, "DE123456789012") is None
    refused = holder_refusal(atlas, "NL123456789")
    assert refused.code == ACCESS_DENIED and "member state DE" in refused.reason


def test_an_unknown_licence_and_one_outside_the_scope_read_alike():
    atlas = Identity("de-atlas", frozenset({"DE"}))
    assert licence_refusal(atlas, "DE-EXP-1", "DE") is None
    outside = licence_refusal(atlas, "NL-1", "NL")
    unknown = licence_refusal(atlas, "NL-1", None)
    assert outside.code == unknown.code == ACCESS_DENIED
    assert outside.reason == unknown.reason  # what the caller sees
    assert (outside.detail, unknown.detail) == ("issued by NL", "no such licence")  # audit only


def test_a_customs_country_outside_the_scope_is_refused():
    atlas = Identity("de-atlas", frozenset({"DE"}))
    assert country_refusal(atlas, None) is None and country_refusal(atlas, "DE") is None
    assert country_refusal(atlas, "FR").code == ACCESS_DENIED


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ('member_states = ["DE"]', "needs certificate_cn, certificate_san or username"),
        ('certificate_cn = "x"', "needs customs_offices or member_states"),
        ('username = "u"\nmember_states = ["DE"]', "needs its password from password_file"),
        (
            'username = "u"\npassword = "hunter2"\nmember_states = ["DE"]',
            "a password never goes in the access file",
        ),
        ('certificate_cn = "x"\ncustoms_offices = ["DE48"]', "customs office 'DE48'"),
        ('certificate_cn = "x"\nmember_states = ["EL"]', "EL is the VAT prefix for Greece"),
        ('certificate_cn = "x"\nmember_states = ["DE"]\ncolour = "red"', "unknown setting colour"),
        ('certificate_cn = "x"\nmember_states = "DE, NL"', "member state 'DE, NL'"),
        ('password_env = "P"\ncertificate_cn = "x"\nmember_states = ["DE"]', "without a username"),
    ],
)
def test_each_mistake_names_the_file_the_entry_and_the_problem(entry, expected):
    message = problem(f"[identities.customs-x]\n{entry}\n")
    assert "identity 'customs-x': " in message and expected in message
    assert "hunter2" not in message


def test_a_credential_used_by_two_identities_is_refused():
    text = ACCESS_FILE + '\n[identities.copy]\nusername = "nl-ags"\npassword_env = "P"\n'
    text += 'member_states = ["DE"]\n'
    assert "username 'nl-ags' is already 'nl-ags''s" in problem(text)


def test_a_file_without_identities_is_refused():
    assert "no identities" in problem("")
    assert "unknown key users" in problem("[users.x]\n")


def test_passwords_come_from_a_file_beside_the_access_file_or_from_the_environment(tmp_path):
    access = tmp_path / "access.toml"
    access.write_text(
        ACCESS_FILE + '\n[identities.fr]\nusername = "fr-delta"\npassword_env = "FR_PASSWORD"\n'
        'member_states = ["FR"]\n'
    )
    (tmp_path / "nl-ags.password").write_text("another staple\n")
    loaded = load_access_file(access, {"FR_PASSWORD": "from-the-env"})
    assert loaded.password("nl-ags") == "another staple"  # the final newline dropped
    assert loaded.password("fr-delta") == "from-the-env"
    assert "another staple" not in repr(loaded)


def test_a_missing_password_names_the_entry_and_never_a_password(tmp_path):
    access = tmp_path / "access.toml"
    access.write_text(ACCESS_FILE)
    with pytest.raises(AccessFileError) as missing:
        load_access_file(access, {})
    message = str(missing.value)
    assert message.startswith(f"access file {access}: identity 'nl-ags': password_file ")
    assert "cannot read it" in message
    access.write_text(
        '[identities.x]\nusername = "x"\npassword_env = "X_PW"\nmember_states = ["DE"]'
    )
    with pytest.raises(AccessFileError, match="password_env X_PW is not set or empty"):
        load_access_file(access, {})


def test_an_unreadable_or_broken_access_file_is_named(tmp_path):
    with pytest.raises(AccessFileError, match="cannot read it"):
        load_access_file(tmp_path / "nowhere.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[identities.x\n")
    with pytest.raises(AccessFileError, match=re.escape(f"access file {broken}: not TOML")):
        load_access_file(broken)


def test_without_an_access_file_only_a_loopback_service_answers_anyone():
    assert query_access(None, "127.0.0.1").anonymous
    assert query_access("", "::1").anonymous
    assert query_access(None, "localhost").anonymous
    with pytest.raises(ConfigError, match=re.escape("on 0.0.0.0 would answer anyone")):
        query_access(None, "0.0.0.0")
    assert query_access(None, "0.0.0.0", allow_anonymous=True).anonymous
    assert not is_loopback("192.168.1.10") and not is_loopback("example.org")


def test_an_access_file_and_allow_anonymous_contradict_each_other(tmp_path):
    with pytest.raises(ConfigError, match="choose one"):
        query_access(tmp_path / "access.toml", "127.0.0.1", allow_anonymous=True)


def test_beyond_loopback_the_service_needs_tls_whoever_may_ask(tmp_path):
    with pytest.raises(ConfigError, match="would send licence data in clear"):
        query_access(tmp_path / "access.toml", "10.1.2.3", tls=False)
    with pytest.raises(ConfigError, match="would send licence data in clear"):
        query_access(None, "0.0.0.0", allow_anonymous=True, tls=False)
    assert query_access(None, "127.0.0.1", tls=False).anonymous
