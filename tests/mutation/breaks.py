"""The breaks the mutation check applies, one at a time: each is a promise of the project broken by a
one-line change (two where a promise lives in two places), and the few tests that must then fail.

`path` may name several candidate files (a module that moved): the first that exists is edited. `line`
is the text of the original line (indentation aside) and must occur exactly once in that file, or
`occurrence` says which of its occurrences (0-based). Tests run from the repository root.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Edit:
    path: str | tuple[str, ...]
    line: str
    replacement: str
    occurrence: int | None = None


@dataclass(frozen=True)
class Break:
    name: str
    edits: tuple[Edit, ...]
    tests: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)  # e.g. a PostgreSQL database for row locks


SERVICES = ("webapp/submissions/services.py",)
UPLOADS = ("webapp/common/uploads.py", "webapp/submissions/validation.py")
PROMISES = "tests/webapp/test_promises.py"
ATTRIBUTION = "tests/webapp/test_submission_attribution.py"
# The PostgreSQL database for the breaks only row locks can catch (pytest-django makes test_<name>).
POSTGRES = {"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/h2db_mutation"}

BREAKS: list[Break] = [
    Break(
        "verdict: no unique (submission, head version) constraint",
        (
            Edit("webapp/submissions/models.py",
                 'models.UniqueConstraint(fields=["submission", "head_version"], name="one_verdict_per_head_version"),',
                 ""),
            Edit("webapp/submissions/migrations/0001_initial.py",
                 "constraint=models.UniqueConstraint(fields=('submission', 'head_version'), "
                 "name='one_verdict_per_head_version'),",
                 "constraint=models.UniqueConstraint(fields=('id', 'head_version'), "
                 "name='one_verdict_per_head_version'),"),
        ),
        (f"{PROMISES}::test_the_database_refuses_a_second_verdict_for_the_same_submission_and_head_version",),
    ),
    Break(
        "beat: CELERY_BEAT_SCHEDULE deleted",
        (Edit("webapp/settings.py", "CELERY_BEAT_SCHEDULE = {", "_CELERY_BEAT_SCHEDULE_DELETED = {"),),
        ("tests/workers/test_beat_schedule.py",),
    ),
    Break(
        "beat: the sweep scheduled under a task name no worker knows",
        (Edit("webapp/settings.py", '"task": "workers.tasks.sweep_stale_submissions",',
              '"task": "workers.tasks.sweep_stale",'),),
        ("tests/workers/test_beat_schedule.py",),
    ),
    Break(
        "sweep: the task does not call the sweep",
        (Edit("workers/tasks/attribution.py", "return len(submissions_sweep_stale())", "return 0"),),
        ("tests/workers/test_beat_schedule.py::test_the_sweep_task_requeues_stale_submissions",),
    ),
    Break(
        "sweep: submissions left processing by a dead worker are not swept",
        (Edit(SERVICES, "| Q(status=Status.PROCESSING, started_at__lt=cutoff)",
              "| Q(status=Status.PROCESSING, started_at__lt=cutoff - timedelta(days=365))"),),
        ("tests/webapp/test_submission_sweep.py", "tests/workers/test_beat_schedule.py"),
    ),
    Break(
        "group pass: no one-image-at-a-time retry after the pass fails",
        (Edit(SERVICES, "for result in _attribute(attributor, [submission], cache, batch_size=1, loader_threads=0)",
              'for result in [f"the model could not process this image ({type(error).__name__}: {error})"]'),),
        (f"{PROMISES}::test_a_group_whose_pass_breaks_on_one_image_still_gives_the_others_their_verdicts",),
    ),
    Break(
        "worker: the database-retry path disabled",
        (Edit("workers/tasks/attribution.py", "except (OperationalError, InterfaceError):",
              "except (InterfaceError,):"),),
        ("tests/workers/test_task_limits.py::test_a_group_whose_database_is_away_is_sent_again_then_given_up",),
    ),
    Break(
        "worker: the database retries never give up",
        (Edit("workers/tasks/attribution.py", "if retries >= DATABASE_RETRIES:",
              "if retries >= 10 * DATABASE_RETRIES:"),),
        ("tests/workers/test_task_limits.py::test_a_group_whose_database_is_away_is_sent_again_then_given_up",),
    ),
    # (Passing `timeout=None` in GroupedTask.flush is no break here: billiard then applies the pool's own
    # limits, which Celery sets from the same settings. An explicit wrong limit is one.)
    Break(
        "worker: the group's time limits not handed to the pool",
        (
            Edit("workers/batching.py", "timeout=hard_limit,", "timeout=24 * 3600,"),
            Edit("workers/batching.py", "soft_timeout=soft_limit,", "soft_timeout=24 * 3600,"),
        ),
        ("tests/workers/test_task_limits.py::test_a_group_over_its_time_limit_is_ended_and_the_worker_goes_on",),
    ),
    Break(
        "worker: no task time limits in the settings",
        (
            Edit("webapp/settings.py", 'CELERY_TASK_TIME_LIMIT = envint("CELERY_TASK_TIME_LIMIT", 900)',
                 "CELERY_TASK_TIME_LIMIT = None"),
            Edit("webapp/settings.py", 'CELERY_TASK_SOFT_TIME_LIMIT = envint("CELERY_TASK_SOFT_TIME_LIMIT", 840)',
                 "CELERY_TASK_SOFT_TIME_LIMIT = None"),
        ),
        ("tests/workers/test_task_limits.py::test_a_group_over_its_time_limit_is_ended_and_the_worker_goes_on",),
    ),
    Break(
        "decision: a score equal to the threshold is unknown (< became <=)",
        (Edit("attribution/predict.py", "if score < head.threshold:", "if score <= head.threshold:"),),
        ("tests/attribution/test_predict_threshold.py",),
    ),
    Break(
        "decision: the threshold ignored",
        (Edit("attribution/predict.py", "if score < head.threshold:", "if score < 0:"),),
        ("tests/attribution/test_predict_threshold.py",),
    ),
    Break(
        "worker: UPLOAD_MAX_PIXELS ignored when opening a stored image",
        (Edit(SERVICES, "return open_image(stored, max_pixels=settings.UPLOAD_MAX_PIXELS)",
              "return open_image(stored)"),),
        (f"{PROMISES}::test_the_worker_refuses_an_image_over_the_projects_pixel_limit",),
    ),
    Break(
        "upload: the pixel limit not applied by the web check",
        (Edit(UPLOADS, "uploaded_file, allowed_formats=ALLOWED_FORMATS, max_pixels=settings.UPLOAD_MAX_PIXELS",
              "uploaded_file, allowed_formats=ALLOWED_FORMATS, max_pixels=10**12"),),
        ("tests/webapp/test_submission_validation.py",),
    ),
    Break(
        "upload: the size limit off by a factor",
        (Edit(UPLOADS, "if size > settings.UPLOAD_MAX_BYTES:", "if size > 2 * settings.UPLOAD_MAX_BYTES:"),),
        ("tests/webapp/test_submission_validation.py",),
    ),
    Break(
        "upload: the file-count limit not applied",
        (Edit(UPLOADS, "if count > settings.UPLOAD_MAX_FILES:", "if count > 10 * settings.UPLOAD_MAX_FILES:"),),
        ("tests/webapp/test_submission_validation.py",),
    ),
    Break(
        "team filter: one submission of any team",
        (Edit("webapp/submissions/selectors.py",
              "submission = _annotated(Submission.objects.filter(team=team, pk=submission_id)).first()",
              "submission = _annotated(Submission.objects.filter(pk=submission_id)).first()"),),
        ("tests/webapp/test_access_matrix.py::test_every_role_gets_the_expected_status_from_every_endpoint",),
    ),
    Break(
        "team filter: the submission list of every team",
        (Edit("webapp/submissions/selectors.py", "submissions = _annotated(Submission.objects.filter(team=team))",
              "submissions = _annotated(Submission.objects.all())"),),
        ("tests/webapp/test_access_matrix.py::test_every_role_gets_the_expected_status_from_every_endpoint",),
    ),
    Break(
        "team filter: progress rows of every team",
        (Edit("webapp/submissions/selectors.py",
              "rows = verdicts_attach(_annotated(Submission.objects.filter(team=team, id__in=list(submission_ids))))",
              "rows = verdicts_attach(_annotated(Submission.objects.filter(id__in=list(submission_ids))))"),),
        ("tests/webapp/test_access_matrix.py::test_every_role_gets_the_expected_status_from_every_endpoint",),
    ),
    Break(
        "team filter: the case list of every team",
        (Edit("webapp/cases/selectors.py", "Case.objects.filter(team=team)", "Case.objects.all()"),),
        ("tests/webapp/test_access_matrix.py::test_every_role_gets_the_expected_status_from_every_endpoint",),
    ),
    Break(
        "claims: a claim does not count an attempt",
        (Edit(SERVICES, 'status=Status.PROCESSING, attempts=F("attempts") + 1, started_at=now, error=""',
              'status=Status.PROCESSING, attempts=F("attempts"), started_at=now, error=""'),),
        (f"{ATTRIBUTION}::test_after_a_crash_the_retries_go_one_at_a_time_so_a_poison_image_fails_alone",),
    ),
    Break(
        "claims: a submission out of attempts is claimed again",
        (Edit(SERVICES, "claimed = [pk for pk, attempts in rows if attempts < settings.SUBMISSION_MAX_ATTEMPTS]",
              "claimed = [pk for pk, attempts in rows if attempts <= settings.SUBMISSION_MAX_ATTEMPTS]"),),
        (f"{ATTRIBUTION}::test_after_a_crash_the_retries_go_one_at_a_time_so_a_poison_image_fails_alone",),
    ),
    Break(
        "claims: a second delivery claims a submission another worker holds (no row lock; PostgreSQL)",
        (Edit(SERVICES, "yield list(submissions.select_for_update(skip_locked=True))", "yield list(submissions)"),),
        (f"{ATTRIBUTION}::test_a_second_delivery_skips_submissions_another_worker_is_on",),
        env=POSTGRES,
    ),
    Break(
        "confirmations: a member of another team may confirm",
        (Edit("webapp/common/permissions.py", "return member_of is not None and member_of.pk == team.pk",
              "return member_of is not None"),),
        ("tests/webapp/test_confirmation.py",),
    ),
    Break(
        "field accuracy: a rejected image counts as right for its known class",
        (Edit("webapp/feedback/selectors/field.py", "right = decision != UNKNOWN and label == sample.truth",
              "right = label == sample.truth"),),
        ("tests/webapp/test_field_metrics.py",),
    ),
    Break(
        "promoted references: another team sees them",
        (Edit("webapp/registry/selectors.py", "if user_is_registry_admin(user=user):", "if True:"),),
        ("tests/webapp/test_promotions.py",),
    ),
    Break(
        "unknown clusters: anyone may register one",
        (Edit("webapp/feedback/services/clusters.py", "if user is None or not user.is_staff:", "if user is None:"),),
        ("tests/webapp/test_unknown_clusters.py",),
    ),
    Break(
        "unknown pile: the worker keeps no features",
        (Edit(SERVICES, "if result.decision != Verdict.Decision.UNKNOWN_GENERATOR or result.features is None:",
              "if True:"),),
        ("tests/webapp/test_verdict_features.py",),
    ),
]
