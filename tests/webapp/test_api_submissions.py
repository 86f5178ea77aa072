"""The submissions API: upload one or many, read with the verdict, list with filters, progress, throttling."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import override_settings
from django.utils import timezone
from rest_framework.pagination import PageNumberPagination
from rest_framework.throttling import ScopedRateThrottle

from tests.fixtures import api_client
from tests.webapp import head_version_row, image_bytes, uploaded, verdict_row
from webapp.audit.models import AuditEvent
from webapp.cases.models import Case
from webapp.registry.models import Generator, HeadVersion
from webapp.submissions.models import Submission
from webapp.submissions.services import submission_create
from webapp.teams.models import Team

LIST = "/api/v1/submissions/"
CLASSES = ("real", "sd14", "midjourney")


@pytest.fixture
def head(db: None) -> HeadVersion:
    Generator.objects.get_or_create(slug="sd14", defaults={"name": "Stable Diffusion 1.4"})
    return head_version_row(classes=CLASSES)


def upload(user: User, seed: int, name: str | None = None, **fields: object) -> Submission:
    submission = submission_create(
        team=user.membership.team,
        user=user,
        uploaded_file=uploaded(name or f"{seed}.png", image_bytes(seed=seed)),
    )
    if fields:
        Submission.objects.filter(pk=submission.pk).update(**fields)
        submission.refresh_from_db()
    return submission


def test_it_uploads_an_image_into_a_case(bob: User) -> None:
    case = Case.objects.create(team=bob.membership.team, title="Leak", created_by=bob)
    data = image_bytes("JPEG", seed=1)
    response = api_client(bob).post(
        LIST, {"image": uploaded("leak.jpg", data), "case": case.pk}, format="multipart"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    submission = Submission.objects.get()
    assert body["id"] == submission.pk
    assert (body["status"], body["sha256"], body["case"], body["duplicate_of"], body["verdict"]) == (
        "queued",
        submission.sha256,
        case.pk,
        None,
        None,
    )
    assert (body["original_name"], body["image_format"], body["submitted_by"]) == ("leak.jpg", "JPEG", "bob")
    assert AuditEvent.objects.filter(action="upload", actor=bob, object_id=str(submission.pk)).exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty (0 bytes)"),
        (b"hello, not an image", "not a recognised image file"),
        (image_bytes("JPEG", size=(64, 64))[:300], "truncated or corrupt image"),
    ],
)
def test_a_refused_file_gets_400_naming_the_problem(bob: User, data: bytes, message: str) -> None:
    response = api_client(bob).post(LIST, {"image": uploaded("x.jpg", data)}, format="multipart")
    assert response.status_code == 400
    assert response.json()["image"][0].startswith(message)
    assert not Submission.objects.exists()


def test_bad_requests_get_400_with_the_field(bob: User, charlie: User) -> None:
    theirs = Case.objects.create(team=charlie.membership.team, title="Theirs", created_by=charlie)
    client = api_client(bob)
    response = client.post(LIST, {}, format="multipart")
    assert response.status_code == 400 and "image" in response.json()
    response = client.post(
        LIST, {"image": uploaded("a.png", image_bytes()), "case": theirs.pk}, format="multipart"
    )
    assert response.status_code == 400
    assert response.json() == {"case": [f"no case with id {theirs.pk} in your team"]}
    response = client.post(LIST, {"image": uploaded("a.png", image_bytes()), "case": "x"}, format="multipart")
    assert response.status_code == 400 and "case" in response.json()


def test_an_image_already_analysed_answers_with_the_earlier_verdict(
    bob: User, alice: User, head: HeadVersion
) -> None:
    first = upload(alice, 2)
    verdict_row(first, head, label="sd14", decision="known_generator")
    response = api_client(bob).post(
        LIST, {"image": uploaded("again.png", image_bytes(seed=2))}, format="multipart"
    )
    assert response.status_code == 201
    body = response.json()
    assert (body["duplicate_of"], body["status"]) == (first.pk, "done")
    assert body["verdict"]["label"] == "sd14"


def test_it_reads_a_submission_with_its_verdict_once_done(bob: User, head: HeadVersion) -> None:
    submission = upload(bob, 3)
    client = api_client(bob)
    body = client.get(f"{LIST}{submission.pk}/").json()
    assert (body["status"], body["verdict"], body["error"]) == ("queued", None, "")
    nearest = [{"sha256": "ab" * 32, "label": "sd14", "similarity": 0.93}]
    verdict_row(
        submission, head, label="sd14", decision="known_generator", score=0.97, nearest_references=nearest
    )
    body = client.get(f"{LIST}{submission.pk}/").json()
    assert body["status"] == "done"
    verdict = body["verdict"]
    assert verdict["summary"] == "Generated by Stable Diffusion 1.4, 97% confidence"
    assert {
        k: verdict[k] for k in ("label", "decision", "score", "threshold", "head_version", "backbone")
    } == {
        "label": "sd14",
        "decision": "known_generator",
        "score": 0.97,
        "threshold": 0.6,
        "head_version": 1,
        "backbone": "ViT-S-16/random-seed0",
    }
    assert verdict["pretrained"] is False
    assert verdict["probabilities"]["sd14"] == 0.97 and set(verdict["probabilities"]) == set(CLASSES)
    assert verdict["nearest_references"] == nearest


def test_a_failed_submission_says_why(bob: User) -> None:
    submission = upload(bob, 4, status=Submission.Status.FAILED, error="the stored image could not be read")
    body = api_client(bob).get(f"{LIST}{submission.pk}/").json()
    assert (body["status"], body["error"], body["verdict"]) == (
        "failed",
        "the stored image could not be read",
        None,
    )


def test_other_teams_and_strangers_get_nothing(bob: User, charlie: User, staff: User) -> None:
    submission = upload(bob, 5)
    assert api_client(charlie).get(f"{LIST}{submission.pk}/").status_code == 404
    assert api_client(charlie).get(LIST).json()["count"] == 0
    assert api_client().get(f"{LIST}{submission.pk}/").status_code == 401
    assert (
        api_client().post(LIST, {"image": uploaded("a.png", image_bytes())}, format="multipart").status_code
        == 401
    )
    # Site staff belong to no team: they run the registry, not the teams' cases.
    assert api_client(staff).get(LIST).status_code == 403
    assert api_client(bob).get(f"{LIST}{2**63}/").status_code == 404


def test_the_list_filters_like_the_history_page(bob: User, alice: User, head: HeadVersion) -> None:
    case = Case.objects.create(team=bob.membership.team, title="Case", created_by=bob)
    known = upload(bob, 10, name="cat.png", case=case)
    real = upload(alice, 11, name="street.jpg")
    unknown = upload(bob, 12, name="odd.png")
    pending = upload(bob, 13, name="later.png")
    verdict_row(known, head, label="sd14", decision="known_generator")
    verdict_row(real, head, label="real", decision="real")
    verdict_row(unknown, head, label="midjourney", decision="unknown_generator", score=0.41)
    Submission.objects.filter(pk=pending.pk).update(created_at=timezone.now() - timedelta(days=3))

    def ids(**query: object) -> list[int]:
        response = api_client(bob).get(LIST, query)
        assert response.status_code == 200, response.content
        return [row["id"] for row in response.json()["results"]]

    assert ids() == [unknown.pk, real.pk, known.pk, pending.pk]
    assert ids(decision="real") == [real.pk]
    assert ids(unknown_only="true") == [unknown.pk]
    assert ids(label="sd14") == [known.pk]
    assert ids(case=case.pk) == [known.pk]
    assert ids(submitter="alice") == [real.pk]
    assert ids(q="STREET") == [real.pk]
    assert ids(q=known.sha256[:10]) == [known.pk]
    assert ids(status="queued") == [pending.pk]
    today = timezone.now().date()
    assert ids(date_to=today - timedelta(days=1)) == [pending.pk]
    assert pending.pk not in ids(date_from=today)


def test_bad_filters_get_400_naming_the_field(bob: User) -> None:
    client = api_client(bob)
    assert "decision" in client.get(LIST, {"decision": "maybe"}).json()
    assert "date_from" in client.get(LIST, {"date_from": "2024-13-01"}).json()
    assert client.get(LIST, {"date_from": "2024-05-02", "date_to": "2024-05-01"}).json()["count"] == 0
    assert client.get(LIST, {"case": "-1"}).status_code == 400


def test_the_list_is_paginated(bob: User, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PageNumberPagination, "page_size", 2)
    made = [upload(bob, 20 + seed).pk for seed in range(3)]
    first = api_client(bob).get(LIST).json()
    assert first["count"] == 3 and [row["id"] for row in first["results"]] == made[:0:-1]
    second = api_client(bob).get(first["next"]).json()
    assert [row["id"] for row in second["results"]] == [made[0]] and second["next"] is None
    assert api_client(bob).get(LIST, {"page": 9}).status_code == 404


def test_a_batch_upload_answers_file_by_file(bob: User) -> None:
    files = [
        uploaded("a.png", image_bytes(seed=30)),
        uploaded("b.txt", b"text"),
        uploaded("c.png", image_bytes(seed=31)),
    ]
    response = api_client(bob).post("/api/v1/submissions/batch/", {"images": files}, format="multipart")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["accepted"], body["rejected"], body["case"]) == (2, 1, None)
    assert [(r["name"], r["accepted"], r["error"]) for r in body["results"]] == [
        ("a.png", True, ""),
        ("b.txt", False, "not a recognised image file"),
        ("c.png", True, ""),
    ]
    assert [r["status"] for r in body["results"]] == ["queued", None, "queued"]


@override_settings(UPLOAD_MAX_FILES=2)
def test_a_batch_over_the_limit_is_refused(bob: User) -> None:
    files = [uploaded(f"{i}.png", image_bytes(seed=40 + i)) for i in range(3)]
    response = api_client(bob).post("/api/v1/submissions/batch/", {"images": files}, format="multipart")
    assert response.status_code == 400
    assert response.json() == {"images": ["3 files in one request: at most 2 are accepted at a time"]}


def test_progress_counts_the_team_submissions_only(bob: User, charlie: User, head: HeadVersion) -> None:
    done = upload(bob, 50)
    verdict_row(done, head, label="real", decision="real")
    queued = upload(bob, 51)
    failed = upload(bob, 52, status=Submission.Status.FAILED, error="broken")
    theirs = upload(charlie, 53)
    ids = ",".join(str(s.pk) for s in (done, queued, failed, theirs))
    body = api_client(bob).get("/api/v1/submissions/progress/", {"ids": ids}).json()
    assert body["counts"] == {"queued": 1, "processing": 0, "done": 1, "failed": 1}
    rows = {row["id"]: row for row in body["submissions"]}
    assert set(rows) == {done.pk, queued.pk, failed.pk}
    assert (rows[done.pk]["summary"], rows[done.pk]["url"]) == ("Real photograph", f"/submissions/{done.pk}/")
    assert rows[failed.pk]["error"] == "broken"
    assert api_client(bob).get("/api/v1/submissions/progress/", {"ids": "1,x"}).status_code == 400
    assert api_client(bob).get("/api/v1/submissions/progress/").status_code == 400
    nothing = api_client(bob).get("/api/v1/submissions/progress/", {"ids": f"0,-3,{2**64}"}).json()
    assert nothing["submissions"] == [] and sum(nothing["counts"].values()) == 0


def test_uploads_are_throttled_and_reads_are_not(bob: User, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"upload": "2/minute"})
    cache.clear()
    client = api_client(bob)
    codes = [
        client.post(
            LIST, {"image": uploaded("a.png", image_bytes(seed=60 + i))}, format="multipart"
        ).status_code
        for i in range(3)
    ]
    assert codes == [201, 201, 429]
    assert all(client.get(LIST).status_code == 200 for _ in range(3))
    cache.clear()


def test_team_submissions_are_shared_within_the_team(alice: User, bob: User, team_a: Team) -> None:
    submission = upload(bob, 70)
    assert api_client(alice).get(f"{LIST}{submission.pk}/").status_code == 200
