"""The cases API: list, create, read with its summary, edit; each team sees its own."""

from __future__ import annotations

from django.contrib.auth.models import User

from tests.fixtures import api_client
from tests.webapp import head_version_row, image_bytes, uploaded, verdict_row
from webapp.audit.models import AuditEvent
from webapp.cases.models import Case
from webapp.submissions.models import Submission
from webapp.submissions.services import submission_create

LIST = "/api/v1/cases/"


def test_it_creates_a_case_and_reads_it_back_with_its_summary(bob: User) -> None:
    response = api_client(bob).post(LIST, {"title": " Seized drive ", "reference": "REF-7"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    case = Case.objects.get()
    assert (body["id"], body["title"], body["reference"], body["status"], body["created_by"]) == (
        case.pk,
        "Seized drive",
        "REF-7",
        "open",
        "bob",
    )
    assert body["summary"] == {
        "real": 0,
        "known_generator": 0,
        "unknown_generator": 0,
        "pending": 0,
        "failed": 0,
        "total": 0,
    }
    assert AuditEvent.objects.filter(action="case_create", object_id=str(case.pk)).exists()


def test_the_summary_counts_each_decision(bob: User) -> None:
    case = Case.objects.create(team=bob.membership.team, title="Batch", created_by=bob)
    head = head_version_row(classes=("real", "sd14"))
    made = [
        submission_create(
            team=case.team, user=bob, uploaded_file=uploaded(f"{i}.png", image_bytes(seed=i)), case=case
        )
        for i in range(5)
    ]
    verdict_row(made[0], head, label="real", decision="real")
    verdict_row(made[1], head, label="sd14", decision="known_generator")
    verdict_row(made[2], head, label="sd14", decision="unknown_generator", score=0.3)
    Submission.objects.filter(pk=made[3].pk).update(status=Submission.Status.FAILED, error="x")
    # The same image again: a duplicate counts with its original's decision.
    submission_create(
        team=case.team, user=bob, uploaded_file=uploaded("again.png", image_bytes(seed=1)), case=case
    )
    body = api_client(bob).get(f"{LIST}{case.pk}/").json()
    assert body["summary"] == {
        "real": 1,
        "known_generator": 2,
        "unknown_generator": 1,
        "pending": 1,
        "failed": 1,
        "total": 6,
    }
    assert body["submission_count"] == 6


def test_a_case_needs_a_title(bob: User) -> None:
    response = api_client(bob).post(LIST, {"reference": "x"}, format="json")
    assert response.status_code == 400 and "title" in response.json()


def test_it_edits_and_closes_a_case(alice: User, bob: User) -> None:
    case = Case.objects.create(team=bob.membership.team, title="Open", created_by=alice)
    response = api_client(bob).patch(
        f"{LIST}{case.pk}/", {"status": "closed", "notes": "Done."}, format="json"
    )
    assert response.status_code == 200, response.content
    case.refresh_from_db()
    assert (case.status, case.notes, case.title) == ("closed", "Done.", "Open")
    assert api_client(bob).patch(f"{LIST}{case.pk}/", {"status": "lost"}, format="json").status_code == 400


def test_each_team_sees_only_its_cases(bob: User, charlie: User) -> None:
    ours = Case.objects.create(team=bob.membership.team, title="Ours", created_by=bob)
    Case.objects.create(team=charlie.membership.team, title="Theirs", created_by=charlie)
    assert [c["title"] for c in api_client(bob).get(LIST).json()["results"]] == ["Ours"]
    assert api_client(charlie).get(f"{LIST}{ours.pk}/").status_code == 404
    assert api_client(charlie).patch(f"{LIST}{ours.pk}/", {"title": "Mine"}, format="json").status_code == 404
    assert api_client().get(LIST).status_code == 401
    assert api_client(bob).get(f"{LIST}{2**64}/").status_code == 404
    ours.refresh_from_db()
    assert ours.title == "Ours"
