"""submission_create and submission_create_batch on a real database and storage."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.core.files.storage import default_storage
from django.db import transaction
from django.test import override_settings

from tests.webapp import image_bytes, uploaded
from webapp.audit.models import AuditEvent
from webapp.cases.models import Case
from webapp.common.uploads import UploadRejected
from webapp.submissions.models import Submission
from webapp.submissions.services import submission_create, submission_create_batch
from webapp.teams.models import Team


def queued_groups(callbacks: list[Callable[[], None]]) -> list[list[int]]:
    """The ids that each on-commit callback sends to the `attribution` queue (one message each): the
    callbacks are `webapp.common.tasks` sends of (task name, argument lists, failure callback)."""
    groups = []
    for callback in callbacks:
        name, arg_lists, _ = callback.args  # type: ignore[attr-defined]
        assert name == "workers.tasks.attribute_submission"
        groups.append([args[0] for args in arg_lists])
    return groups


def test_it_stores_the_image_through_storage_and_queues_it_on_commit(
    team_a: Team, bob: User, django_capture_on_commit_callbacks
) -> None:
    data = image_bytes("JPEG", size=(48, 32), seed=3)
    with django_capture_on_commit_callbacks() as callbacks:
        submission = submission_create(team=team_a, user=bob, uploaded_file=uploaded("../holiday.JPG", data))
    submission.refresh_from_db()
    assert submission.status == Submission.Status.QUEUED and submission.queued_at is not None
    assert (submission.original_name, submission.image_format, submission.width, submission.height) == (
        "holiday.JPG",
        "JPEG",
        48,
        32,
    )
    assert submission.sha256 == hashlib.sha256(data).hexdigest()
    # A random name (nothing of the content) with the real format, read back through the storage API.
    assert re.fullmatch(r"submissions/\d{4}/\d{2}/\d{2}/[0-9a-f]{32}\.jpg", submission.image.name)
    assert submission.sha256[:16] not in submission.image.name
    with default_storage.open(submission.image.name, "rb") as stored:
        assert stored.read() == data
    assert queued_groups(callbacks) == [[submission.pk]]
    event = AuditEvent.objects.get(action="upload")
    assert (event.actor, event.team, event.object_id) == (bob, team_a, str(submission.pk))


def test_an_image_the_team_already_sent_links_to_the_earlier_one_and_is_not_queued(
    team_a: Team, alice: User, bob: User, charlie: User, django_capture_on_commit_callbacks
) -> None:
    data = image_bytes("PNG", seed=4)
    first = submission_create(team=team_a, user=alice, uploaded_file=uploaded("a.png", data))
    with django_capture_on_commit_callbacks() as callbacks:
        again = submission_create(team=team_a, user=bob, uploaded_file=uploaded("copy.png", data))
    assert again.duplicate_of == first
    assert again.image.name == first.image.name
    assert queued_groups(callbacks) == []
    # Another team's upload of the same bytes is its own submission, analysed for that team.
    theirs = submission_create(
        team=charlie.membership.team, user=charlie, uploaded_file=uploaded("c.png", data)
    )
    assert theirs.duplicate_of is None


def test_an_earlier_failed_upload_does_not_count_as_a_duplicate(team_a: Team, bob: User) -> None:
    data = image_bytes("PNG", seed=5)
    failed = submission_create(team=team_a, user=bob, uploaded_file=uploaded("a.png", data))
    Submission.objects.filter(pk=failed.pk).update(status=Submission.Status.FAILED, error="worker lost")
    assert (
        submission_create(team=team_a, user=bob, uploaded_file=uploaded("a.png", data)).duplicate_of is None
    )


def test_a_batch_goes_through_except_its_rejected_files_and_is_queued_once_committed(
    team_a: Team, bob: User, django_capture_on_commit_callbacks
) -> None:
    case = Case.objects.create(team=team_a, title="Seized drive", created_by=bob)
    files = [uploaded(f"ok{i}.png", image_bytes("PNG", seed=10 + i)) for i in range(5)]
    files.insert(2, uploaded("empty.jpg", b""))
    files.insert(4, uploaded("notes.jpg", b"hello"))
    files.append(uploaded("ok0-again.png", image_bytes("PNG", seed=10)))
    with django_capture_on_commit_callbacks() as callbacks:
        outcomes = submission_create_batch(team=team_a, user=bob, uploaded_files=files, case=case)
    assert [(o.name, bool(o.submission), o.error) for o in outcomes] == [
        ("ok0.png", True, ""),
        ("ok1.png", True, ""),
        ("empty.jpg", False, "the file is empty (0 bytes)"),
        ("ok2.png", True, ""),
        ("notes.jpg", False, "not a recognised image file"),
        ("ok3.png", True, ""),
        ("ok4.png", True, ""),
        ("ok0-again.png", True, ""),
    ]
    created = [o.submission for o in outcomes if o.submission is not None]
    assert created[-1].duplicate_of == created[0]
    assert all(s.case == case for s in created)
    # Five new images, sent after the commit; the duplicate is not sent (the workers group the messages).
    assert queued_groups(callbacks) == [[s.pk for s in created[:5]]]
    assert AuditEvent.objects.filter(action="upload").count() == 6
    assert AuditEvent.objects.filter(action="upload_rejected").count() == 2


def test_a_rolled_back_upload_queues_nothing(
    team_a: Team, bob: User, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(RuntimeError):
        with transaction.atomic():
            submission_create(team=team_a, user=bob, uploaded_file=uploaded("a.png", image_bytes()))
            raise RuntimeError("the request failed after the upload")
    assert callbacks == [] and not Submission.objects.exists()


def test_it_refuses_a_case_of_another_team_or_a_closed_case(team_a: Team, bob: User, charlie: User) -> None:
    theirs = Case.objects.create(team=charlie.membership.team, title="Theirs", created_by=charlie)
    closed = Case.objects.create(team=team_a, title="Done", created_by=bob, status=Case.Status.CLOSED)
    with pytest.raises(UploadRejected, match="no such case"):
        submission_create(team=team_a, user=bob, uploaded_file=uploaded("a.png", image_bytes()), case=theirs)
    with pytest.raises(UploadRejected, match="is closed"):
        submission_create(team=team_a, user=bob, uploaded_file=uploaded("a.png", image_bytes()), case=closed)
    assert not Submission.objects.exists()


def test_a_single_rejected_upload_raises_with_the_reason(team_a: Team, bob: User) -> None:
    with pytest.raises(UploadRejected, match="not a recognised image file"):
        submission_create(team=team_a, user=bob, uploaded_file=uploaded("x.jpg", b"<html></html>"))


@override_settings(UPLOAD_MAX_FILES=2)
def test_a_batch_over_the_file_limit_is_refused_whole(team_a: Team, bob: User) -> None:
    files = [uploaded(f"{i}.png", image_bytes(seed=i)) for i in range(3)]
    with pytest.raises(UploadRejected, match="at most 2"):
        submission_create_batch(team=team_a, user=bob, uploaded_files=files)
    assert not Submission.objects.exists()


@pytest.mark.redis
def test_a_committed_upload_reaches_the_attribution_queue(
    transactional_db: None, team_a: Team, bob: User
) -> None:
    from workers.celery import app

    app.control.purge()
    outcomes = submission_create_batch(
        team=team_a, user=bob, uploaded_files=[uploaded(f"{i}.png", image_bytes(seed=8 + i)) for i in range(3)]
    )
    with app.connection_for_read() as connection:
        queue = connection.SimpleQueue("attribution")
        try:
            for outcome in outcomes:  # one message per submission, in upload order
                message = queue.get(timeout=5)
                assert message.headers["task"] == "workers.tasks.attribute_submission"
                assert outcome.submission is not None and message.decode()[0] == [outcome.submission.pk]
                message.ack()
        finally:
            queue.close()
