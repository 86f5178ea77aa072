"""Access control: every URL and API endpoint, by role, against team A's objects.

Roles: anonymous, alice (team A admin), bob (team A member), charlie (team B member: an outsider to
team A) and staff (site staff, registry admin, in no team). Each row names a request and the status
each role gets: 404 for another team's objects (their existence is not confirmed), 403 for a write a
role may not make, 302 (to the login page) or 401 (API) for the anonymous. Every request runs in a
savepoint that is rolled back, so that each cell sees the same world. The rows are checked against the
URL resolver: a new endpoint, or a new method on an API endpoint, without a row fails the test.

Each cell is pinned to one status. Besides the status, no answer to anonymous, charlie or staff may contain
team A's data: its name, its case's title and reference, its submission's SHA-256, file name and stored
name, the names of its members, or the URLs (with their ids) of its case, submission and image.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import transaction
from django.test import Client, override_settings
from django.urls import Resolver404, URLPattern, URLResolver, get_resolver, resolve
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.fixtures import PASSWORD
from tests.webapp import head_version_row, image_bytes, uploaded, verdict_row
from tests.workers.faults import celery_broker, free_port
from webapp.cases.models import Case
from webapp.cases.services import case_create
from webapp.registry import services as registry
from webapp.registry.models import Generator, HeadVersion, ReferenceImage, TrainingJob
from webapp.submissions.models import Submission
from webapp.submissions.services import submission_create

ROLES = ("anonymous", "alice", "bob", "charlie", "staff")
CASE_TITLE = "Operation Nightjar"


@dataclass
class World:
    case: Case
    submission: Submission
    generator: Generator
    reference: ReferenceImage
    candidate: HeadVersion
    job: TrainingJob
    users: dict[str, User | None]


@pytest.fixture
def world(alice: User, bob: User, charlie: User, staff: User) -> World:
    team = alice.membership.team
    cache.clear()  # throttle counts
    active = head_version_row(1, classes=("real", "gen-x"))
    candidate = head_version_row(2, classes=("real", "gen-x"))
    generator = registry.generator_create(actor=staff, name="Gen X", slug="gen-x", family="gan")
    reference, _ = registry.reference_image_create(
        generator=generator, upload=uploaded("x.png", image_bytes(seed=500)), uploaded_by=staff, enqueue=False
    )
    registry.reference_image_create(
        generator=registry.generator_ensure_real(), upload=uploaded("r.png", image_bytes(seed=501)),
        uploaded_by=staff, enqueue=False,
    )
    case = case_create(team=team, user=alice, title=CASE_TITLE, reference="NJ-7")
    submission = submission_create(
        team=team, user=bob, uploaded_file=uploaded("suspect.png", image_bytes(seed=502)), case=case
    )
    verdict_row(submission, active, label="gen-x", decision="known_generator")
    job = TrainingJob.objects.create(requested_by=staff, status=TrainingJob.Status.DONE)
    return World(case, submission, generator, reference, candidate, job,
                 {"anonymous": None, "alice": alice, "bob": bob, "charlie": charlie, "staff": staff})


Expected = dict[str, int]


def by_role(codes: str) -> Expected:
    """"302 200 200 404 403" -> the status of each role, in the order of ROLES (one status each)."""
    cells = codes.split()
    assert len(cells) == len(ROLES)
    return {role: int(cell) for role, cell in zip(ROLES, cells, strict=True)}


def broker_down() -> AbstractContextManager[None]:
    """A broker that refuses connections: readiness then answers 503 whatever workers exist elsewhere."""
    return celery_broker(f"redis://127.0.0.1:{free_port()}/0")


@dataclass
class Row:
    method: str
    path: Callable[[World], str]
    expected: Expected
    data: Callable[[World], dict[str, Any]] = field(default=lambda w: {})
    api: bool = False  # token authentication, JSON bodies (multipart where a file is sent)
    roles: tuple[str, ...] = ROLES
    around: Callable[[], AbstractContextManager[None]] = nullcontext  # the world outside the request


def media(w: World, name: str) -> str:
    return f"/media/{name}"


def login_data(role: str) -> dict[str, str]:
    return {"username": role, "password": PASSWORD if role != "anonymous" else "wrong"}


GET, POST, PATCH, DELETE = "get", "post", "patch", "delete"
# Anonymous, alice, bob, charlie, staff. Site staff manage the registry but belong to no team: every
# team page and endpoint refuses them (403), which keeps team data out of the registry admins' hands.
TEAM_PAGE = "302 200 200 404 403"
TEAM_LIST_PAGE = "302 200 200 200 403"
TEAM_API = "401 200 200 404 403"
TEAM_LIST_API = "401 200 200 200 403"
REGISTRY_PAGE = "302 200 200 200 200"
REGISTRY_API = "401 200 200 200 200"

ROWS: list[Row] = [
    # --- the site and accounts
    # The start page sends each user on: the team's history, the registry for staff, the login page for the
    # anonymous (a user in no team gets a page that says so: tests/webapp/test_landing_and_error_pages.py).
    Row(GET, lambda w: "/", by_role("302 302 302 302 302")),
    Row(GET, lambda w: "/healthz", by_role("200 200 200 200 200")),
    # Readiness waits for worker replies: checked once (it asks nothing of the caller).
    # With the broker down it is 503 for certain (not 200 or 503 by whether some worker answers).
    Row(GET, lambda w: "/readyz", {"anonymous": 503}, roles=("anonymous",), around=broker_down),
    Row(GET, lambda w: "/accounts/login/", by_role("200 200 200 200 200")),
    # Anonymous sends a wrong password (the form again), the others their own (logged in, redirected).
    Row(POST, lambda w: "/accounts/login/", by_role("200 302 302 302 302")),
    Row(POST, lambda w: "/accounts/logout/", by_role("302 302 302 302 302")),
    Row(GET, lambda w: "/api/schema/", by_role("200 200 200 200 200")),
    Row(GET, lambda w: "/api/docs/", by_role("200 200 200 200 200")),
    # Signed in but not staff: the site's 403 page, not the admin's login form.
    Row(GET, lambda w: "/django-admin/", by_role("302 403 403 403 200")),
    Row(GET, lambda w: "/django-admin/submissions/submission/", by_role("302 403 403 403 403")),
    Row(GET, lambda w: "/audit/", by_role("302 403 403 403 200")),
    Row(GET, lambda w: "/audit/export.csv", by_role("302 403 403 403 200")),
    Row(GET, lambda w: "/workers/", by_role("302 403 403 403 200")),
    # Each user's own API token (shown, made, revoked): nobody else's is reachable from here.
    Row(GET, lambda w: "/accounts/tokens/", by_role("302 200 200 200 200")),
    Row(POST, lambda w: "/accounts/tokens/", by_role("302 200 200 200 200"), data=lambda w: {"action": "revoke"}),
    # --- protected media
    Row(GET, lambda w: media(w, w.submission.image.name), by_role("302 200 200 404 404")),
    Row(GET, lambda w: media(w, w.reference.image.name), by_role("302 200 200 200 200")),
    Row(GET, lambda w: "/media/../webapp/settings.py", by_role("302 404 404 404 404")),
    # --- cases (HTML)
    Row(GET, lambda w: "/cases/", by_role(TEAM_LIST_PAGE)),
    Row(GET, lambda w: "/cases/new/", by_role(TEAM_LIST_PAGE)),
    Row(POST, lambda w: "/cases/new/", by_role("302 302 302 302 403"), data=lambda w: {"title": "New case"}),
    Row(GET, lambda w: f"/cases/{w.case.pk}/", by_role(TEAM_PAGE)),
    Row(POST, lambda w: f"/cases/{w.case.pk}/edit/", by_role("302 302 302 404 403"),
        data=lambda w: {"title": "Renamed", "reference": "", "notes": "", "status": "closed"}),
    Row(GET, lambda w: f"/cases/{w.case.pk}/export/csv/", by_role(TEAM_PAGE)),
    Row(GET, lambda w: f"/reports/cases/{w.case.pk}.html", by_role(TEAM_PAGE)),
    Row(GET, lambda w: f"/reports/cases/{w.case.pk}.pdf", by_role(TEAM_PAGE)),
    # Selections of the history: an outsider's ids name nothing of theirs (a refusal, or a CSV of no rows).
    Row(POST, lambda w: "/cases/add-submissions/", by_role("302 302 302 302 403"),
        data=lambda w: {"case": w.case.pk, "submission_ids": w.submission.pk}),
    Row(POST, lambda w: "/reports/submissions/export/", by_role("302 200 200 200 403"),
        data=lambda w: {"submission_ids": w.submission.pk, "format": "csv"}),
    # --- submissions (HTML)
    Row(GET, lambda w: "/submissions/", by_role(TEAM_LIST_PAGE)),
    Row(GET, lambda w: "/submissions/upload/", by_role(TEAM_LIST_PAGE)),
    Row(GET, lambda w: f"/submissions/{w.submission.pk}/", by_role(TEAM_PAGE)),
    Row(GET, lambda w: f"/submissions/{w.submission.pk}/thumbnail/", by_role(TEAM_PAGE)),
    # The analyst's confirmation: any member of the team; the history's selection refuses an outsider's ids.
    Row(POST, lambda w: f"/submissions/{w.submission.pk}/confirmation/", by_role("302 302 302 404 403"),
        data=lambda w: {"action": "save", "status": "confirmed"}),
    Row(POST, lambda w: "/submissions/confirmations/", by_role("302 302 302 302 403"),
        data=lambda w: {"submission_ids": w.submission.pk, "status": "disputed"}),
    # --- registry (HTML): every team member reads, registry admins write
    Row(GET, lambda w: "/registry/", by_role(REGISTRY_PAGE)),
    Row(GET, lambda w: "/registry/generators/new/", by_role("302 403 403 403 200")),
    Row(POST, lambda w: "/registry/generators/new/", by_role("302 403 403 403 302"),
        data=lambda w: {"name": "Gen Y", "slug": "gen-y", "family": "diffusion", "is_active": "on"}),
    Row(GET, lambda w: f"/registry/generators/{w.generator.slug}/", by_role(REGISTRY_PAGE)),
    Row(GET, lambda w: f"/registry/generators/{w.generator.slug}/edit/", by_role("302 403 403 403 200")),
    Row(POST, lambda w: f"/registry/generators/{w.generator.slug}/delete/", by_role("302 403 403 403 302")),
    Row(POST, lambda w: f"/registry/generators/{w.generator.slug}/references/", by_role("302 403 403 403 200"),
        data=lambda w: {"images": uploaded("y.png", image_bytes(seed=503))}),
    Row(POST, lambda w: f"/registry/references/{w.reference.pk}/delete/", by_role("302 403 403 403 302")),
    Row(GET, lambda w: "/registry/heads/", by_role(REGISTRY_PAGE)),
    Row(POST, lambda w: "/registry/heads/train/", by_role("302 403 403 403 302")),
    Row(GET, lambda w: f"/registry/heads/{w.candidate.version}/", by_role(REGISTRY_PAGE)),
    Row(GET, lambda w: f"/registry/heads/{w.candidate.version}/activate/", by_role("302 403 403 403 200")),
    Row(POST, lambda w: f"/registry/heads/{w.candidate.version}/activate/", by_role("302 403 403 403 302")),
    Row(POST, lambda w: f"/submissions/reattribute/activate/{w.candidate.version}/", by_role("302 403 403 403 302")),
    Row(GET, lambda w: "/submissions/reattribute/progress/", by_role("302 403 403 403 200")),
    Row(GET, lambda w: f"/registry/training-jobs/{w.job.pk}/", by_role(REGISTRY_PAGE)),
    Row(POST, lambda w: f"/registry/training-jobs/{w.job.pk}/cancel/", by_role("302 403 403 403 302")),
    Row(POST, lambda w: f"/feedback/submissions/{w.submission.pk}/promote/", by_role("302 403 403 403 403")),
    # The unknown pile's clusters: site staff only (tests/webapp/test_unknown_clusters.py reads a real one; the
    # world has none, so staff are told 404 for this id).
    Row(GET, lambda w: "/feedback/unknown-clusters/", by_role("302 403 403 403 200")),
    Row(POST, lambda w: "/feedback/unknown-clusters/refresh/", by_role("302 403 403 403 302")),
    Row(GET, lambda w: "/feedback/unknown-clusters/999999/", by_role("302 403 403 403 404")),
    Row(POST, lambda w: "/feedback/unknown-clusters/999999/register/", by_role("302 403 403 403 404"),
        data=lambda w: {"name": "Gen C", "slug": "gen-c", "family": "gan"}),
    Row(POST, lambda w: "/feedback/unknown-clusters/999999/dismiss/", by_role("302 403 403 403 404")),
    Row(GET, lambda w: f"/feedback/unknown-clusters/999999/members/{w.submission.pk}/thumbnail/",
        by_role("302 403 403 403 404")),
    # Re-attribution is a team admin's: members and outsiders are refused, staff have no team.
    Row(GET, lambda w: "/submissions/reattribute/", by_role("302 200 403 403 403")),
    Row(POST, lambda w: "/submissions/reattribute/", by_role("302 302 403 403 403"),
        data=lambda w: {"case": w.case.pk}),
    Row(GET, lambda w: f"/submissions/reattribute/changes/?case={w.case.pk}", by_role(TEAM_LIST_PAGE)),
    # --- API: tokens
    Row(POST, lambda w: "/api/v1/auth/token/", by_role("400 200 200 200 200"), api=True),
    Row(GET, lambda w: "/api/v1/auth/token/", by_role("401 200 200 200 200"), api=True),
    Row(DELETE, lambda w: "/api/v1/auth/token/", by_role("401 204 204 204 204"), api=True),
    # --- API: submissions. A write naming another team's case is refused as a bad request (400).
    Row(GET, lambda w: "/api/v1/submissions/", by_role(TEAM_LIST_API), api=True),
    Row(POST, lambda w: "/api/v1/submissions/", by_role("401 201 201 400 403"), api=True,
        data=lambda w: {"image": uploaded("new.png", image_bytes(seed=504)), "case": w.case.pk}),
    Row(POST, lambda w: "/api/v1/submissions/batch/", by_role("401 200 200 400 403"), api=True,
        data=lambda w: {"images": [uploaded("b.png", image_bytes(seed=505))], "case": w.case.pk}),
    Row(GET, lambda w: f"/api/v1/submissions/progress/?ids={w.submission.pk}", by_role(TEAM_LIST_API), api=True),
    Row(GET, lambda w: f"/api/v1/submissions/{w.submission.pk}/", by_role(TEAM_API), api=True),
    Row(POST, lambda w: f"/api/v1/submissions/{w.submission.pk}/confirmation/", by_role("401 201 201 404 403"),
        api=True, data=lambda w: {"status": "confirmed"}),
    Row(DELETE, lambda w: f"/api/v1/submissions/{w.submission.pk}/confirmation/", by_role("401 204 204 404 403"),
        api=True),
    # --- API: cases
    Row(GET, lambda w: "/api/v1/cases/", by_role(TEAM_LIST_API), api=True),
    Row(POST, lambda w: "/api/v1/cases/", by_role("401 201 201 201 403"), api=True,
        data=lambda w: {"title": "Another case"}),
    Row(GET, lambda w: f"/api/v1/cases/{w.case.pk}/", by_role(TEAM_API), api=True),
    Row(PATCH, lambda w: f"/api/v1/cases/{w.case.pk}/", by_role(TEAM_API), api=True,
        data=lambda w: {"status": "closed"}),
    Row(GET, lambda w: f"/api/v1/cases/{w.case.pk}/report.pdf", by_role(TEAM_API), api=True),
    Row(POST, lambda w: f"/api/v1/cases/{w.case.pk}/submissions/", by_role(TEAM_API), api=True,
        data=lambda w: {"submission_ids": [w.submission.pk]}),
    # --- API: registry
    Row(GET, lambda w: "/api/v1/generators/", by_role(REGISTRY_API), api=True),
    Row(POST, lambda w: "/api/v1/generators/", by_role("401 403 403 403 201"), api=True,
        data=lambda w: {"name": "Gen Z", "slug": "gen-z", "family": "gan", "description": ""}),
    Row(GET, lambda w: f"/api/v1/generators/{w.generator.slug}/", by_role(REGISTRY_API), api=True),
    Row(PATCH, lambda w: f"/api/v1/generators/{w.generator.slug}/", by_role("401 403 403 403 200"), api=True,
        data=lambda w: {"description": "changed"}),
    Row(DELETE, lambda w: f"/api/v1/generators/{w.generator.slug}/", by_role("401 403 403 403 204"), api=True),
    Row(GET, lambda w: f"/api/v1/generators/{w.generator.slug}/references/", by_role(REGISTRY_API), api=True),
    Row(POST, lambda w: f"/api/v1/generators/{w.generator.slug}/references/", by_role("401 403 403 403 201"),
        api=True, data=lambda w: {"image": uploaded("z.png", image_bytes(seed=506))}),
    # Bulk import of an archive (an empty zip here: queued, not run) and its job (none with this id).
    Row(POST, lambda w: "/api/v1/generators/import/", by_role("401 403 403 403 202"), api=True,
        data=lambda w: {"archive": uploaded("refs.zip", b"PK\x05\x06" + bytes(18))}),
    Row(GET, lambda w: "/api/v1/generators/import/999999/", by_role("401 403 403 403 404"), api=True),
    Row(GET, lambda w: "/api/v1/heads/", by_role(REGISTRY_API), api=True),
    Row(POST, lambda w: "/api/v1/heads/train/", by_role("401 403 403 403 202"), api=True),
    Row(GET, lambda w: f"/api/v1/heads/{w.candidate.version}/", by_role(REGISTRY_API), api=True),
    Row(POST, lambda w: f"/api/v1/heads/{w.candidate.version}/activate/", by_role("401 403 403 403 200"), api=True),
    Row(GET, lambda w: f"/api/v1/heads/{w.candidate.version}/field-metrics/", by_role(REGISTRY_API), api=True),
    # Promoting a team's confirmed submissions into the references takes a registry admin of that team: none
    # of these roles is both (staff belong to no team).
    Row(POST, lambda w: "/api/v1/references/promote/", by_role("401 403 403 403 403"), api=True,
        data=lambda w: {"submission_ids": [w.submission.pk]}),
    Row(GET, lambda w: "/api/v1/unknown-clusters/", by_role("401 403 403 403 200"), api=True),
    Row(GET, lambda w: "/api/v1/unknown-clusters/999999/", by_role("401 403 403 403 404"), api=True),
    Row(POST, lambda w: "/api/v1/unknown-clusters/999999/register/", by_role("401 403 403 403 404"), api=True,
        data=lambda w: {"name": "Gen C", "slug": "gen-c"}),
    Row(POST, lambda w: "/api/v1/unknown-clusters/999999/dismiss/", by_role("401 403 403 403 404"), api=True),
    Row(GET, lambda w: "/api/v1/training-jobs/", by_role(REGISTRY_API), api=True),
    Row(GET, lambda w: f"/api/v1/training-jobs/{w.job.pk}/", by_role(REGISTRY_API), api=True),
    # The job is finished: staff may cancel jobs, and are told this one cannot be (409).
    Row(POST, lambda w: f"/api/v1/training-jobs/{w.job.pk}/cancel/", by_role("401 403 403 403 409"), api=True),
    Row(POST, lambda w: "/api/v1/reattributions/", by_role("401 202 403 403 403"), api=True,
        data=lambda w: {"case": w.case.pk}),
    Row(GET, lambda w: f"/api/v1/verdict-changes/?case={w.case.pk}", by_role(TEAM_API), api=True),
    # --- what no route names
    Row(GET, lambda w: "/api/v1/no-such-endpoint/", by_role("404 404 404 404 404"), api=True),
]


def client_for(row: Row, role: str, world: World) -> Client:
    user = world.users[role]
    if row.api:
        client = APIClient()
        if user is not None and not (row.method == POST and row.path(world) == "/api/v1/auth/token/"):
            token, _ = Token.objects.get_or_create(user=user)
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def request(row: Row, role: str, world: World) -> tuple[int, bytes]:
    client = client_for(row, role, world)
    path = row.path(world)
    data = login_data(role) if path.endswith(("/accounts/login/", "/auth/token/")) and row.method == POST else (
        row.data(world))
    has_file = any(hasattr(v, "read") or isinstance(v, list) for v in data.values())
    kwargs: dict[str, Any] = {}
    if row.api and row.method != GET:
        kwargs["format"] = "multipart" if has_file else "json"
    # Every request in a savepoint, rolled back after: each cell sees the same world.
    savepoint = transaction.savepoint()
    try:
        with row.around():
            response = getattr(client, row.method)(path, data, **kwargs)
            body = b"".join(response.streaming_content) if response.streaming else response.content
    finally:
        transaction.savepoint_rollback(savepoint)
    return response.status_code, body


# Random values a page carries (CSRF tokens, CSP nonces): a short secret such as a username can occur in one
# by chance (about once in a few thousand pages for three letters), which would be no leak.
_RANDOM_VALUES = re.compile(rb'(csrfmiddlewaretoken" value="|nonce="|csrftoken=|"csrf_token": ")[^"&;]*')


def shows(body: bytes, secret: bytes) -> bool:
    """Whether `body` names `secret` outside its random tokens; a short secret (a username) only as a whole
    word, not inside a longer word or token."""
    text = _RANDOM_VALUES.sub(rb"\1", body)
    if len(secret) >= 8:
        return secret in text
    return re.search(rb"(?<![A-Za-z0-9])" + re.escape(secret) + rb"(?![A-Za-z0-9])", text) is not None


def test_shows_finds_a_username_as_a_word_and_not_inside_a_token() -> None:
    assert shows(b"<td>bob</td>", b"bob")
    assert shows(b"by bob.", b"bob")
    assert not shows(b'<input name="csrfmiddlewaretoken" value="xbobx">', b"bob")
    assert not shows(b'<script nonce="bob">', b"bob")
    assert not shows(b"kebobs", b"bob")
    assert shows(b"a 0123456789abcdef sha", b"0123456789abcdef")


def team_a_data(world: World) -> list[bytes]:
    """What of team A an outsider must never see in an answer."""
    submission, case = world.submission, world.case
    return [s.encode() for s in (
        submission.team.name, CASE_TITLE, case.reference, submission.sha256, submission.original_name,
        submission.image.name, world.users["alice"].username, world.users["bob"].username,
        f"/cases/{case.pk}/", f"/submissions/{submission.pk}/", f"/api/v1/submissions/{submission.pk}/",
        f"/api/v1/cases/{case.pk}/", f"/reports/cases/{case.pk}.", f"/media/{submission.image.name}",
    )]


# The world's generators have one reference image each: who may start a training is the question here.
@override_settings(TRAINING_MIN_REFERENCES=1)
def test_every_role_gets_the_expected_status_from_every_endpoint(world: World) -> None:
    secrets = team_a_data(world)
    assert len(set(secrets)) == len(secrets) and all(len(s) >= 3 for s in secrets)
    wrong = []
    for row in ROWS:
        for role in row.roles:
            status, body = request(row, role, world)
            expected = row.expected[role]
            if status != expected:
                wrong.append(f"{row.method.upper()} {row.path(world)} as {role}: {status}, expected {expected}"
                             f" {body[:200]!r}")
            elif role in ("anonymous", "charlie") or (role == "staff" and not row.path(world).startswith("/audit/")):
                # A page may name the URL it was asked for (a 404 page does): that tells nothing new.
                asked = row.path(world).encode()
                leaked = [s for s in secrets if shows(body, s) and s not in asked]
                if leaked:
                    wrong.append(f"{row.method.upper()} {row.path(world)} as {role} shows team A's {leaked}")
    assert not wrong, "\n".join(wrong)


def _patterns(resolver: URLResolver, prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            yield from _patterns(pattern, prefix + str(pattern.pattern))
        else:
            yield prefix + str(pattern.pattern), pattern


def _api_methods(pattern: URLPattern) -> set[str]:
    view_class = getattr(pattern.callback, "cls", None)
    if view_class is None or not pattern.callback.__module__.startswith("webapp."):
        return set()
    names = set(view_class.http_method_names) - {"head", "options", "trace"}
    return {name for name in names if hasattr(view_class, name)}


def test_the_matrix_has_a_row_for_every_url_and_every_api_method(world: World) -> None:
    covered = set()
    for row in ROWS:
        try:
            covered.add((resolve(row.path(world).split("?")[0]).route, row.method))
        except Resolver404:
            continue  # the row of a URL that names nothing
    routes = {route for route, _ in covered}
    missing = []
    for route, pattern in _patterns(get_resolver()):
        if route.startswith("django-admin/"):
            continue  # Django's admin: staff only, checked by its index and a model page above
        if route not in routes:
            missing.append(route)
        missing += [f"{method.upper()} {route}" for method in sorted(_api_methods(pattern))
                    if (route, method) not in covered]
    assert not missing, f"endpoints without a row in the access matrix: {missing}"



def _authorised_role(row: Row) -> str:
    """A role the row lets through, to show that only the missing CSRF token stops it."""
    return next(role for role in ("alice", "staff", "anonymous") if row.expected[role] not in (403, 404))


def test_every_form_refuses_a_post_without_its_csrf_token(world: World) -> None:
    forms = [row for row in ROWS if row.method == POST and not row.api]
    assert len(forms) >= 12
    wrong = []
    for row in forms:
        role, path = _authorised_role(row), row.path(world)
        client = Client(enforce_csrf_checks=True)
        if world.users[role] is not None:
            client.force_login(world.users[role])
        data = login_data(role) if path == "/accounts/login/" else row.data(world)
        savepoint = transaction.savepoint()
        try:
            refused = client.post(path, data)
            client.get("/accounts/login/")  # any page with a form sets the CSRF cookie
            token = client.cookies["csrftoken"].value
            data = login_data(role) if path == "/accounts/login/" else row.data(world)
            accepted = client.post(path, {**data, "csrfmiddlewaretoken": token})
        finally:
            transaction.savepoint_rollback(savepoint)
        if refused.status_code != 403 or b"CSRF" not in refused.content:
            wrong.append(f"POST {path} as {role} without a CSRF token: {refused.status_code}")
        if accepted.status_code != row.expected[role]:
            wrong.append(f"POST {path} as {role} with the token: {accepted.status_code}, expected {row.expected[role]}")
    assert not wrong, "\n".join(wrong)


def test_the_api_asks_a_browser_session_for_the_csrf_token_and_a_token_client_for_none(world: World) -> None:
    session = APIClient(enforce_csrf_checks=True)
    session.force_login(world.users["alice"])
    refused = session.post("/api/v1/cases/", {"title": "From a forged page"}, format="json")
    assert refused.status_code == 403 and refused.json()["detail"].startswith("CSRF Failed")
    token, _ = Token.objects.get_or_create(user=world.users["alice"])
    script = APIClient(enforce_csrf_checks=True)
    script.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert script.post("/api/v1/cases/", {"title": "From a script"}, format="json").status_code == 201
