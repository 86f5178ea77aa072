"""Writes of the platform's shared objects: API tokens."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from rest_framework.authtoken.models import Token

from webapp.audit.services import audit_record


def token_create(*, user: AbstractBaseUser) -> Token:
    """The user's API token, made if there is none (one token per user, as `drf_create_token`)."""
    token, created = Token.objects.get_or_create(user=user)
    if created:
        audit_record(actor=user, action="token_create")
    return token


def token_revoke(*, user: AbstractBaseUser) -> bool:
    """Delete the user's API token: every client that holds it gets 401 from now on."""
    deleted, _ = Token.objects.filter(user=user).delete()
    if deleted:
        audit_record(actor=user, action="token_revoke")
    return bool(deleted)
