"""Confirmed submissions promoted into the registry's references: the service's rules, the API
(POST /api/v1/references/promote/) and the verdict page's "Add to <generator>'s references" form."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.test import Client

from tests.fixtures import api_client
from tests.webapp import image_bytes, uploaded
from webapp.audit.models import AuditEvent
from webapp.feedback.models import ReferencePromotion
from webapp.feedback.services.promotions import confirmed_submissions_promote
from webapp.registry import services as registry
from webapp.registry.models import Generator, ReferenceImage
from webapp.submissions.models import Confirmation, Submission
from webapp.submissions.services import submission_create
from webapp.teams.models import Team

CONFIRMED, DISPUTED = Confirmation.Status.CONFIRMED, Confirmation.Status.DISPUTED


def upload(team: Team, user: User, seed: int, name: str = "") -> Submission:
    return submission_create(
        team=team, user=user, uploaded_file=uploaded(name or f"img-{seed}.png", image_bytes(seed=seed))
    )


def confirm(
    submission: Submission, label: str, *, status: str = CONFIRMED, generator: Generator | None = None
) -> Confirmation:
    return Confirmation.objects.create(submission=submission, status=status, label=label, generator=generator)


@pytest.fixture
def curator(alice: User) -> User:
    """Alice, team A's admin, made site staff: a registry admin who belongs to a team."""
    User.objects.filter(pk=alice.pk).update(is_staff=True)
    alice.refresh_from_db()
    return alice


@pytest.fixture
def gen_x(staff: User) -> Generator:
    return registry.generator_create(actor=staff, name="Gen X", slug="gen-x", family="gan")


