"""Where a user lands after logging in (their team's work, the registry for staff without a team, or a page
that says they belong to no team), and the 403 and 404 pages: HTML on the site's layout, JSON under /api/."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.test import Client, RequestFactory

from tests.fixtures import PASSWORD
from webapp.core.views import page_not_found, permission_denied


@pytest.fixture
def dana(db: None) -> User:
    """Neither staff nor in any team: an account made before anyone added it to a team."""
    return User.objects.create_user(username="dana", password=PASSWORD)


def log_in_with_the_form(username: str, query: str = "") -> tuple[Client, str]:
    """Log in as the login page's form does (its hidden `next` included); returns the client and the
    path it finally lands on."""
    client = Client()
    form = client.get(f"/accounts/login/{query}").content.decode()
    next_value = re.search(r'name="next" value="([^"]*)"', form)
    assert next_value is not None
    landed = client.post(
        "/accounts/login/", {"username": username, "password": PASSWORD, "next": next_value.group(1)}, follow=True
    )
    assert landed.status_code == 200, landed.content[:300]
    return client, landed.request["PATH_INFO"]


def test_it_lands_each_kind_of_user_somewhere_useful_after_login(
    alice: User, bob: User, staff: User, dana: User
) -> None:
    assert log_in_with_the_form("alice")[1] == "/submissions/"
    assert log_in_with_the_form("bob")[1] == "/submissions/"
    assert log_in_with_the_form("staff")[1] == "/registry/"  # staff belong to no team: the registry
    client, landed = log_in_with_the_form("dana")
    assert landed == "/"
    page = client.get("/").content.decode()
    assert "You belong to no team" in page and "Ask an administrator to add you to your team" in page
    assert "team_add_member" in page and 'class="skip-link"' in page  # on the site's layout
    # A page asked for before logging in still wins.
    assert log_in_with_the_form("staff", "?next=/registry/heads/")[1] == "/registry/heads/"


def test_the_start_page_sends_the_anonymous_to_the_login_page(db: None) -> None:
    response = Client().get("/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/?next=/"


def test_a_refused_page_says_why_on_the_sites_layout(bob: User, staff: User, dana: User) -> None:
    member = Client()
    member.force_login(bob)
    refused = member.get("/submissions/reattribute/")
    page = refused.content.decode()
    assert refused.status_code == 403 and refused["Content-Type"].startswith("text/html")
    assert "You may not open this page" in page and 'class="skip-link"' in page
    assert "Only team admins and registry admins may re-attribute submissions." in page
    assert "Your role in Team A does not allow this" in page and 'href="/"' in page

    for user, explanation in (
        (staff, "You manage the registry but belong to no team"),
        (dana, "Your account belongs to no team yet"),
    ):
        client = Client()
        client.force_login(user)
        response = client.get("/cases/")
        assert response.status_code == 403 and explanation in response.content.decode()


def test_a_missing_page_is_a_page_of_the_site(alice: User) -> None:
    client = Client()
    client.force_login(alice)
    missing = client.get("/cases/999999/")
    page = missing.content.decode()
    assert missing.status_code == 404 and "Page not found" in page and 'class="skip-link"' in page
    assert "Go to the start page" in page and "Team A" in page  # the layout knows who is signed in
    assert Client().get("/no-such-page/").status_code == 404


def test_the_api_keeps_its_json_errors(alice: User) -> None:
    client = Client()
    client.force_login(alice)
    missing = client.get("/api/v1/no-such-endpoint/")
    assert missing.status_code == 404 and missing.json() == {"detail": "Not found."}
    requests = RequestFactory()
    denied = permission_denied(requests.get("/api/v1/cases/"), PermissionDenied("no"))
    assert denied.status_code == 403 and denied["Content-Type"] == "application/json"
    assert page_not_found(requests.get("/api/v1/cases/1/"), Http404()).status_code == 404
    outside = requests.get("/cases/")
    outside.user = alice
    html = permission_denied(outside, PermissionDenied("no"))
    assert html.status_code == 403 and html["Content-Type"].startswith("text/html")
    # An error page rendered before the authentication middleware ran: no user on the request yet.
    early = page_not_found(requests.get("/cases/"), Http404())
    assert early.status_code == 404 and b"Log out" not in early.content
