"""The console's logins, roles, sessions and protection against cross-site requests, at the HTTP
level (Starlette's TestClient on the real app and a real SQLite ledger): what a browser would
add nothing to."""

from __future__ import annotations

import os
import re
import stat
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from bridge.core.errors import ConfigError
from bridge.entrypoints.console.app import SESSION_COOKIE, create_app
from bridge.entrypoints.console.auth import (
    add_user,
    hash_password,
    read_users,
    remove_user,
    session_secret,
    users_file,
)
from bridge.services.config import Settings
from tests.browser.helpers import ORIGIN, console_client, csrf_of, log_in, post_form


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


def _cookie(answer) -> SimpleCookie:
    jar = SimpleCookie()
    jar.load(answer.headers["set-cookie"])
    return jar


def test_passwords_are_scrypt_hashes_each_with_its_own_salt(settings):
    path = users_file(settings)
    add_user(path, "olga", "officer", "the same password", full_name="Olga Brandt")
    add_user(path, "arne", "auditor", "the same password")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert "the same password" not in text
    users = read_users(path)
    olga, arne = users["olga"], users["arne"]
    assert olga.salt != arne.salt and olga.password_hash != arne.password_hash
    assert olga.password_hash == hash_password("the same password", olga.salt)
    assert (olga.user.role, olga.user.actor) == ("officer", "Olga Brandt (olga)")
    assert arne.user.actor == "arne"


@pytest.mark.parametrize(
    ("name", "role", "password", "why"),
    [
        ("olga", "officer", "short", "at least 10 characters"),
        ("olga", "admin", "long enough pw", "role 'admin'"),
        ("../etc", "officer", "long enough pw", "user name"),
    ],
)
def test_a_bad_user_is_refused_with_the_reason(settings, name, role, password, why):
    with pytest.raises(ConfigError, match=why):
        add_user(users_file(settings), name, role, password)
    assert not users_file(settings).exists()


def test_a_user_is_added_once_unless_replaced_and_removed_by_name(settings):
    path = users_file(settings)
    add_user(path, "olga", "auditor", "first password")
    with pytest.raises(ConfigError, match="exists already"):
        add_user(path, "olga", "officer", "second password")
    add_user(path, "olga", "officer", "second password", replace=True)
    assert read_users(path)["olga"].user.role == "officer"
    remove_user(path, "olga")
    assert read_users(path) == {}
    with pytest.raises(ConfigError, match="no user 'olga'"):
        remove_user(path, "olga")


