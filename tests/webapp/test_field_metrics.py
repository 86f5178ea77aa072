"""A head version's field accuracy: the rules that turn confirmations into known and unknown samples, the
Wilson intervals, the API that answers them, and the field predictions a worker computes for confirmed
images a head never judged (in-process, on the real engine)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.files.storage import default_storage
from django.db import connection
from django.test.utils import CaptureQueriesContext

from attribution.images import open_image
from attribution.predict import Attributor
from attribution.synth import DEFAULT_KNOWN, DEFAULT_UNKNOWN
from tests.fixtures import api_client
from tests.webapp import head_version_row, image_bytes, uploaded, verdict_row
from webapp.feedback.models import FieldPrediction
from webapp.feedback.selectors.field import (
    field_submissions_awaiting_prediction,
    head_version_field_metrics,
    head_version_field_rows,
    wilson_interval,
)
from webapp.feedback.services.field import field_predictions_fill
from webapp.registry import services as registry
from webapp.registry.models import Generator, HeadVersion
from webapp.submissions.models import Confirmation, Submission
from webapp.submissions.services import submission_create
from webapp.teams.models import Team

CONFIRMED, DISPUTED = Confirmation.Status.CONFIRMED, Confirmation.Status.DISPUTED
KNOWN, UNKNOWN, REAL = "known_generator", "unknown_generator", "real"


def upload(team: Team, user: User, seed: int, name: str = "") -> Submission:
    return submission_create(
        team=team, user=user, uploaded_file=uploaded(name or f"img-{seed}.png", image_bytes(seed=seed))
    )


def confirm(
    submission: Submission, label: str, *, status: str = CONFIRMED, generator: Generator | None = None
) -> Confirmation:
    confirmation, _ = Confirmation.objects.update_or_create(
        submission=submission, defaults={"status": status, "label": label, "generator": generator}
    )
    return confirmation


@pytest.fixture
def head(db: None) -> HeadVersion:
    return head_version_row(1, classes=("real", "gan-a", "diffusion-b"))


# --- Wilson intervals ------------------------------------------------------------------------------------


def test_it_computes_wilson_intervals_as_by_hand() -> None:
    # 8 of 10 by hand: z = 1.96, z^2 = 3.8416; centre = (0.8 + 0.19208) / 1.38416 = 0.71676;
    # half width = 1.96 * sqrt(0.8 * 0.2 / 10 + 3.8416 / 400) / 1.38416 = 1.96 * 0.16001 / 1.38416 = 0.22658.
    low, high = wilson_interval(8, 10)  # type: ignore[misc]
    assert (low, high) == (pytest.approx(0.4902, abs=1e-4), pytest.approx(0.9433, abs=1e-4))
    # 0 of 5 and 5 of 5: not the empty interval of the normal approximation, and never outside [0, 1].
    assert wilson_interval(0, 5) == (0.0, pytest.approx(3.8415 / (5 + 3.8415), abs=1e-4))
    low, high = wilson_interval(5, 5)  # type: ignore[misc]
    assert (low, high) == (pytest.approx(5 / (5 + 3.8415), abs=1e-4), 1.0)
    # 1 of 2: symmetric around 1/2.
    low, high = wilson_interval(1, 2)  # type: ignore[misc]
    assert low + high == pytest.approx(1.0) and low == pytest.approx(0.0945, abs=1e-4)
    assert wilson_interval(0, 0) is None


# --- the rules -------------------------------------------------------------------------------------------


def test_it_scores_known_and_unknown_samples_by_the_heads_classes(
    head: HeadVersion, team_a: Team, bob: User, staff: User
) -> None:
    new_gen = registry.generator_create(actor=staff, name="New gen", slug="new-gen", family="diffusion")
    cases = [
        # (label confirmed, registered generator, status, the head's verdict label and decision, right?)
        ("gan-a", None, CONFIRMED, "gan-a", KNOWN),  # known, named right
        ("diffusion-b", None, CONFIRMED, "gan-a", KNOWN),  # known, named wrong
        ("real", None, CONFIRMED, "real", UNKNOWN),  # known, but rejected: wrong
        ("real", None, CONFIRMED, "real", REAL),  # known, right
        ("diffusion-b", None, DISPUTED, "gan-a", KNOWN),  # disputed with the truth: known, wrong
        ("", None, CONFIRMED, "gan-a", UNKNOWN),  # from an unregistered source, rejected: right
        ("Midjourney v6", None, CONFIRMED, "gan-a", KNOWN),  # named in words, accepted: wrong
        ("new-gen", new_gen, CONFIRMED, "gan-a", UNKNOWN),  # registered, not one of the head's classes: unknown
        ("", None, DISPUTED, "gan-a", KNOWN),  # disputed, no truth: left out
    ]
    for index, (label, generator, status, verdict_label, decision) in enumerate(cases):
        submission = upload(team_a, bob, seed=100 + index)
        verdict_row(submission, head, label=verdict_label, decision=decision)
        confirm(submission, label, status=status, generator=generator)

    metrics = head_version_field_metrics(head_version=head)

    assert (metrics.known_n, metrics.known_correct) == (5, 2)
    assert (metrics.unknown_n, metrics.unknown_rejected) == (3, 2)
    assert metrics.confirmed == 8 and metrics.disputed_unlabelled == 1 and metrics.awaiting_prediction == 0
    assert metrics.accuracy == pytest.approx(2 / 5) and metrics.unknown_rejection == pytest.approx(2 / 3)
    assert metrics.accuracy_ci == wilson_interval(2, 5) and metrics.unknown_rejection_ci == wilson_interval(2, 3)
    assert {c.label: (c.n, c.correct) for c in metrics.per_class} == {
        "real": (2, 1), "gan-a": (1, 1), "diffusion-b": (2, 0),
    }  # fmt: skip
    assert not metrics.enough_for_accuracy and not metrics.enough_for_unknown_rejection


def test_a_head_with_no_confirmations_has_null_fractions(head: HeadVersion) -> None:
    metrics = head_version_field_metrics(head_version=head)
    assert metrics.confirmed == 0
    assert metrics.accuracy is None and metrics.accuracy_ci is None
    assert metrics.unknown_rejection is None and metrics.unknown_rejection_ci is None


def test_a_duplicate_counts_with_its_originals_verdict_and_an_image_counts_once(
    head: HeadVersion, team_a: Team, bob: User
) -> None:
    original = upload(team_a, bob, seed=200)
    duplicate = upload(team_a, bob, seed=200, name="again.png")
    assert duplicate.duplicate_of_id == original.pk
    verdict_row(original, head, label="gan-a", decision=KNOWN)
    confirm(duplicate, "gan-a")
    metrics = head_version_field_metrics(head_version=head)
    assert (metrics.known_n, metrics.known_correct) == (1, 1)

    # Both uploads confirmed: one image, judged by the latest word (here: the original, disputed as diffusion-b).
    confirm(original, "diffusion-b", status=DISPUTED)
    metrics = head_version_field_metrics(head_version=head)
    assert (metrics.known_n, metrics.known_correct) == (1, 0)
    assert {c.label: c.n for c in metrics.per_class}["diffusion-b"] == 1


def test_field_predictions_stand_in_for_missing_verdicts_and_a_verdict_wins(
    head: HeadVersion, team_a: Team, bob: User
) -> None:
    other_head = head_version_row(2, classes=("real", "gan-a", "diffusion-b"))
    judged_by_other = upload(team_a, bob, seed=300)
    verdict_row(judged_by_other, other_head, label="gan-a", decision=KNOWN)  # not this head's word
    confirm(judged_by_other, "gan-a")
    both = upload(team_a, bob, seed=301)
    verdict_row(both, head, label="gan-a", decision=KNOWN)
    confirm(both, "gan-a")
    never = upload(team_a, bob, seed=302)
    confirm(never, "diffusion-b")

    assert field_submissions_awaiting_prediction(head_version=head) == [judged_by_other.pk, never.pk]
    FieldPrediction.objects.create(head_version=head, submission=judged_by_other, label="diffusion-b",
                                   decision=KNOWN, score=0.9)
    FieldPrediction.objects.create(head_version=head, submission=both, label="real", decision=REAL, score=0.9)

    metrics = head_version_field_metrics(head_version=head)
    # judged_by_other: the field prediction (wrong); both: the verdict (right), not the prediction; never: waits.
    assert (metrics.known_n, metrics.known_correct, metrics.awaiting_prediction) == (2, 1, 1)
    assert field_submissions_awaiting_prediction(head_version=head) == [never.pk]


def test_an_image_the_head_was_trained_on_is_left_out(head: HeadVersion, team_a: Team, bob: User) -> None:
    promoted = upload(team_a, bob, seed=400)
    verdict_row(promoted, head, label="gan-a", decision=KNOWN)
    confirm(promoted, "gan-a")
    HeadVersion.objects.filter(pk=head.pk).update(manifest=[{"generator": "gan-a", "sha256": promoted.sha256}])
    head.refresh_from_db()
    metrics = head_version_field_metrics(head_version=head)
    assert metrics.confirmed == 0 and metrics.in_training_set == 1


def test_it_reads_the_metrics_in_a_few_queries_whatever_the_number_of_confirmations(
    head: HeadVersion, team_a: Team, bob: User
) -> None:
    for index in range(12):
        submission = upload(team_a, bob, seed=500 + index)
        if index % 3:
            verdict_row(submission, head, label="gan-a", decision=KNOWN)
        confirm(submission, "gan-a")
    with CaptureQueriesContext(connection) as queries:
        metrics = head_version_field_metrics(head_version=head)
    assert metrics.known_n == 8 and metrics.awaiting_prediction == 4
    assert len(queries) == 3  # confirmations, verdicts, field predictions


def test_the_comparison_rows_put_both_heads_side_by_side(head: HeadVersion, team_a: Team, bob: User) -> None:
    candidate = head_version_row(2, classes=("real", "gan-a", "diffusion-b"))
    for index in range(4):
        submission = upload(team_a, bob, seed=600 + index)
        verdict_row(submission, head, label="gan-a", decision=KNOWN)
        verdict_row(submission, candidate, label="gan-a" if index else "real", decision=KNOWN)
        confirm(submission, "gan-a")
    accuracy, rejection = head_version_field_rows(active=head, candidate=candidate)
    assert accuracy["active"]["value"] == 1.0 and accuracy["candidate"]["value"] == 0.75
    assert accuracy["delta"] == pytest.approx(-0.25) and accuracy["significant"] is False
    assert accuracy["candidate"]["n"] == 4 and accuracy["candidate"]["ci"] == wilson_interval(3, 4)
    assert rejection["active"]["value"] is None and rejection["delta"] is None


# --- the API ---------------------------------------------------------------------------------------------

FIELDS = {
    "head_version", "confirmed", "accuracy", "accuracy_ci", "unknown_rejection", "unknown_rejection_ci", "known_n",
    "known_correct", "unknown_n", "unknown_rejected", "disputed_unlabelled", "awaiting_prediction",
    "in_training_set", "min_confirmed", "enough_for_accuracy", "enough_for_unknown_rejection", "per_class",
}  # fmt: skip


def test_the_api_answers_the_figures_to_every_registry_reader(
    head: HeadVersion, team_a: Team, bob: User, charlie: User, staff: User
) -> None:
    for index, (label, decision) in enumerate([("gan-a", KNOWN), ("gan-a", KNOWN), ("real", KNOWN)]):
        submission = upload(team_a, bob, seed=700 + index)
        verdict_row(submission, head, label=label, decision=decision)
        confirm(submission, "gan-a")
    unknown = upload(team_a, bob, seed=710)
    verdict_row(unknown, head, label="gan-a", decision=UNKNOWN)
    confirm(unknown, "")

    for user in (bob, charlie, staff):  # team members (of any team) and registry admins read heads
        response = api_client(user).get("/api/v1/heads/1/field-metrics/")
        assert response.status_code == 200, user
        body = response.json()
        assert set(body) == FIELDS
        assert body["confirmed"] == 4 and body["head_version"] == 1
        assert body["accuracy"] == pytest.approx(2 / 3)
        low, high = wilson_interval(2, 3)  # type: ignore[misc]
        assert body["accuracy_ci"] == [pytest.approx(low), pytest.approx(high)]
        assert body["unknown_rejection"] == 1.0 and body["unknown_rejection_ci"][1] == 1.0
        assert body["min_confirmed"] == 30 and body["enough_for_accuracy"] is False
        assert {"label": "gan-a", "n": 3, "correct": 2, "accuracy": pytest.approx(2 / 3)} in body["per_class"]

    assert api_client(None).get("/api/v1/heads/1/field-metrics/").status_code == 401
    loner = User.objects.create_user("loner", password="x")
    assert api_client(loner).get("/api/v1/heads/1/field-metrics/").status_code == 403
    assert api_client(bob).get("/api/v1/heads/99/field-metrics/").status_code == 404


def test_the_api_says_null_for_a_head_without_confirmations(head: HeadVersion, bob: User) -> None:
    body = api_client(bob).get("/api/v1/heads/1/field-metrics/").json()
    assert body["confirmed"] == 0
    assert body["accuracy"] is None and body["accuracy_ci"] is None
    assert body["unknown_rejection"] is None and body["unknown_rejection_ci"] is None


def test_the_api_is_in_the_schema(db: None) -> None:
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    operation = schema["paths"]["/api/v1/heads/{version}/field-metrics/"]["get"]
    properties = schema["components"]["schemas"]["FieldMetrics"]["properties"]
    assert set(properties) == FIELDS
    assert {"200", "401", "403", "404"} <= set(operation["responses"])


# --- field predictions, in-process on the real engine ----------------------------------------------------


@pytest.fixture
def attributor(active_head: HeadVersion) -> Attributor:
    from workers.runtime import load_attributor

    return load_attributor(
        head_version_id=active_head.pk, version=active_head.version, artifact_name=active_head.artifact.name
    ).attributor


def synth_upload(team: Team, user: User, synth_dir: Path, label: str, index: int) -> tuple[Submission, Path]:
    # Index 10 and up: never one of the active head's references.
    path = sorted((synth_dir / label).glob("*.png"))[index]
    return submission_create(team=team, user=user, uploaded_file=uploaded(path.name, path.read_bytes())), path


def test_it_fills_field_predictions_as_the_head_would_judge_the_images(
    team_a: Team,
    bob: User,
    synth_dir: Path,
    active_head: HeadVersion,
    attributor: Attributor,
    engine,  # type: ignore[no-untyped-def]
    caplog: pytest.LogCaptureFixture,
) -> None:
    known, known_path = synth_upload(team_a, bob, synth_dir, DEFAULT_KNOWN[1], 11)
    other, other_path = synth_upload(team_a, bob, synth_dir, DEFAULT_UNKNOWN[0], 12)
    real, real_path = synth_upload(team_a, bob, synth_dir, "real", 13)
    duplicate = submission_create(team=team_a, user=bob, uploaded_file=uploaded("copy.png", real_path.read_bytes()))
    lost = upload(team_a, bob, seed=990)  # bytes of its own: never in the feature cache
    judged, _ = synth_upload(team_a, bob, synth_dir, DEFAULT_KNOWN[2], 15)
    verdict_row(judged, active_head, label=DEFAULT_KNOWN[2], decision=KNOWN)
    unconfirmed, _ = synth_upload(team_a, bob, synth_dir, DEFAULT_KNOWN[3], 12)
    confirm(known, DEFAULT_KNOWN[1])
    confirm(other, "")
    confirm(duplicate, "real")  # the duplicate confirmed: the prediction is stored on its original
    confirm(lost, DEFAULT_KNOWN[3])
    confirm(judged, DEFAULT_KNOWN[2])
    default_storage.delete(lost.image.name)

    with caplog.at_level(logging.WARNING, logger="webapp.feedback.services.field"):
        stored = field_predictions_fill(head_version=active_head, attributor=attributor, feature_cache=engine[1])

    assert stored == 3
    predictions = {p.submission_id: p for p in FieldPrediction.objects.filter(head_version=active_head)}
    assert set(predictions) == {known.pk, other.pk, real.pk}  # not the verdict's, the unreadable or unconfirmed
    assert unconfirmed.pk not in predictions and duplicate.pk not in predictions
    expected = attributor.attribute([open_image(p) for p in (known_path, other_path, real_path)])
    for submission, attribution in zip((known, other, real), expected, strict=True):
        prediction = predictions[submission.pk]
        assert (prediction.label, prediction.decision) == (attribution.label, attribution.decision)
        assert math.isclose(prediction.score, attribution.score, abs_tol=1e-4)
    assert f"skips submission {lost.pk}" in caplog.text

    # Once filled, nothing is left but the unreadable image, and a second run stores nothing new.
    assert field_submissions_awaiting_prediction(head_version=active_head) == [lost.pk]
    assert field_predictions_fill(head_version=active_head, attributor=attributor, feature_cache=engine[1]) == 0
    metrics = head_version_field_metrics(head_version=active_head)
    assert metrics.confirmed == 4 and metrics.awaiting_prediction == 1


def test_the_worker_task_fills_the_candidate_and_the_active_head(
    team_a: Team, bob: User, synth_dir: Path, active_head: HeadVersion, attributor: Attributor
) -> None:
    from tests.fixtures_registry import head_version_copy
    from workers.celery import app

    candidate = head_version_copy(active_head, version=2)
    submission, _ = synth_upload(team_a, bob, synth_dir, DEFAULT_KNOWN[1], 12)
    confirm(submission, DEFAULT_KNOWN[1])

    app.loader.import_default_modules()
    result = app.tasks["workers.tasks.fill_field_predictions"].apply()  # as beat sends it: no arguments
    assert result.successful(), result.traceback
    assert result.get() == 2
    assert set(FieldPrediction.objects.values_list("head_version_id", flat=True)) == {active_head.pk, candidate.pk}
    # One head by id (as sent after a training): nothing left to do, so it is not even loaded.
    assert app.tasks["workers.tasks.fill_field_predictions"].apply(args=[candidate.pk]).get() == 0


@pytest.mark.redis
def test_a_training_that_makes_a_head_sends_its_field_predictions(
    staff: User, registry_references: dict[str, int], engine, django_capture_on_commit_callbacks  # type: ignore[no-untyped-def]
) -> None:
    import json
    import os

    import redis

    from tests.fixtures import broker_queue_length, purge_broker
    from webapp.registry.services import training_job_start
    from workers.celery import app

    app.loader.import_default_modules()
    purge_broker()
    job = training_job_start(requested_by=staff)  # its own message is left unsent: the task runs here
    with django_capture_on_commit_callbacks(execute=True):
        result = app.tasks["workers.tasks.train_head"].apply(args=[job.pk])
    assert result.get() == "done"
    job.refresh_from_db()
    assert job.head_version is not None
    assert broker_queue_length("training") == 1
    client = redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=5)
    (message,) = client.lrange(os.environ.get("CELERY_BROKER_KEY_PREFIX", "") + "training", 0, -1)
    headers = json.loads(message)["headers"]
    assert headers["task"] == "workers.tasks.fill_field_predictions"
    assert headers["argsrepr"] == f"[{job.head_version.pk}]"
    purge_broker()
