"""Writes of the accounts: API tokens (one per user, as DRF's `drf_create_token` makes)."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from rest_framework.authtoken.models import Token

from webapp.accounts.tokens import token_expired
from webapp.audit.services import audit_record


def token_create(*, user: AbstractBaseUser) -> Token:
    """The user's API token, made if there is none (one token per user, as `drf_create_token`); one past
    its TOKEN_TTL_DAYS is replaced by a new key."""
    existing = Token.objects.filter(user_id=user.pk).first()
    if existing is not None and token_expired(existing):
        existing.delete()
    token, created = Token.objects.get_or_create(user_id=user.pk)
    if created:
        audit_record(actor=user, action="token_create")
    return token


def token_revoke(*, user: AbstractBaseUser) -> bool:
    """Delete the user's API token: every client that holds it gets 401 from now on."""
    deleted, _ = Token.objects.filter(user_id=user.pk).delete()
    if deleted:
        audit_record(actor=user, action="token_revoke")
    return bool(deleted)
