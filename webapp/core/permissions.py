"""Who may do what: one place for the rules that views and API views share."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from webapp.teams.models import Team
from webapp.teams.selectors import team_for_user, user_is_registry_admin


class TeamMember(BasePermission):
    """The user belongs to a team; querysets are then filtered to that team."""

    message = "You are not a member of any team. Ask a team admin to add you."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return team_for_user(user=request.user) is not None


class RegistryAdminOrReadOnly(BasePermission):
    message = "Only registry admins (site staff, or users they grant it) may change the registry."

    def has_permission(self, request: Request, view: APIView) -> bool:
        if not request.user.is_authenticated:
            return False
        return request.method in SAFE_METHODS or user_is_registry_admin(user=request.user)


class RegistryAdmin(BasePermission):
    message = RegistryAdminOrReadOnly.message

    def has_permission(self, request: Request, view: APIView) -> bool:
        return user_is_registry_admin(user=request.user)


def request_team(request: HttpRequest | Request) -> Team:
    team = team_for_user(user=request.user)
    if team is None:
        raise PermissionDenied(TeamMember.message)
    return team


ViewFunc = Callable[..., HttpResponse]


def team_required(view: ViewFunc) -> ViewFunc:
    """A logged-in team member; the view gets `team` as a keyword argument."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return view(request, *args, team=request_team(request), **kwargs)

    return wrapper


def registry_admin_required(view: ViewFunc) -> ViewFunc:
    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not user_is_registry_admin(user=request.user):
            raise PermissionDenied(RegistryAdmin.message)
        return view(request, *args, **kwargs)

    return wrapper
