"""Issue #18, finding 5: an API token ends when its owner's password changes and, with TOKEN_TTL_DAYS, after
that many days; its owner sees it (never the key) and revokes it, with the token or logged in on the site."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.fixtures import PASSWORD, api_client
from webapp.audit.models import AuditEvent

TOKEN_URL = "/api/v1/auth/token/"


def test_an_old_token_fails_after_a_password_change(bob: User) -> None:
    client = api_client(bob)
    assert client.get("/api/v1/cases/").status_code == 200
    bob.set_password("a new and different passphrase")
    bob.save()
    refused = client.get("/api/v1/cases/")
    assert (refused.status_code, refused.json()) == (401, {"detail": "Invalid token."})
    assert AuditEvent.objects.filter(action="token_revoke", actor=bob, detail__reason="password changed").exists()


def test_a_password_changed_in_the_django_admin_ends_the_token_too(bob: User, staff: User) -> None:
    staff.is_superuser = True
    staff.save()
    client = api_client(bob)
    admin = Client()
    admin.force_login(staff)
    new = "another long passphrase 42"
    changed = admin.post(f"/django-admin/auth/user/{bob.pk}/password/",
                         {"password1": new, "password2": new, "usable_password": "true"})
    assert changed.status_code == 302, changed.content[:2000]
    assert client.get("/api/v1/cases/").status_code == 401
    # A new token comes with the new password, not with the old one.
    obtain = APIClient().post(TOKEN_URL, {"username": "bob", "password": PASSWORD}, format="json")
    assert obtain.status_code == 400
    assert APIClient().post(TOKEN_URL, {"username": "bob", "password": new}, format="json").status_code == 200


def test_tokens_expire_after_token_ttl_days(bob: User, settings: Settings) -> None:
    client = api_client(bob)
    assert client.get("/api/v1/cases/").status_code == 200  # off by default: no expiry
    settings.TOKEN_TTL_DAYS = 30
    old = Token.objects.get(user=bob)
    Token.objects.filter(pk=old.pk).update(created=timezone.now() - timedelta(days=31))
    refused = client.get("/api/v1/cases/")
    assert refused.status_code == 401
    assert refused.json() == {"detail": "Token expired: obtain a new one with your password."}
    assert not Token.objects.filter(pk=old.pk).exists()
    fresh = APIClient().post(TOKEN_URL, {"username": "bob", "password": PASSWORD}, format="json").json()["token"]
    assert fresh != old.key
    shown = api_client(bob).get(TOKEN_URL).json()
    made = Token.objects.get(user=bob).created
    assert shown["prefix"] == fresh[:6] and fresh not in str(shown)
    assert shown["expires_at"].startswith((made + timedelta(days=30)).date().isoformat())


def test_the_owner_sees_and_revokes_the_token_on_the_site(bob: User, alice: User) -> None:
    token = api_client(bob)
    key = Token.objects.get(user=bob).key
    site = Client()
    site.force_login(bob)
    page = site.get("/accounts/tokens/").content.decode()
    assert key[:6] in page and key not in page and "when revoked or when your password changes" in page
    # Alice's page shows her own (none), never Bob's.
    other = Client()
    other.force_login(alice)
    assert key[:6] not in other.get("/accounts/tokens/").content.decode()
    # The API shows it too, to a session (a user who lost the key can still revoke it).
    assert site.get(TOKEN_URL).json()["prefix"] == key[:6]
    revoked = site.post("/accounts/tokens/", {"action": "revoke"})
    assert "Token revoked." in revoked.content.decode()
    assert token.get("/api/v1/cases/").status_code == 401
    made = site.post("/accounts/tokens/", {"action": "create"}).content.decode()
    new_key = Token.objects.get(user=bob).key
    assert new_key in made and new_key != key