def browser(user: User | None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def test_it_promotes_confirmed_submissions_of_registered_generators_and_refuses_the_rest(
    curator: User, bob: User, charlie: User, gen_x: Generator, django_capture_on_commit_callbacks  # type: ignore[no-untyped-def]
) -> None:
    team = curator.membership.team
    by_generator = upload(team, bob, 1)
    confirm(by_generator, "gen-x", generator=gen_x)
    by_slug = upload(team, bob, 2)
    confirm(by_slug, "gen-x")  # a registered slug, without the link: found by its slug
    real = upload(team, bob, 3)
    confirm(real, "real", generator=registry.generator_ensure_real())
    again = upload(team, bob, 1, name="again.png")  # the same bytes as by_generator: a duplicate
    confirm(again, "gen-x", generator=gen_x)
    disputed = upload(team, bob, 4)
    confirm(disputed, "gen-x", status=DISPUTED, generator=gen_x)
    unconfirmed = upload(team, bob, 5)
    unregistered = upload(team, bob, 6)
    confirm(unregistered, "")
    in_words = upload(team, bob, 7)
    confirm(in_words, "Midjourney v6")
    elsewhere = upload(charlie.membership.team, charlie, 8)
    confirm(elsewhere, "gen-x", generator=gen_x)
    asked = [by_generator.pk, by_slug.pk, real.pk, again.pk, disputed.pk, unconfirmed.pk, unregistered.pk,
             in_words.pk, elsewhere.pk, 999_999, by_slug.pk]

    with django_capture_on_commit_callbacks() as callbacks:
        outcomes = confirmed_submissions_promote(team=team, submission_ids=asked, actor=curator)

    answers = {o.submission_id: (o.status, o.generator.slug if o.generator else None) for o in outcomes}
    assert [o.submission_id for o in outcomes] == asked[:-1]  # one answer per distinct id, in order
    assert answers == {
        by_generator.pk: ("promoted", "gen-x"),
        by_slug.pk: ("promoted", "gen-x"),
        real.pk: ("promoted", "real"),
        again.pk: ("already_reference", "gen-x"),
        disputed.pk: ("refused", None),
        unconfirmed.pk: ("refused", None),
        unregistered.pk: ("refused", None),
        in_words.pk: ("refused", None),
        elsewhere.pk: ("refused", None),
        999_999: ("refused", None),
    }
    reasons = {o.submission_id: o.reason for o in outcomes}
    assert "disputed" in reasons[disputed.pk] and "no analyst has confirmed" in reasons[unconfirmed.pk]
    assert "unregistered source" in reasons[unregistered.pk] and "'Midjourney v6'" in reasons[in_words.pk]
    # Another team's submission reads as no submission at all.
    assert reasons[elsewhere.pk] == reasons[999_999] == "no such submission in your team"

    references = {r.sha256: r for r in ReferenceImage.objects.select_related("generator")}
    assert references[by_generator.sha256].generator == gen_x and references[by_slug.sha256].generator == gen_x
    assert references[real.sha256].generator.slug == "real"
    assert elsewhere.sha256 not in references and disputed.sha256 not in references
    promotion = ReferencePromotion.objects.get(reference=references[by_generator.sha256])
    assert (promotion.submission, promotion.source, promotion.promoted_by) == (by_generator, "confirmation", curator)
    assert AuditEvent.objects.filter(action="reference_promote").count() == 2  # one per generator
    assert callbacks  # the new references' features, computed on a worker after commit


def test_only_a_registry_admin_of_the_team_may_promote(bob: User, staff: User, gen_x: Generator) -> None:
    team = bob.membership.team
    submission = upload(team, bob, 10)
    confirm(submission, "gen-x", generator=gen_x)
    for user in (bob, staff):  # a member who is no registry admin; staff who belong to no team
        with pytest.raises(PermissionDenied):
            confirmed_submissions_promote(team=team, submission_ids=[submission.pk], actor=user)
    assert not ReferenceImage.objects.exists()


def test_the_api_answers_each_submission_and_refuses_other_users(
    curator: User, bob: User, charlie: User, staff: User, gen_x: Generator
) -> None:
    team = curator.membership.team
    promoted = upload(team, bob, 20)
    confirm(promoted, "gen-x", generator=gen_x)
    refused = upload(team, bob, 21)
    body = {"submission_ids": [promoted.pk, refused.pk]}

    assert api_client(None).post("/api/v1/references/promote/", body, format="json").status_code == 401
    for user in (bob, charlie, staff):
        response = api_client(user).post("/api/v1/references/promote/", body, format="json")
        assert response.status_code == 403, user
    assert not ReferenceImage.objects.exists()

    response = api_client(curator).post("/api/v1/references/promote/", body, format="json")
    assert response.status_code == 200
    reference = ReferenceImage.objects.get()
    assert response.json() == {
        "results": [
            {"submission": promoted.pk, "status": "promoted", "reason": "", "generator": "gen-x",
             "reference": reference.pk},
            {"submission": refused.pk, "status": "refused", "reason": "no analyst has confirmed its verdict",
             "generator": None, "reference": None},
        ],
        "promoted": 1, "already_reference": 0, "refused": 1,
    }  # fmt: skip
    again = api_client(curator).post("/api/v1/references/promote/", {"submission_ids": [promoted.pk]}, format="json")
    assert again.json()["results"][0]["status"] == "already_reference" and again.json()["already_reference"] == 1

    for bad in ({}, {"submission_ids": []}, {"submission_ids": ["x"]}, {"submission_ids": [0]},
                {"submission_ids": [2**63]}):
        assert api_client(curator).post("/api/v1/references/promote/", bad, format="json").status_code == 400, bad


def test_the_verdict_page_offers_the_form_to_a_registry_admin_of_the_team(
    curator: User, bob: User, gen_x: Generator
) -> None:
    team = curator.membership.team
    submission = upload(team, bob, 30)
    page = browser(curator).get(f"/submissions/{submission.pk}/").content.decode()
    assert 'data-testid="promote"' not in page  # not confirmed: nothing to add
    confirm(submission, "gen-x", generator=gen_x)

    page = browser(curator).get(f"/submissions/{submission.pk}/").content.decode()
    assert "Add to Gen X's references</button>" in page
    assert f'action="/feedback/submissions/{submission.pk}/promote/"' in page
    assert 'data-testid="promote"' not in browser(bob).get(f"/submissions/{submission.pk}/").content.decode()

    assert browser(bob).post(f"/feedback/submissions/{submission.pk}/promote/").status_code == 403
    response = browser(curator).post(f"/feedback/submissions/{submission.pk}/promote/", follow=True)
    assert response.redirect_chain[-1][0] == f"/submissions/{submission.pk}/"
    page = response.content.decode()
    assert "Added to Gen X&#x27;s references." in page and 'data-testid="promoted"' in page
    assert "Add to Gen X's references</button>" not in page
    assert gen_x.references.get().sha256 == submission.sha256


def test_the_form_refuses_what_the_service_refuses(curator: User, bob: User, charlie: User, gen_x: Generator) -> None:
    team = curator.membership.team
    disputed = upload(team, bob, 40)
    confirm(disputed, "gen-x", status=DISPUTED, generator=gen_x)
    response = browser(curator).post(f"/feedback/submissions/{disputed.pk}/promote/", follow=True)
    assert "Not added to the references: its verdict was disputed" in response.content.decode()
    elsewhere = upload(charlie.membership.team, charlie, 41)
    confirm(elsewhere, "gen-x", generator=gen_x)
    assert browser(curator).post(f"/feedback/submissions/{elsewhere.pk}/promote/").status_code == 404
    assert browser(curator).get(f"/feedback/submissions/{disputed.pk}/promote/").status_code == 405
    assert not ReferenceImage.objects.exists()


def test_a_promoted_reference_is_seen_only_by_its_team_and_registry_admins(
    curator: User, bob: User, charlie: User, staff: User, gen_x: Generator
) -> None:
    """Teams only ever see their own images: a reference copied from team A's submission is trained on like any
    other, but its file, its place in the generator's gallery and in the references API are team A's and the
    registry admins' only; an uploaded reference stays everyone's."""
    team = curator.membership.team
    submission = upload(team, bob, 11)
    confirm(submission, "gen-x", generator=gen_x)
    (result,) = confirmed_submissions_promote(team=team, submission_ids=[submission.pk], actor=curator)
    promoted = result.reference
    assert promoted is not None and promoted.source_team == team
    uploaded_reference, _ = registry.reference_image_create(
        generator=gen_x, upload=uploaded("shared.png", image_bytes(seed=12)), uploaded_by=staff, enqueue=False
    )

    def seen(user: User) -> tuple[int, int, bool, set[str]]:
        client = browser(user)
        page = client.get(f"/registry/generators/{gen_x.slug}/")
        listed = api_client(user).get(f"/api/v1/generators/{gen_x.slug}/references/").json()
        return (
            client.get(f"/media/{promoted.image.name}").status_code,
            client.get(f"/media/{uploaded_reference.image.name}").status_code,
            promoted.image.name.encode() in page.content,
            {row["sha256"] for row in listed["results"]},
        )

    both = {promoted.sha256, uploaded_reference.sha256}
    assert seen(bob) == (200, 200, True, both)
    assert seen(staff) == (200, 200, True, both)
    outsider = seen(charlie)
    assert outsider == (404, 200, False, {uploaded_reference.sha256})
    page = browser(charlie).get(f"/registry/generators/{gen_x.slug}/").content.decode()
    assert "came from other teams' submissions" in page