def test_a_users_file_that_is_wrong_names_the_file_and_the_user(settings):
    path = users_file(settings)
    path.parent.mkdir(parents=True)
    path.write_text('[users.olga]\nrole = "boss"\nsalt = "00"\nhash = "00"\n')
    with pytest.raises(ConfigError, match=r"users.toml: user 'olga': role 'boss'"):
        read_users(path)
    path.write_text("[users\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_users(path)


def test_the_session_secret_is_made_once_kept_private_and_reused(settings):
    first = session_secret(settings)
    kept = settings.home / "console" / "secret"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert session_secret(settings) == first and len(first) >= 32
    given = settings.with_overrides(console_secret="a secret given by the operator")
    assert session_secret(given) == "a secret given by the operator"
    with pytest.raises(ConfigError, match="at least 16"):
        session_secret(settings.with_overrides(console_secret="short"))


def test_the_session_cookie_is_signed_httponly_and_samesite_strict(settings):
    client = console_client(settings, role=None)
    name, password = client.users["officer"]
    answer = log_in(client, name, password)
    assert answer.status_code == 303
    cookie = _cookie(answer)[SESSION_COOKIE]
    assert cookie["httponly"] and cookie["samesite"].lower() == "strict"
    assert not cookie["secure"]  # plain HTTP here; HTTPS below
    secure = TestClient(create_app(settings, secure_cookies=True), base_url="https://testserver")
    token = csrf_of(secure.get("/login").text)
    answer = secure.post(
        "/login",
        data={"name": name, "password": password, "csrf_token": token},
        headers={"Origin": "https://testserver"},
        follow_redirects=False,
    )
    assert answer.status_code == 303 and _cookie(answer)[SESSION_COOKIE]["secure"]
    # a cookie signed with another secret is nobody's session
    forged = TestClient(
        create_app(settings.with_overrides(console_secret="another secret entirely")),
        base_url=ORIGIN,
    )
    forged.cookies.set(SESSION_COOKIE, cookie.value)
    assert forged.get("/licences", follow_redirects=False).status_code == 303


def test_a_visitor_not_logged_in_is_sent_to_log_in_and_may_post_nothing(settings):
    client = console_client(settings, role=None)
    answer = client.get("/licences?status=valid", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "http://testserver/login?next=%2Flicences%3Fstatus%3Dvalid"
    token = csrf_of(client.get("/login").text)
    refused = client.post(
        "/alerts/acknowledge",
        data={"id": "1", "csrf_token": token},
        headers={"Origin": ORIGIN},
        follow_redirects=False,
    )
    assert refused.status_code == 403 and "not logged in" in refused.text


def test_a_failed_login_is_refused_and_logged_without_the_password(settings, caplog):
    client = console_client(settings, role=None)
    name, _password = client.users["officer"]
    with caplog.at_level("WARNING", logger="bridge.console.auth"):
        wrong = log_in(client, name, "a guess at the password")
        unknown = log_in(client, "mallory", "a guess at the password")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.text.count("Unknown user or wrong password.") == 1
    messages = [record.getMessage() for record in caplog.records]
    assert any(f"'{name}'" in m and "wrong password" in m for m in messages)
    assert any("'mallory'" in m and "unknown user" in m for m in messages)
    assert not any("a guess at the password" in m for m in messages)


def test_after_login_the_visitor_goes_where_they_wanted_but_never_off_site(settings):
    client = console_client(settings, role=None)
    name, password = client.users["auditor"]
    for wanted, landed in (
        ("/alerts?state=all", "/alerts?state=all"),
        ("//evil.example/x", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
    ):
        client.cookies.clear()
        token = csrf_of(client.get("/login").text)
        answer = client.post(
            "/login",
            data={"name": name, "password": password, "csrf_token": token, "next": wanted},
            headers={"Origin": ORIGIN},
            follow_redirects=False,
        )
        assert answer.headers["location"].removeprefix(ORIGIN) == landed, wanted


def test_every_post_route_refuses_an_auditor_and_a_request_without_the_token(settings):
    """Walks the app's routes, those of the modules it includes too: every POST needs an
    officer, the session's token and the console's own origin."""
    # A route's own failure on a made-up id is its business here: only the guard is checked.
    officer = console_client(settings, role="officer", raise_server_exceptions=False)
    auditor = console_client(settings, role="auditor")
    posts = [
        route.path
        for route in officer.app.routes
        if isinstance(route, Route)
        and "POST" in (route.methods or ())
        and route.name not in ("login_post", "logout")
    ]
    assert {"/alerts/acknowledge", "/manual/write-off", "/manual/reversal"} <= set(posts)
    for path in posts:
        url = re.sub(r"\{[^}]+\}", "1", path)  # a path parameter: any id will do
        assert post_form(auditor, url, {"id": "1"}).status_code == 403, path
        missing = officer.post(url, data={"id": "1"}, headers={"Origin": ORIGIN})
        assert missing.status_code == 403 and "CSRF" in missing.text, path
        foreign = post_form(officer, url, {"id": "1"}, headers={"Origin": "http://evil.example"})
        assert foreign.status_code == 403 and "Origin" in foreign.text, path
        assert post_form(officer, url, {"id": "1"}).status_code != 403, path


def test_the_origin_is_checked_from_origin_or_referer_and_trusted_origins_are_allowed(settings):
    client = console_client(settings, role="officer")
    data = {"id": "999", "csrf_token": client.token}
    no_origin = client.post("/alerts/acknowledge", data=data, follow_redirects=False)
    referer = client.post(
        "/alerts/acknowledge",
        data=data,
        headers={"Referer": f"{ORIGIN}/alerts"},
        follow_redirects=False,
    )
    other_referer = client.post(
        "/alerts/acknowledge",
        data=data,
        headers={"Referer": "http://evil.example/alerts"},
        follow_redirects=False,
    )
    assert (no_origin.status_code, referer.status_code, other_referer.status_code) == (
        403,
        303,
        403,
    )
    proxied = console_client(settings, role="officer")
    proxied.app.state.trusted_origins = frozenset({"https://airflow.example"})
    answer = post_form(
        proxied, "/alerts/acknowledge", {"id": "999"}, headers={"Origin": "https://airflow.example"}
    )
    assert answer.status_code == 303


def test_a_removed_user_is_out_at_the_next_request_and_logout_ends_the_session(settings):
    officer = console_client(settings, role="officer")
    auditor = console_client(settings, role="auditor")
    assert auditor.get("/licences", follow_redirects=False).status_code == 200
    remove_user(users_file(settings), auditor.user_name)
    assert auditor.get("/licences", follow_redirects=False).status_code == 303
    assert post_form(officer, "/logout").status_code == 303
    assert officer.get("/licences", follow_redirects=False).status_code == 303


def test_the_console_works_mounted_under_a_prefix(settings):
    """As Airflow's plugin mounts it: every link, redirect and asset under the prefix."""
    inner = console_client(settings, role=None)
    parent = Starlette(routes=[Mount("/console", app=inner.app)])
    client = TestClient(parent, base_url=ORIGIN)
    answer = client.get("/console/licences", follow_redirects=False)
    assert answer.headers["location"] == f"{ORIGIN}/console/login?next=%2Fconsole%2Flicences"
    page = client.get("/console/login").text
    assert 'href="http://testserver/console/static/console.css"' in page
    assert 'action="http://testserver/console/login"' in page
    assert client.get("/console/static/console.css").status_code == 200
    name, password = inner.users["officer"]
    answer = client.post(
        "/console/login",
        data={
            "name": name,
            "password": password,
            "csrf_token": csrf_of(page),
            "next": "/console/alerts",
        },
        headers={"Origin": ORIGIN},
        follow_redirects=False,
    )
    assert answer.headers["location"].removeprefix(ORIGIN) == "/console/alerts"
    licences = client.get("/console/licences").text
    links = [part.split('"')[0] for part in licences.split('href="')[1:]]
    assert links and all(link.startswith(f"{ORIGIN}/console/") for link in links), links


def test_every_answer_carries_the_security_headers_and_big_bodies_are_refused(settings):
    client = console_client(settings, role="officer")
    answer = client.get("/licences")
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    assert "script-src" not in answer.headers["content-security-policy"]  # none: no scripts
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["cache-control"] == "no-store"
    big = post_form(client, "/alerts/acknowledge", {"id": "1" * (5 * 1024 * 1024)})
    assert big.status_code == 413


def test_the_users_file_is_found_where_the_settings_say(settings, tmp_path):
    elsewhere = tmp_path / "etc" / "console-users.toml"
    moved = settings.with_overrides(console_users_file=str(elsewhere))
    assert users_file(moved) == elsewhere
    assert users_file(settings) == settings.home / "console" / "users.toml"
    add_user(users_file(moved), "olga", "officer", "long enough pw")
    assert elsewhere.exists() and not users_file(settings).exists()
    assert os.stat(elsewhere).st_mode & 0o077 == 0


def test_guessing_a_password_is_stopped_after_five_failures_for_a_quarter_of_an_hour(
    settings, caplog
):
    now = [datetime(2026, 12, 6, 9, 0, tzinfo=UTC)]
    client = console_client(settings, role=None, clock=lambda: now[0])
    name, password = client.users["officer"]
    for guess in range(5):
        assert log_in(client, name, f"guess number {guess}").status_code == 401
        now[0] += timedelta(minutes=1)
    with caplog.at_level("WARNING", logger="bridge.console.auth"):
        refused = log_in(client, name, password)  # the right password, but too late
    assert refused.status_code == 429
    assert "Too many failed logins. Try again after 09:15 UTC." in refused.text
    assert any("too many failed logins" in r.getMessage() for r in caplog.records)
    assert password not in caplog.text
    # A name nobody has is throttled alike: the refusal tells no names.
    for guess in range(5):
        assert log_in(client, "mallory", f"guess number {guess}").status_code == 401
    assert log_in(client, "mallory", "one more guess").status_code == 429
    # The oldest failure leaves the window at 09:15; the right password then works, and
    # forgets the name's failures.
    now[0] = datetime(2026, 12, 6, 9, 15, tzinfo=UTC)
    assert log_in(client, name, password).status_code == 303
    client.cookies.clear()
    assert log_in(client, name, "one wrong guess").status_code == 401
    assert log_in(client, name, password).status_code == 303


def test_one_address_trying_many_names_is_stopped_after_twenty_failures(settings):
    now = [datetime(2026, 12, 6, 9, 0, tzinfo=UTC)]
    client = console_client(settings, role=None, clock=lambda: now[0])
    name, password = client.users["auditor"]
    for guess in range(20):
        assert log_in(client, f"user{guess}", "a guess at the password").status_code == 401
    assert log_in(client, name, password).status_code == 429
    now[0] += timedelta(minutes=15)
    assert log_in(client, name, password).status_code == 303


def test_behind_a_proxy_the_public_address_may_post_and_an_https_one_makes_the_cookie_secure(
    settings,
):
    public = settings.with_overrides(console_public_url="https://Airflow.example/elbridge-console/")
    client = console_client(public, role=None)
    name, password = client.users["officer"]
    # TLS ends at the proxy: the console itself is reached over plain HTTP, and the browser,
    # on https, sends the Secure cookie back (sent by hand here: httpx keeps it for https).
    form = client.get("/login")
    first = _cookie(form)[SESSION_COOKIE]
    assert first["secure"]
    client.cookies.clear()

    def post(origin: str):
        return client.post(
            "/login",
            data={"name": name, "password": password, "csrf_token": csrf_of(form.text)},
            headers={"Origin": origin, "Cookie": f"{SESSION_COOKIE}={first.value}"},
            follow_redirects=False,
        )

    assert post("https://evil.example").status_code == 403
    answer = post("https://airflow.example")
    assert answer.status_code == 303
    assert _cookie(answer)[SESSION_COOKIE]["secure"]


@pytest.mark.parametrize("url", ["airflow.example/console", "ftp://airflow.example/", "https://"])
def test_a_public_address_that_is_not_one_is_refused_naming_it(settings, url):
    with pytest.raises(ConfigError, match="ELBRIDGE_CONSOLE_PUBLIC_URL"):
        create_app(settings.with_overrides(console_public_url=url))
