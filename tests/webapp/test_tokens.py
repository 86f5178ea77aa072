"""API tokens: obtained with a password, revoked with the token itself, and throttled (as uploads are)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient
from rest_framework.throttling import ScopedRateThrottle

from tests.fixtures import PASSWORD, api_client
from tests.webapp import image_bytes, uploaded
from webapp.audit.models import AuditEvent

TOKEN_URL = "/api/v1/auth/token/"


@pytest.fixture(autouse=True)
def fresh_throttles() -> Iterator[None]:
    cache.clear()  # the throttles count in the default cache
    yield
    cache.clear()


def obtain(username: str, password: str = PASSWORD):  # type: ignore[no-untyped-def]
    return APIClient().post(TOKEN_URL, {"username": username, "password": password}, format="json")


def test_it_gives_a_user_their_token_for_their_password(bob: User) -> None:
    response = obtain("bob")
    assert response.status_code == 200
    key = response.json()["token"]
    assert Token.objects.get(user=bob).key == key
    assert obtain("bob").json()["token"] == key  # one token per user, as `drf_create_token` makes
    assert AuditEvent.objects.filter(action="token_create", actor=bob).count() == 1
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/v1/cases/").status_code == 200


def test_a_wrong_password_gets_no_token(bob: User) -> None:
    response = obtain("bob", "not the password")
    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["Unable to log in with provided credentials."]}
    assert not Token.objects.exists()


def test_a_revoked_token_is_refused_from_then_on(bob: User) -> None:
    client = api_client(bob)
    assert client.get("/api/v1/cases/").status_code == 200
    assert client.delete(TOKEN_URL).status_code == 204
    assert not Token.objects.filter(user=bob).exists()
    refused = client.get("/api/v1/cases/")
    assert refused.status_code == 401
    assert refused.json() == {"detail": "Invalid token."}
    assert client.delete(TOKEN_URL).status_code == 401
    assert AuditEvent.objects.filter(action="token_revoke", actor=bob).count() == 1
    # A new one can be obtained, and it is a different key.
    assert obtain("bob").status_code == 200


def test_revoking_needs_the_token(bob: User) -> None:
    assert APIClient().delete(TOKEN_URL).status_code == 401


def test_password_guesses_are_throttled(bob: User, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ScopedRateThrottle.THROTTLE_RATES, "token", "3/minute")
    assert [obtain("bob", f"guess {i}").status_code for i in range(3)] == [400, 400, 400]
    throttled = obtain("bob")  # even the right password, until the minute is over
    assert throttled.status_code == 429
    assert int(throttled["Retry-After"]) > 0
    assert not Token.objects.exists()


def test_uploads_are_throttled_and_reads_are_not(bob: User, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ScopedRateThrottle.THROTTLE_RATES, "upload", "2/minute")
    client = api_client(bob)

    def post(seed: int) -> int:
        body = {"image": uploaded(f"{seed}.png", image_bytes(seed=seed))}
        return client.post("/api/v1/submissions/", body, format="multipart").status_code

    assert [post(700), post(701), post(702)] == [201, 201, 429]
    batch = client.post("/api/v1/submissions/batch/", {"images": [uploaded("b.png", image_bytes(seed=703))]},
                        format="multipart")
    assert batch.status_code == 429
    assert client.get("/api/v1/submissions/").status_code == 200
