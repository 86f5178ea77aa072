"""The login limit (issue #18, finding 1): wrong passwords are counted per username and per client address
in the shared cache, on every login path (the site form, the token endpoint, the Django admin), whatever
X-Forwarded-For says, and the count is shared by web processes: two real gunicorn servers below."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from axes.helpers import get_client_cache_keys
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client, RequestFactory, override_settings
from pytest_django.fixtures import Settings
from rest_framework.authtoken.models import Token
from rest_framework.throttling import ScopedRateThrottle

from bench import stack
from tests.fixtures import PASSWORD, wait_for
from tests.fixtures import test_database_url as database_url_of_the_tests
from webapp.accounts.lockout import client_ip
from webapp.audit.models import AuditEvent

TOKEN_URL = "/api/v1/auth/token/"
WRONG = 30


@pytest.fixture(autouse=True)
def fresh_counts() -> Iterator[None]:
    cache.clear()  # login failures and throttles count in the default cache (only its own keys)
    yield
    cache.clear()


def site_login(client: Client, username: str, password: str, **extra: Any) -> int:
    return client.post("/accounts/login/", {"username": username, "password": password}, **extra).status_code


def admin_login(client: Client, username: str, password: str, **extra: Any) -> int:
    body = {"username": username, "password": password, "next": "/django-admin/"}
    return client.post("/django-admin/login/", body, **extra).status_code


def token_login(client: Client, username: str, password: str, **extra: Any) -> int:
    body = {"username": username, "password": password}
    return client.post(TOKEN_URL, body, content_type="application/json", **extra).status_code


LOGINS: dict[str, tuple[Callable[..., int], int, int]] = {
    # path: (login, status of a wrong password, status of the right one when not locked out)
    "site form": (site_login, 200, 302),
    "token endpoint": (token_login, 400, 200),
    "django admin": (admin_login, 200, 302),
}


@pytest.mark.parametrize("path", LOGINS)
def test_it_locks_a_username_out_of_each_login_path_whatever_x_forwarded_for_says(
    path: str, staff: User, settings: Settings
) -> None:
    login, wrong_status, right_status = LOGINS[path]
    client = Client()
    statuses = [
        login(client, "staff", f"guess {i}", HTTP_X_FORWARDED_FOR=f"203.0.113.{i}") for i in range(WRONG)
    ]
    limit = settings.AXES_FAILURE_LIMIT
    assert statuses == [wrong_status] * (limit - 1) + [429] * (WRONG - limit + 1)
    refused = Client().post(
        "/django-admin/login/" if path == "django admin" else "/accounts/login/" if path == "site form" else TOKEN_URL,
        {"username": "staff", "password": PASSWORD},
        HTTP_X_FORWARDED_FOR="198.51.100.7",
        REMOTE_ADDR="192.0.2.50",  # another address: the username itself is locked out
    )
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) == int(settings.AXES_COOLOFF_TIME.total_seconds())
    text = refused.json()["detail"] if path == "token endpoint" else refused.content.decode()
    assert re.search(r"Try again after (<time [^>]+>)?\d\d:\d\d UTC", text), text
    assert not Token.objects.exists()
    # The lock-out is recorded once, not once per refused attempt.
    (event,) = AuditEvent.objects.filter(action="login_locked_out", detail__ip_address="127.0.0.1")
    assert event.detail["username"] == "staff" and event.detail["path"].startswith("/")


def test_it_locks_an_address_out_whatever_usernames_it_tries(alice: User, charlie: User) -> None:
    for i in range(WRONG):
        site_login(Client(), f"user{i}", "guess", HTTP_X_FORWARDED_FOR=f"203.0.113.{i}")
    # charlie never typed a wrong password, but from this address nobody logs in now...
    assert site_login(Client(), "charlie", PASSWORD) == 429
    assert token_login(Client(), "charlie", PASSWORD) == 429
    # ...while from another address charlie does.
    assert site_login(Client(), "charlie", PASSWORD, REMOTE_ADDR="192.0.2.10") == 302


def test_the_lock_out_ends_after_the_cool_off(bob: User, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ScopedRateThrottle.THROTTLE_RATES, "token", "1000/minute")  # the lock-out alone
    settings.AXES_COOLOFF_TIME = timedelta(seconds=2)
    for i in range(WRONG):
        token_login(Client(), "bob", f"guess {i}")
    assert token_login(Client(), "bob", PASSWORD) == 429
    # The counts expire from the cache one cool-off after the last failure: nothing deletes them here.
    keys = get_client_cache_keys(RequestFactory().post(TOKEN_URL), {"username": "bob"})
    assert keys and all(cache.get(key) for key in keys)
    wait_for(lambda: all(cache.get(key) is None for key in keys), timeout=20, message="the lock-out's end")
    assert token_login(Client(), "bob", PASSWORD) == 200


def test_it_reads_the_client_address_from_x_forwarded_for_only_behind_trusted_proxies(rf) -> None:  # type: ignore[no-untyped-def]
    request = rf.get("/", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.9", REMOTE_ADDR="10.0.0.2")
    assert client_ip(request) == "10.0.0.2"  # NUM_PROXIES=0 by default: the header is anyone's to write
    with override_settings(NUM_PROXIES=1):
        assert client_ip(request) == "203.0.113.9"  # what our one proxy saw, not what the client claimed
    with override_settings(NUM_PROXIES=2):
        assert client_ip(request) == "6.6.6.6"


# --- two real web processes sharing the count through Redis


class Browser:
    """A cookie-keeping HTTP client that does not follow redirects (a 302 is the answer to check)."""

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            return None

    def __init__(self) -> None:
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), self._NoRedirect)

    def request(self, url: str, data: dict[str, str] | None = None, *, as_json: bool = False,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        body = None
        all_headers = dict(headers or {})
        if data is not None:
            if as_json:
                body = json.dumps(data).encode()
                all_headers["Content-Type"] = "application/json"
            else:
                body = urllib.parse.urlencode(data).encode()
        request = urllib.request.Request(url, data=body, headers=all_headers)
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read().decode()

    def form_login(self, base: str, path: str, username: str, password: str, forwarded: str) -> int:
        status, _, page = self.request(base + path)
        assert status == 200, page[:500]
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token, page[:500]
        data = {"csrfmiddlewaretoken": token.group(1), "username": username, "password": password,
                "next": "/django-admin/" if "admin" in path else "/"}
        return self.request(base + path, data, headers={"X-Forwarded-For": forwarded, "Referer": base + path})[0]


@pytest.fixture
def two_web_servers(transactional_db: None, tmp_path: Path) -> Iterator[tuple[stack.WebServer, stack.WebServer]]:
    if not os.environ.get("REDIS_URL"):
        pytest.skip("needs Redis: the count is shared through it")
    env = {**os.environ, "DATABASE_URL": database_url_of_the_tests(), "LOGIN_LOCKOUT_MINUTES": "15"}
    servers = [stack.WebServer(env=env, log_dir=tmp_path / name, workers=1) for name in ("a", "b")]
    try:
        for server in servers:
            server.wait_ready()
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()


@pytest.mark.redis
@pytest.mark.parametrize("path", ["/accounts/login/", "/django-admin/login/", TOKEN_URL])
def test_two_web_processes_share_the_count(
    path: str, two_web_servers: tuple[stack.WebServer, stack.WebServer], staff: User
) -> None:
    a, b = two_web_servers
    assert a.pid != b.pid

    def attempt(server: stack.WebServer, password: str, forwarded: str) -> int:
        if path == TOKEN_URL:
            body = {"username": "staff", "password": password}
            return Browser().request(server.base_url + path, body, as_json=True,
                                     headers={"X-Forwarded-For": forwarded})[0]
        return Browser().form_login(server.base_url, path, "staff", password, forwarded)

    # One request at a time, alternating between the processes: each sees the other's failures.
    statuses = [attempt((a, b)[i % 2], f"guess {i}", f"203.0.113.{i}") for i in range(WRONG)]
    assert 429 in statuses and statuses.index(429) == 9, statuses  # LOGIN_FAILURE_LIMIT=10 in all, not per process
    assert attempt(a, PASSWORD, "198.51.100.1") == 429
    assert attempt(b, PASSWORD, "198.51.100.2") == 429
    assert not Token.objects.exists()
    assert AuditEvent.objects.filter(action="login_locked_out", detail__username="staff").exists()
