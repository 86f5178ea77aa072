"""The audit log: who uploaded, viewed, exported, trained, activated and rolled back, shown to staff only."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.test import Client, override_settings

from tests.fixtures import api_client
from tests.webapp import head_version_row, image_bytes, uploaded
from webapp.audit.models import AuditEvent
from webapp.cases.services import case_create
from webapp.registry import services as registry


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def event(action: str) -> tuple[str | None, str | None, str, str]:
    (found,) = AuditEvent.objects.filter(action=action).select_related("actor", "team")
    return (found.actor.username if found.actor else None, found.team.name if found.team else None,
            found.object_type, found.object_id)


def test_it_records_who_uploaded_viewed_exported_trained_activated_and_rolled_back(
    alice: User, bob: User, staff: User
) -> None:
    team = alice.membership.team
    case = case_create(team=team, user=alice, title="Audit case")
    uploaded_ = api_client(bob).post(
        "/api/v1/submissions/", {"image": uploaded("a.png", image_bytes(seed=870)), "case": case.pk},
        format="multipart",
    )
    submission = str(uploaded_.json()["id"])
    assert logged_in(alice).get(f"/submissions/{submission}/").status_code == 200
    assert logged_in(bob).get(f"/cases/{case.pk}/export/csv/").status_code == 200

    head_version_row(1, classes=("real", "gen-x"))
    candidate = head_version_row(2, classes=("real", "gen-x"))
    generator = registry.generator_create(actor=staff, name="Gen X", slug="gen-x", family="gan")
    for target, seed in ((generator, 871), (registry.generator_ensure_real(), 872)):
        registry.reference_image_create(
            generator=target, upload=uploaded(f"{seed}.png", image_bytes(seed=seed)), uploaded_by=staff, enqueue=False
        )
    staff_api = api_client(staff)
    with override_settings(TRAINING_MIN_REFERENCES=1):  # one reference a class: the audit is the point
        job = staff_api.post("/api/v1/heads/train/").json()["id"]
    assert staff_api.post(f"/api/v1/heads/{candidate.version}/activate/").status_code == 200
    assert staff_api.post("/api/v1/heads/1/activate/").status_code == 200

    assert event("upload") == ("bob", team.name, "submission", submission)
    assert event("view") == ("alice", team.name, "submission", submission)
    assert event("export") == ("bob", team.name, "case", str(case.pk))
    assert event("train") == ("staff", None, "trainingjob", str(job))
    assert event("activate") == ("staff", None, "headversion", str(candidate.pk))
    assert event("rollback")[:3] == ("staff", None, "headversion")
    rollback = AuditEvent.objects.get(action="rollback")
    assert (rollback.detail["version"], rollback.detail["previous"]) == (1, 2)


def test_the_log_is_shown_to_staff_and_to_no_one_else(alice: User, bob: User, staff: User) -> None:
    case_create(team=bob.membership.team, user=bob, title="Visible to staff")
    page = logged_in(staff).get("/audit/")
    assert page.status_code == 200
    assert b"case_create" in page.content and b"bob" in page.content
    filtered = logged_in(staff).get("/audit/", {"action": "no-such-action"})
    assert filtered.status_code == 200 and b"Visible to staff" not in filtered.content
    for user in (alice, bob):
        refused = logged_in(user).get("/audit/")
        # The site's own 403 page, not Django admin's login form (they are signed in already).
        assert refused.status_code == 403 and b'data-testid="error-403"' in refused.content
        assert b"Only site staff may open this page." in refused.content
    assert Client().get("/audit/").status_code == 302
