"""The unknown pile, clustered: `unknown_clusters_refresh` on verdicts that carry synthetic features, a cluster
registered as a new generator (references linked, training queued) or dismissed, the staff API
(/api/v1/unknown-clusters/) and pages (/feedback/unknown-clusters/), and who may see them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.test import Client
from django.utils import timezone

from tests.fixtures import api_client
from tests.webapp import head_version_row, image_bytes, uploaded, verdict_row
from webapp.audit.models import AuditEvent
from webapp.feedback.models import ReferencePromotion, UnknownCluster
from webapp.feedback.services.clusters import (
    ClusterRefused,
    unknown_cluster_dismiss,
    unknown_cluster_register,
    unknown_clusters_refresh,
)
from webapp.registry.models import Generator, HeadVersion, ReferenceImage, TrainingJob
from webapp.registry.services.references import reference_image_create
from webapp.submissions.models import Submission, Verdict
from webapp.submissions.services import submission_create, verdict_feature_space
from webapp.teams.models import Team

DIM = 32
UNKNOWN = Verdict.Decision.UNKNOWN_GENERATOR
Status = UnknownCluster.Status


@pytest.fixture
def head(db: None) -> HeadVersion:
    """The active head (a row without an artifact: the verdicts are written by the tests)."""
    return head_version_row(classes=("real", "gan-a", "diffusion-b"))


@pytest.fixture
def space(head: HeadVersion) -> str:
    return verdict_feature_space(backbone=head.backbone, blocks=head.blocks)


def directions(seed: int, n: int, *, spread: float = 0.03, centre: int | None = None) -> np.ndarray:
    """`n` unit vectors around the direction numbered `centre` (tight), or scattered over the sphere."""
    rng = np.random.default_rng(seed)
    if centre is None:
        points = rng.normal(size=(n, DIM))
    else:
        axis = np.random.default_rng(1000 + centre).normal(size=DIM)
        points = axis / np.linalg.norm(axis) + spread * rng.normal(size=(n, DIM))
    return points / np.linalg.norm(points, axis=1, keepdims=True)


class Pile:
    """Submissions whose latest verdict is unknown, each with features given by the test."""

    def __init__(self, head: HeadVersion, space: str) -> None:
        self.head, self.space, self.seed = head, space, 0

    def add(
        self, team: Team, user: User, features: np.ndarray, *, label: str = "gan-a", space: str | None = None
    ) -> list[Submission]:
        made = []
        for row in features:
            self.seed += 1
            submission = submission_create(
                team=team, user=user, uploaded_file=uploaded(f"img-{self.seed}.png", image_bytes(seed=self.seed))
            )
            verdict_row(
                submission,
                self.head,
                label=label,
                decision=UNKNOWN,
                score=0.4,
                features=np.asarray(row, dtype="<f4").tobytes(),
                feature_space=space or self.space,
            )
            made.append(submission)
        return made


@pytest.fixture
def pile(head: HeadVersion, space: str) -> Pile:
    return Pile(head, space)


def ids(submissions: list[Submission]) -> set[int]:
    return {s.pk for s in submissions}


def members(cluster: UnknownCluster) -> set[int]:
    return set(cluster.members.values_list("submission_id", flat=True))


def two_groups(pile: Pile, bob: User, charlie: User) -> tuple[list[Submission], list[Submission], list[Submission]]:
    """Group A: 8 images of team A (closest to gan-a); group B: 3 of team A and 3 of team B (5 closest to
    diffusion-b, one to gan-a); and 4 scattered images."""
    team_a, team_b = bob.membership.team, charlie.membership.team
    group_a = pile.add(team_a, bob, directions(1, 8, centre=1))
    group_b = pile.add(team_a, bob, directions(2, 3, centre=2), label="diffusion-b")
    group_b += pile.add(team_b, charlie, directions(3, 2, centre=2), label="diffusion-b")
    group_b += pile.add(team_b, charlie, directions(4, 1, centre=2), label="gan-a")
    noise = pile.add(team_a, bob, directions(5, 4))
    return group_a, group_b, noise


def refresh() -> Any:
    return unknown_clusters_refresh(min_cluster_size=5, distance_threshold=0.2)


# --- the maintained clustering ---------------------------------------------------------------------------


def test_it_groups_two_tight_groups_and_leaves_the_scattered_images_out(
    pile: Pile, bob: User, charlie: User, space: str
) -> None:
    group_a, group_b, noise = two_groups(pile, bob, charlie)

    result = refresh()

    assert (result.items, result.clusters, result.created, result.skipped) == (18, 2, 2, "")
    big, small = UnknownCluster.objects.order_by("-size")
    assert (members(big), members(small)) == (ids(group_a), ids(group_b))
    assert (big.status, big.feature_space, big.size, small.size) == (Status.OPEN, space, 8, 6)
    assert (big.nearest_known, big.nearest_known_share) == ("gan-a", 1.0)
    assert (small.nearest_known, small.nearest_known_share) == ("diffusion-b", pytest.approx(5 / 6, abs=1e-4))
    assert (small.first_seen, small.last_seen) == (group_b[0].created_at, group_b[-1].created_at)
    distances = list(small.members.values_list("distance", flat=True))
    assert all(0 <= d < 0.2 for d in distances) and len(set(distances)) == 6
    assert not ids(noise) & set(Submission.objects.filter(unknown_clusters__isnull=False).values_list("pk", flat=True))


def test_a_cluster_keeps_its_id_as_it_grows_and_one_whose_images_are_judged_again_goes(
    pile: Pile, bob: User, charlie: User, head: HeadVersion
) -> None:
    group_a, group_b, _ = two_groups(pile, bob, charlie)
    refresh()
    first_a = UnknownCluster.objects.get(members__submission=group_a[0])

    more_a = pile.add(bob.membership.team, bob, directions(6, 3, centre=1))
    # Group B's images are judged again by a later head, which recognises them: no longer unknown.
    later = head_version_row(version=2)
    for submission in group_b:
        verdict_row(submission, later, label="diffusion-b", decision=Verdict.Decision.KNOWN_GENERATOR)
    result = refresh()

    assert (result.clusters, result.continued, result.created, result.removed) == (1, 1, 0, 1)
    (cluster,) = UnknownCluster.objects.all()
    assert cluster.pk == first_a.pk and members(cluster) == ids(group_a + more_a) and cluster.size == 11
    assert cluster.last_seen == more_a[-1].created_at


def test_it_clusters_only_the_newest_originals_of_the_active_heads_space_that_no_decided_cluster_holds(
    pile: Pile,
    bob: User,
    charlie: User,
    staff: User,
    settings,  # type: ignore[no-untyped-def]
) -> None:
    team_a = bob.membership.team
    old = pile.add(team_a, bob, directions(7, 6, centre=3))
    Submission.objects.filter(pk__in=ids(old)).update(created_at=timezone.now() - timedelta(days=30))
    group = pile.add(team_a, bob, directions(8, 6, centre=4))
    pile.add(team_a, bob, directions(9, 6, centre=5), space="ViT-B-16/other|8")  # another backbone's features

    settings.UNKNOWN_CLUSTER_MAX_ITEMS = 12
    result = refresh()

    assert result.items == 12 and result.clusters == 2  # the old group and the new one, nothing of the other space
    settings.UNKNOWN_CLUSTER_MAX_ITEMS = 6
    assert refresh().items == 6
    (cluster,) = UnknownCluster.objects.all()
    assert members(cluster) == ids(group)  # the newest six only

    unknown_cluster_dismiss(cluster=cluster, actor=staff, reason="screenshots of a video game")
    result = refresh()
    assert result.items == 6 and result.clusters == 1  # the dismissed cluster's images stay out
    assert members(UnknownCluster.objects.get(status=Status.OPEN)) == ids(old)
    cluster.refresh_from_db()
    assert cluster.status == Status.DISMISSED and members(cluster) == ids(group)


def test_duplicates_and_verdicts_without_features_are_left_out(pile: Pile, bob: User, head: HeadVersion) -> None:
    team_a = bob.membership.team
    group = pile.add(team_a, bob, directions(10, 5, centre=6))
    duplicate = submission_create(
        team=team_a, user=bob, uploaded_file=uploaded("copy.png", image_bytes(seed=pile.seed))
    )
    assert duplicate.duplicate_of_id == group[-1].pk and duplicate.verdict_decision == UNKNOWN
    plain = submission_create(team=team_a, user=bob, uploaded_file=uploaded("plain.png", image_bytes(seed=999)))
    verdict_row(plain, head, label="gan-a", decision=UNKNOWN, score=0.3)  # no features (an older worker)

    assert refresh().items == 5
    assert members(UnknownCluster.objects.get()) == ids(group)


def test_without_an_active_head_nothing_happens(db: None) -> None:
    assert unknown_clusters_refresh().skipped == "no head is active"


# --- registering and dismissing -----------------------------------------------------------------------------


@pytest.fixture
def trainable(staff: User, settings) -> None:  # type: ignore[no-untyped-def]
    """ "real" with enough reference images for a training to start (TRAINING_MIN_REFERENCES lowered to 3)."""
    settings.TRAINING_MIN_REFERENCES = 3
    real = Generator.objects.get(slug=Generator.REAL_SLUG)
    for seed in range(3):
        reference_image_create(
            generator=real,
            upload=uploaded(f"real-{seed}.png", image_bytes(seed=5000 + seed)),
            uploaded_by=staff,
            enqueue=False,
        )


def test_registering_makes_a_generator_of_the_members_kept_and_queues_a_training(
    pile: Pile,
    bob: User,
    charlie: User,
    staff: User,
    trainable: None,
    django_capture_on_commit_callbacks,  # type: ignore[no-untyped-def]
) -> None:
    group_a, _, _ = two_groups(pile, bob, charlie)
    refresh()
    cluster = UnknownCluster.objects.get(members__submission=group_a[0])
    outliers = [group_a[1].pk, group_a[2].pk]

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        registration = unknown_cluster_register(
            cluster=cluster,
            name="Imagen X",
            slug="imagen-x",
            family="diffusion",
            exclude_submission_ids=outliers,
            actor=staff,
        )

    generator = Generator.objects.get(slug="imagen-x")
    assert (generator.name, generator.family, generator.is_active) == ("Imagen X", "diffusion", True)
    kept = ids(group_a) - set(outliers)
    promotions = ReferencePromotion.objects.filter(cluster=cluster)
    assert set(promotions.values_list("submission_id", flat=True)) == kept
    assert set(promotions.values_list("source", flat=True)) == {ReferencePromotion.Source.CLUSTER}
    assert set(promotions.values_list("reference__generator__slug", flat=True)) == {"imagen-x"}
    assert registration.reference_count == 6 == ReferenceImage.objects.filter(generator=generator).count()
    cluster.refresh_from_db()
    assert (cluster.status, cluster.generator, cluster.decided_by, cluster.size) == (
        Status.REGISTERED,
        generator,
        staff,
        6,
    )
    assert members(cluster) == kept  # the outliers left it: back to the pile
    assert (cluster.nearest_known, cluster.nearest_known_share) == ("gan-a", 1.0)
    assert (cluster.first_seen, cluster.last_seen) == (group_a[0].created_at, group_a[-1].created_at)
    job = registration.training_job
    assert registration.training_error == "" and job is not None
    assert TrainingJob.objects.get().pk == job.pk and job.status == TrainingJob.Status.QUEUED
    assert len(callbacks) >= 2  # the references' features and the training job, sent after commit
    event = AuditEvent.objects.get(action="unknown_cluster_register")
    assert event.detail["generator"] == "imagen-x" and sorted(event.detail["excluded"]) == sorted(outliers)

    # The outliers return to the pile; the registered members never do.
    result = refresh()
    assert result.items == 18 - 6


def test_a_registration_stands_when_no_training_can_start(
    pile: Pile, bob: User, charlie: User, staff: User, trainable: None
) -> None:
    two_groups(pile, bob, charlie)
    refresh()
    first, second = UnknownCluster.objects.order_by("-size")
    unknown_cluster_register(cluster=first, name="Gen One", slug="gen-one", actor=staff)

    registration = unknown_cluster_register(cluster=second, name="Gen Two", slug="gen-two", actor=staff)

    assert registration.training_job is None and "already queued" in registration.training_error
    second.refresh_from_db()
    assert second.status == Status.REGISTERED and registration.generator.references.count() == 6


def test_registering_refuses_and_changes_nothing(
    pile: Pile, bob: User, charlie: User, staff: User, alice: User
) -> None:
    group_a, group_b, _ = two_groups(pile, bob, charlie)
    refresh()
    cluster = UnknownCluster.objects.get(members__submission=group_a[0])
    register = {"cluster": cluster, "name": "New gen", "slug": "new-gen"}

    with pytest.raises(PermissionDenied):
        unknown_cluster_register(**register, actor=alice)  # a team admin, not site staff
    with pytest.raises(ClusterRefused, match="Not members"):
        unknown_cluster_register(**register, exclude_submission_ids=[group_b[0].pk], actor=staff)
    with pytest.raises(ClusterRefused, match="nothing to register"):
        unknown_cluster_register(**register, exclude_submission_ids=ids(group_a), actor=staff)
    with pytest.raises(ClusterRefused, match="built-in class real"):
        unknown_cluster_register(**register, family="real", actor=staff)
    with pytest.raises(DjangoValidationError):
        unknown_cluster_register(cluster=cluster, name="Real photograph", slug="real", actor=staff)

    cluster.refresh_from_db()
    assert cluster.status == Status.OPEN and members(cluster) == ids(group_a)
    assert not Generator.objects.filter(slug="new-gen").exists() and not ReferencePromotion.objects.exists()

    unknown_cluster_dismiss(cluster=cluster, actor=staff)
    with pytest.raises(ClusterRefused, match="already dismissed"):
        unknown_cluster_register(**register, actor=staff)
    with pytest.raises(PermissionDenied):
        unknown_cluster_dismiss(cluster=UnknownCluster.objects.get(status=Status.OPEN), actor=bob)


# --- the API ---------------------------------------------------------------------------------------------


def test_the_api_lists_and_reads_clusters_for_staff_only(
    pile: Pile, bob: User, charlie: User, alice: User, staff: User
) -> None:
    group_a, group_b, _ = two_groups(pile, bob, charlie)
    refresh()
    cluster_a = UnknownCluster.objects.get(members__submission=group_a[0])

    listed = api_client(staff).get("/api/v1/unknown-clusters/")

    assert listed.status_code == 200
    rows = listed.json()["results"]
    assert [row["size"] for row in rows] == [8, 6]
    first = rows[0]
    assert {"id", "size", "submission_ids", "nearest_known"} <= set(first)
    assert (first["id"], first["nearest_known"], first["status"]) == (cluster_a.pk, "gan-a", "open")
    assert set(first["submission_ids"]) == ids(group_a) and first["teams"] == {"Team A": 8}
    assert rows[1]["teams"] == {"Team A": 3, "Team B": 3}
    detail = api_client(staff).get(f"/api/v1/unknown-clusters/{cluster_a.pk}/").json()
    assert detail["id"] == cluster_a.pk and detail["first_seen"] and detail["last_seen"]
    assert api_client(staff).get("/api/v1/unknown-clusters/?status=registered").json()["results"] == []
    assert api_client(staff).get("/api/v1/unknown-clusters/?status=nonsense").status_code == 400
    assert api_client(staff).get("/api/v1/unknown-clusters/999999/").status_code == 404

    # Team members, team admins included, never see the pile (it holds other teams' images).
    for outsider in (bob, alice, charlie):
        for url in ("/api/v1/unknown-clusters/", f"/api/v1/unknown-clusters/{cluster_a.pk}/"):
            assert api_client(outsider).get(url).status_code == 403
        refused = api_client(outsider).post(
            f"/api/v1/unknown-clusters/{cluster_a.pk}/register/", {"name": "X", "slug": "x"}, format="json"
        )
        assert refused.status_code == 403
    assert api_client().get("/api/v1/unknown-clusters/").status_code == 401


def test_the_api_registers_a_cluster_with_outliers_excluded(
    pile: Pile, bob: User, charlie: User, staff: User, trainable: None
) -> None:
    group_a, group_b, _ = two_groups(pile, bob, charlie)
    refresh()
    cluster = UnknownCluster.objects.get(members__submission=group_a[0])
    url = f"/api/v1/unknown-clusters/{cluster.pk}/register/"

    bad = api_client(staff).post(url, {"name": "New gen", "slug": "not a slug"}, format="json")
    assert bad.status_code == 400 and "slug" in bad.json()
    stranger = api_client(staff).post(
        url, {"name": "New gen", "slug": "new-gen", "exclude": [group_b[0].pk]}, format="json"
    )
    assert stranger.status_code == 400 and "exclude" in stranger.json()
    response = api_client(staff).post(
        url, {"name": "New gen", "slug": "new-gen", "exclude": [group_a[0].pk]}, format="json"
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["generator"]["slug"] == "new-gen" and body["generator"]["family"] == "other"
    assert body["generator"]["reference_count"] == 7 == body["reference_count"] == body["references_added"]
    assert body["training_job"] == TrainingJob.objects.get().pk and body["training_error"] is None
    assert body["cluster"]["status"] == "registered" and group_a[0].pk not in body["cluster"]["submission_ids"]
    assert not ReferencePromotion.objects.filter(submission=group_a[0]).exists()
    taken = api_client(staff).post(url, {"name": "Other", "slug": "other-gen"}, format="json")
    assert taken.status_code == 409 and "registered" in taken.json()["detail"]


def test_the_api_is_in_the_schema(staff: User) -> None:
    schema = api_client(staff).get("/api/schema/", HTTP_ACCEPT="application/json").json()
    paths = schema["paths"]
    assert {
        "/api/v1/unknown-clusters/",
        "/api/v1/unknown-clusters/{id}/",
        "/api/v1/unknown-clusters/{id}/register/",
    } <= set(paths)
    register = paths["/api/v1/unknown-clusters/{id}/register/"]["post"]
    assert {"201", "400", "401", "403", "404", "409"} <= set(register["responses"])


# --- the staff pages -------------------------------------------------------------------------------------


def browser(user: User | None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def test_staff_review_a_cluster_and_register_it_from_its_page(
    pile: Pile, bob: User, charlie: User, staff: User, trainable: None
) -> None:
    group_a, group_b, _ = two_groups(pile, bob, charlie)
    refresh()
    cluster = UnknownCluster.objects.get(members__submission=group_b[0])
    page = browser(staff)

    listing = page.get("/feedback/unknown-clusters/")
    assert listing.status_code == 200
    html = listing.content.decode()
    assert f"Cluster {cluster.pk}" in html and "Team B: 3" in html
    assert f"/feedback/unknown-clusters/{cluster.pk}/members/{group_b[0].pk}/thumbnail/" in html
    assert 'href="/feedback/unknown-clusters/" aria-current="page"' in html  # the nav link, current

    detail = page.get(f"/feedback/unknown-clusters/{cluster.pk}/")
    assert detail.status_code == 200
    order = list(cluster.members.order_by("-distance").values_list("submission_id", flat=True))
    positions = [detail.content.decode().index(f'value="{pk}"') for pk in order]
    assert positions == sorted(positions)  # farthest from the centre first
    assert AuditEvent.objects.filter(action="unknown_cluster_view", object_id=str(cluster.pk)).exists()
    thumbnail = page.get(f"/feedback/unknown-clusters/{cluster.pk}/members/{group_b[3].pk}/thumbnail/")
    assert thumbnail.status_code == 200 and thumbnail["Content-Type"] == "image/jpeg"
    assert page.get(f"/feedback/unknown-clusters/{cluster.pk}/members/{group_a[0].pk}/thumbnail/").status_code == 404

    taken = page.post(
        f"/feedback/unknown-clusters/{cluster.pk}/register/",
        {"name": "Real photograph", "slug": "real", "family": "gan"},
    )
    assert taken.status_code == 400 and "already exists" in taken.content.decode()
    registered = page.post(
        f"/feedback/unknown-clusters/{cluster.pk}/register/",
        {"name": "Gen B", "slug": "gen-b", "family": "gan", "exclude": [str(order[0])]},
    )
    job = TrainingJob.objects.get()
    assert registered.status_code == 302 and registered["Location"] == f"/registry/training-jobs/{job.pk}/"
    assert Generator.objects.get(slug="gen-b").references.count() == 5


def test_staff_dismiss_a_cluster_and_refresh_from_the_list(pile: Pile, bob: User, charlie: User, staff: User) -> None:
    two_groups(pile, bob, charlie)
    page = browser(staff)
    assert page.post("/feedback/unknown-clusters/refresh/").status_code == 302
    cluster = UnknownCluster.objects.order_by("size").first()
    assert cluster is not None

    response = page.post(f"/feedback/unknown-clusters/{cluster.pk}/dismiss/", {"reason": "stock photos"})

    assert response.status_code == 302
    cluster.refresh_from_db()
    assert cluster.status == Status.DISMISSED and cluster.decided_by == staff
    assert AuditEvent.objects.get(action="unknown_cluster_dismiss").detail["reason"] == "stock photos"
    assert f"Cluster {cluster.pk}" in page.get("/feedback/unknown-clusters/?status=dismissed").content.decode()


def test_no_team_member_reaches_the_pages_nor_their_images(pile: Pile, bob: User, charlie: User, alice: User) -> None:
    group_a, group_b, _ = two_groups(pile, bob, charlie)
    refresh()
    cluster = UnknownCluster.objects.get(members__submission=group_b[0])
    urls = [
        "/feedback/unknown-clusters/",
        f"/feedback/unknown-clusters/{cluster.pk}/",
        # Bob's own image, through the cluster: staff only all the same.
        f"/feedback/unknown-clusters/{cluster.pk}/members/{group_b[0].pk}/thumbnail/",
        f"/feedback/unknown-clusters/{cluster.pk}/members/{group_b[4].pk}/thumbnail/",
    ]
    for user in (bob, alice, charlie):
        page = browser(user)
        for url in urls:
            assert page.get(url).status_code == 403, (user, url)
        assert page.post(f"/feedback/unknown-clusters/{cluster.pk}/dismiss/").status_code == 403
        assert "/feedback/unknown-clusters/" not in page.get("/submissions/").content.decode()
    assert browser(None).get(urls[0]).status_code == 302  # to the login form
    # Team A never sees team B's image by the submissions' own thumbnail either.
    assert browser(bob).get(f"/submissions/{group_b[4].pk}/thumbnail/").status_code == 404
    cluster.refresh_from_db()
    assert cluster.status == Status.OPEN


def test_the_refresh_task_runs_on_the_training_queue(pile: Pile, bob: User, charlie: User) -> None:
    from workers.celery import app

    two_groups(pile, bob, charlie)
    app.loader.import_default_modules()
    task = "workers.tasks.refresh_unknown_clusters"
    assert app.amqp.router.route({}, task)["queue"].name == "training"

    result = app.tasks[task].apply()

    assert result.successful(), result.traceback
    assert result.get()["items"] == 18
    assert UnknownCluster.objects.count() >= 1
