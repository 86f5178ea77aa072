"""`/api/v1/heads/`, `/api/v1/training-jobs/` and re-attribution: admins train, activate and roll back."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.utils import timezone

from tests.fixtures import api_client
from tests.fixtures_registry import head_version_copy
from webapp.audit.models import AuditEvent
from webapp.cases.models import Case
from webapp.registry import services
from webapp.registry.models import HeadVersion, TrainingJob
from webapp.submissions.models import Submission, Verdict
from webapp.submissions.services import verdict_store
from webapp.teams.models import Team


def test_it_starts_one_training_at_a_time(
    registry_references: dict[str, int], staff: User, bob: User
) -> None:
    assert api_client(bob).post("/api/v1/heads/train/").status_code == 403
    client = api_client(staff)
    started = client.post("/api/v1/heads/train/")
    assert started.status_code == 202
    job = started.json()
    assert job["status"] == "queued" and job["head_version"] is None and job["requested_by"] == "staff"
    again = client.post("/api/v1/heads/train/")
    assert again.status_code == 409
    assert (
        again.json()["job"] == job["id"]
        and f"Training job {job['id']} is already queued" in again.json()["detail"]
    )
    assert TrainingJob.objects.filter(status__in=TrainingJob.RUNNING_STATES).count() == 1
    assert AuditEvent.objects.filter(action="train", object_id=str(job["id"])).exists()


def test_it_reports_a_job_and_cancels_it(registry_references: dict[str, int], staff: User, bob: User) -> None:
    job = services.training_job_start(requested_by=staff, enqueue=False)
    detail = api_client(bob).get(f"/api/v1/training-jobs/{job.pk}/")
    assert detail.status_code == 200
    assert {"id", "status", "step", "progress", "log", "error", "head_version"} <= set(detail.json())
    assert (
        detail.json()["progress"] == 0.0 and "queued: 5 classes, 50 reference images" in detail.json()["log"]
    )
    assert api_client(bob).post(f"/api/v1/training-jobs/{job.pk}/cancel/").status_code == 403
    cancelled = api_client(staff).post(f"/api/v1/training-jobs/{job.pk}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert api_client(staff).post(f"/api/v1/training-jobs/{job.pk}/cancel/").status_code == 409
    assert api_client(staff).get("/api/v1/training-jobs/999999/").status_code == 404
    assert [j["id"] for j in api_client(bob).get("/api/v1/training-jobs/").json()["results"]] == [job.pk]


def test_it_answers_400_when_the_registry_cannot_train(staff: User) -> None:
    response = api_client(staff).post("/api/v1/heads/train/")
    assert response.status_code == 400 and "at least two active generators" in response.json()["detail"]


def test_it_lists_heads_and_activates_and_rolls_back(
    active_head: HeadVersion, staff: User, bob: User
) -> None:
    listed = api_client(bob).get("/api/v1/heads/").json()["results"]
    assert [(h["version"], h["status"]) for h in listed] == [(1, "active")]
    assert {"accuracy", "auroc", "oscr"} <= set(listed[0]["metrics"]) and listed[0]["pretrained"] is False
    detail = api_client(bob).get("/api/v1/heads/1/").json()
    assert len(detail["manifest"]) == 50 and {"generator", "sha256"} == set(detail["manifest"][0])
    assert detail["metrics"]["confusion"]["labels"] == detail["classes"]
    assert api_client(bob).get("/api/v1/heads/2/").status_code == 404

    head_version_copy(active_head, version=2)
    assert api_client(bob).post("/api/v1/heads/2/activate/").status_code == 403
    activated = api_client(staff).post("/api/v1/heads/2/activate/")
    assert activated.status_code == 200 and activated.json()["status"] == "active"
    rolled_back = api_client(staff).post("/api/v1/heads/1/activate/")
    assert rolled_back.status_code == 200 and rolled_back.json()["status"] == "active"
    assert dict(HeadVersion.objects.values_list("version", "status")) == {1: "active", 2: "retired"}
    actions = AuditEvent.objects.filter(action__in=["activate", "rollback"]).order_by("id")
    assert list(actions.values_list("action", flat=True))[-2:] == ["activate", "rollback"]
    assert api_client(staff).post("/api/v1/heads/99/activate/").status_code == 404


def _submission(team: Team, user: User, case: Case | None, name: str, **fields: object) -> Submission:
    values: dict[str, object] = {
        "team": team, "case": case, "submitted_by": user, "image": ContentFile(b"x", name=name),
        "original_name": name, "sha256": name.ljust(64, "0"), "size_bytes": 1, "image_format": "PNG",
        "width": 1, "height": 1, "status": Submission.Status.DONE,
    }  # fmt: skip
    return Submission.objects.create(**(values | fields))


def _head(version: int, status: str = HeadVersion.Status.CANDIDATE) -> HeadVersion:
    """A head version row for the verdicts of these tests (no artifact is loaded)."""
    return HeadVersion.objects.create(
        version=version, status=status, artifact=f"heads/head-v{version}.npz", head_kind="linear",
        classes=["real", "tconv-s1"], blocks=[8], backbone="ViT-S-16/random-seed0", pretrained=False,
        threshold=0.5,
    )  # fmt: skip


def _verdict(submission: Submission, head: HeadVersion, label: str, decision: str) -> Verdict:
    return verdict_store(
        submission=submission, head_version=head, label=label, decision=decision, score=0.9, threshold=0.5,
        probabilities={label: 0.9}, backbone=head.backbone, pretrained=False, elapsed_ms=1.0,
    )[0]  # fmt: skip


def test_it_reattributes_a_case_or_everything_since_a_date(
    alice: User, bob: User, charlie: User, staff: User
) -> None:
    team = alice.membership.team
    active_head = _head(1, HeadVersion.Status.ACTIVE)
    case = Case.objects.create(team=team, title="Case 1", created_by=alice)
    judged = _submission(team, alice, case, "judged")
    old = _submission(team, alice, None, "old")
    Submission.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=30))
    in_flight = _submission(team, alice, case, "inflight", status=Submission.Status.PROCESSING)
    theirs = _submission(charlie.membership.team, charlie, None, "theirs")
    _verdict(judged, active_head, "real", "real")

    assert (
        api_client(bob).post("/api/v1/reattributions/", {"case": case.pk}, format="json").status_code == 403
    )
    client = api_client(alice)  # a team admin
    assert client.post("/api/v1/reattributions/", {}, format="json").status_code == 400
    # The active head already judged the case's one finished submission: nothing to do.
    assert client.post("/api/v1/reattributions/", {"case": case.pk}, format="json").json() == {"queued": 0}

    services.head_version_activate(head_version=_head(2), actor=staff)
    response = client.post("/api/v1/reattributions/", {"case": case.pk}, format="json")
    assert response.status_code == 202 and response.json() == {"queued": 1}
    judged.refresh_from_db()
    assert judged.status == Submission.Status.QUEUED and judged.attempts == 0
    in_flight.refresh_from_db()
    assert in_flight.status == Submission.Status.PROCESSING

    since = (timezone.now() - timedelta(days=1)).isoformat()
    Submission.objects.filter(pk=judged.pk).update(status=Submission.Status.DONE)
    assert client.post("/api/v1/reattributions/", {"since": since}, format="json").json() == {"queued": 1}
    old.refresh_from_db()
    theirs.refresh_from_db()
    assert old.status == theirs.status == Submission.Status.DONE  # too old / another team
    other_case = Case.objects.create(team=charlie.membership.team, title="Theirs", created_by=charlie)
    assert client.post("/api/v1/reattributions/", {"case": other_case.pk}, format="json").status_code == 404
    assert AuditEvent.objects.filter(action="reattribute", team=team).count() == 3


def test_it_lists_the_decisions_that_changed(alice: User, charlie: User) -> None:
    team = alice.membership.team
    active_head, newer = _head(1, HeadVersion.Status.RETIRED), _head(2, HeadVersion.Status.ACTIVE)
    changed, same = _submission(team, alice, None, "changed"), _submission(team, alice, None, "same")
    _verdict(changed, active_head, "real", "real")
    _verdict(same, active_head, "tconv-s1", "known_generator")
    _verdict(changed, newer, "tconv-s1", "known_generator")
    _verdict(same, newer, "tconv-s1", "known_generator")
    body = api_client(alice).get("/api/v1/verdict-changes/").json()["results"]
    assert body == [
        {
            "submission": changed.pk,
            "previous": {"head_version": 1, "label": "real", "closest_known": "real", "decision": "real"},
            "current": {
                "head_version": 2, "label": "tconv-s1", "closest_known": "tconv-s1", "decision": "known_generator"
            },
        }
    ]
    assert api_client(charlie).get("/api/v1/verdict-changes/").json()["results"] == []
    assert api_client(alice).get("/api/v1/verdict-changes/?case=abc").status_code == 400
