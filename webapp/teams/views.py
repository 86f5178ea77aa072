"""The page a signed-in user lands on: their team's work, the registry for registry admins without a team,
or a page that says they belong to no team and what to do about it."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from webapp.teams.selectors import team_for_user, user_is_registry_admin


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Where "/" and the login form lead: team pages need a team, and site staff usually have none."""
    if team_for_user(user=request.user) is not None:
        return redirect("submissions:history")
    if user_is_registry_admin(user=request.user):
        return redirect("registry:generators")
    return render(request, "teams/no_team.html")
