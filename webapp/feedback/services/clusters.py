"""The unknown pile's maintained clustering, and a cluster registered as a new generator (or dismissed).

A worker keeps the features of every image the head rejects as unknown (`Verdict.features`, in the space
`Verdict.feature_space`). `unknown_clusters_refresh` groups the newest of them (`attribution.clustering`) and
keeps the open clusters up to date, each keeping its id while it continues; an admin registers one as a new
generator (its members' images become the references, a training starts) or dismisses it. A registered or
dismissed cluster no longer changes, and its members stay out of later clusterings.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from attribution.clustering import carry_over, cluster_features
from webapp.audit.services import audit_record
from webapp.feedback.models import ReferencePromotion, UnknownCluster, UnknownClusterMember
from webapp.feedback.services.promotions import Promotion, references_promote
from webapp.registry.models import Generator, TrainingJob
from webapp.registry.selectors import head_version_active
from webapp.registry.services.errors import Actor, RegistryError
from webapp.registry.services.generators import generator_create
from webapp.registry.services.training import training_job_start
from webapp.submissions.models import Submission, Verdict
from webapp.submissions.services import verdict_feature_space
from webapp.teams.selectors import user_or_none

logger = logging.getLogger(__name__)

Status = UnknownCluster.Status
DECIDED = (Status.REGISTERED, Status.DISMISSED)
STAFF_MESSAGE = "Only site staff may register or dismiss unknown clusters."


class ClusterRefused(ValueError):
    """A cluster request that cannot be carried out; the message says why, for the user, and `field` names
    the input it is about ("exclude", "family", or "detail" for the cluster itself)."""

    def __init__(self, message: str, *, field: str = "detail") -> None:
        super().__init__(message)
        self.field = field


# --- the maintained clustering ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterRefresh:
    """What a refresh did: the feature space it clustered, how many images it grouped, the open clusters it
    left (`clusters`: created, continued under their id, and `removed`: open ones that no longer hold
    together), or why it did nothing (`skipped`)."""

    feature_space: str = ""
    items: int = 0
    clusters: int = 0
    created: int = 0
    continued: int = 0
    removed: int = 0
    skipped: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Item:
    submission_id: int
    features: np.ndarray
    label: str  # the verdict's closest known class
    created_at: Any


def _pile(*, feature_space: str, max_items: int) -> list[_Item]:
    """The newest `max_items` originals (not duplicates) whose latest verdict is unknown, with features in
    `feature_space`, that no registered or dismissed cluster holds; one per image (SHA-256), oldest first."""
    decided = UnknownClusterMember.objects.filter(cluster__status__in=DECIDED).values("submission_id")
    rows = (
        Submission.objects.filter(
            duplicate_of__isnull=True,
            verdict_decision=Verdict.Decision.UNKNOWN_GENERATOR,
            verdict__feature_space=feature_space,
            verdict__features__isnull=False,
        )
        .exclude(pk__in=decided)
        .order_by("-created_at", "-id")
        .values_list("pk", "sha256", "verdict_label", "created_at", "verdict__features")[: max(max_items, 0)]
    )
    items: list[_Item] = []
    seen: set[str] = set()
    width: int | None = None
    for pk, sha256, label, created_at, raw in rows:
        if sha256 in seen:  # the same bytes sent by another team: one vote, not a cluster of copies
            continue
        seen.add(sha256)
        features = np.frombuffer(bytes(raw or b""), dtype="<f4")
        width = width or len(features)
        if len(features) != width or not np.all(np.isfinite(features)):
            logger.warning("submission %s: stored features unusable (%d values), left out", pk, len(features))
            continue
        items.append(_Item(pk, features, label, created_at))
    return items[::-1]


def unknown_clusters_refresh(
    *,
    max_items: int | None = None,
    min_cluster_size: int | None = None,
    distance_threshold: float | None = None,
) -> ClusterRefresh:
    """Cluster the newest images rejected as unknown in the active head's feature space (at most
    UNKNOWN_CLUSTER_MAX_ITEMS, groups of at least UNKNOWN_CLUSTER_MIN_SIZE within UNKNOWN_CLUSTER_DISTANCE) and
    bring the open clusters of that space up to date: a group that continues an open cluster (more than half of
    that cluster's members still clustered are in it) keeps the cluster's id, the others become new clusters,
    and the open clusters that nothing continues are removed. Clusters of other feature spaces, and registered
    or dismissed ones, are left as they are.

    Each cluster records its size, the known class most of its members were closest to (the verdicts' label)
    and that share, and when its first and last members were uploaded; each member its cosine distance to the
    cluster's centre.
    """
    active = head_version_active()
    if active is None:
        return ClusterRefresh(skipped="no head is active")
    space = verdict_feature_space(backbone=active.backbone, blocks=active.blocks)
    items = _pile(
        feature_space=space,
        max_items=settings.UNKNOWN_CLUSTER_MAX_ITEMS if max_items is None else max_items,
    )
    min_size = settings.UNKNOWN_CLUSTER_MIN_SIZE if min_cluster_size is None else min_cluster_size
    threshold = settings.UNKNOWN_CLUSTER_DISTANCE if distance_threshold is None else distance_threshold
    if items:
        clustering = cluster_features(
            np.stack([item.features for item in items]), min_cluster_size=min_size, distance_threshold=threshold
        )
        groups = [[items[row] for row in clustering.members(k)] for k in range(clustering.n_clusters)]
        distances = {items[row].submission_id: float(clustering.distances[row]) for row in range(len(items))}
    else:
        groups, distances = [], {}
    clustered = {item.submission_id for item in items}
    previous = _open_members(feature_space=space)
    continues = carry_over(
        {cluster_id: ids & clustered for cluster_id, ids in previous.items()},
        [[item.submission_id for item in group] for group in groups],
    )
    with transaction.atomic():
        still_open = set(
            UnknownCluster.objects.select_for_update()
            .filter(status=Status.OPEN, feature_space=space)
            .values_list("pk", flat=True)
        )
        if still_open != set(previous):
            # A cluster was registered or dismissed (or another refresh ran) while this one computed: the next
            # refresh starts from what is there now.
            return ClusterRefresh(feature_space=space, items=len(items), skipped="the clusters changed meanwhile")
        kept: set[int] = set()
        for group, continued in zip(groups, continues, strict=True):
            cluster = (
                UnknownCluster.objects.get(pk=continued)
                if continued is not None
                else UnknownCluster(feature_space=space)
            )
            _cluster_describe(cluster, group)
            cluster.save()
            kept.add(cluster.pk)
            cluster.members.all().delete()
            UnknownClusterMember.objects.bulk_create(
                UnknownClusterMember(
                    cluster=cluster, submission_id=item.submission_id, distance=distances[item.submission_id]
                )
                for item in group
            )
        removed = still_open - kept
        UnknownCluster.objects.filter(pk__in=removed).delete()
    created = sum(continued is None for continued in continues)
    result = ClusterRefresh(
        feature_space=space,
        items=len(items),
        clusters=len(groups),
        created=created,
        continued=len(groups) - created,
        removed=len(removed),
    )
    logger.info("unknown pile clustered: %s", result)
    return result


def _open_members(*, feature_space: str) -> dict[int, set[int]]:
    members: dict[int, set[int]] = {
        pk: set()
        for pk in UnknownCluster.objects.filter(status=Status.OPEN, feature_space=feature_space)
        .order_by("pk")
        .values_list("pk", flat=True)
    }
    for cluster_id, submission_id in UnknownClusterMember.objects.filter(cluster_id__in=list(members)).values_list(
        "cluster_id", "submission_id"
    ):
        members[cluster_id].add(submission_id)
    return members


def _cluster_describe(cluster: UnknownCluster, group: Sequence[_Item]) -> None:
    """Size, the known class most members were closest to and that share, first and last upload."""
    labels = Counter(item.label for item in group if item.label)
    nearest, count = min(labels.items(), key=lambda pair: (-pair[1], pair[0])) if labels else ("", 0)
    cluster.size = len(group)
    cluster.nearest_known = nearest
    cluster.nearest_known_share = round(count / len(group), 4) if group else 0.0
    cluster.first_seen = min((item.created_at for item in group), default=None)
    cluster.last_seen = max((item.created_at for item in group), default=None)


# --- an admin's decision ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterRegistration:
    """A cluster registered as `generator`: what became of each member kept (`promotions`), the generator's
    reference images now, and the training job started for it, or why none was (`training_error`)."""

    cluster: UnknownCluster
    generator: Generator
    promotions: list[Promotion]
    reference_count: int
    training_job: TrainingJob | None
    training_error: str = ""


def _staff_check(actor: Actor) -> None:
    user = user_or_none(actor)
    if user is None or not user.is_staff:
        raise PermissionDenied(STAFF_MESSAGE)


def _open_locked(cluster: UnknownCluster) -> UnknownCluster:
    locked = UnknownCluster.objects.select_for_update().get(pk=cluster.pk)
    if locked.status != Status.OPEN:
        raise ClusterRefused(f"Unknown cluster {locked.pk} is already {locked.get_status_display().lower()}.")
    return locked


def unknown_cluster_register(
    *,
    cluster: UnknownCluster,
    name: str,
    slug: str,
    family: str = Generator.Family.OTHER,
    description: str = "",
    exclude_submission_ids: Collection[int] = (),
    actor: Actor,
) -> ClusterRegistration:
    """Register an open cluster as a new generator (site staff only: PermissionDenied otherwise): the generator
    (`generator_create`: Django's ValidationError for a name or slug already taken), its references copied from
    the images of the members not excluded (`references_promote`, linked to the cluster), the cluster marked
    registered (the excluded members leave it and return to the pile), all in one transaction with its audit
    event. Then a training job starts on every active generator's references; when it cannot (a training
    already queued or running, the task queue down, too few references) the registration stands and
    `training_error` says why.

    Raises ClusterRefused for a cluster that is not open, an excluded id that is not a member, every member
    excluded, or the family "real".
    """
    _staff_check(actor)
    if family == Generator.Family.REAL:
        raise ClusterRefused(
            "Real photographs belong to the built-in class real: a cluster becomes a generator.", field="family"
        )
    excluded = {int(pk) for pk in exclude_submission_ids}
    with transaction.atomic():
        locked = _open_locked(cluster)
        members = list(locked.members.select_related("submission").order_by("-distance", "id"))
        strangers = excluded - {member.submission_id for member in members}
        if strangers:
            raise ClusterRefused(
                f"Not members of unknown cluster {locked.pk}: {', '.join(map(str, sorted(strangers)))}.",
                field="exclude",
            )
        kept = [member.submission for member in members if member.submission_id not in excluded]
        if not kept:
            raise ClusterRefused("Every member is excluded: there is nothing to register.", field="exclude")
        generator = generator_create(
            actor=actor,
            name=name,
            slug=slug,
            family=family,
            description=description
            or f"Registered from unknown cluster {locked.pk}: {len(kept)} images rejected as unknown.",
        )
        promotions = references_promote(
            submissions=kept,
            generator=generator,
            actor=actor,
            source=ReferencePromotion.Source.CLUSTER,
            cluster=locked,
        )
        locked.members.filter(submission_id__in=excluded).delete()
        locked.status, locked.generator = Status.REGISTERED, generator
        locked.decided_by, locked.decided_at = user_or_none(actor), timezone.now()
        # What it holds now: the members kept.
        _cluster_describe(locked, [_Item(s.pk, np.zeros(0), s.verdict_label, s.created_at) for s in kept])
        locked.save()
        audit_record(
            actor=actor,
            action="unknown_cluster_register",
            target=locked,
            detail={
                "generator": generator.slug,
                "members": [submission.pk for submission in kept],
                "excluded": sorted(excluded),
                "references_added": sum(p.created for p in promotions),
                "refused": {p.submission.pk: p.error for p in promotions if p.error},
            },
        )
    job, error = _training_start(actor)
    return ClusterRegistration(
        cluster=locked,
        generator=generator,
        promotions=promotions,
        reference_count=generator.references.count(),
        training_job=job,
        training_error=error,
    )


def _training_start(actor: Actor) -> tuple[TrainingJob | None, str]:
    """A training job for the registered generator, after its registration has committed (so that a task
    queue that is down is told at once, `TrainingNotQueued`), or why none was started."""
    try:
        return training_job_start(requested_by=actor), ""
    except RegistryError as refused:  # already running, broker down, too few references
        logger.info("no training after a cluster's registration: %s", refused)
        return None, str(refused)


def unknown_cluster_dismiss(*, cluster: UnknownCluster, actor: Actor, reason: str = "") -> UnknownCluster:
    """Set an open cluster aside (site staff only): it no longer changes, and its members stay out of later
    clusterings. Raises ClusterRefused when it is not open."""
    _staff_check(actor)
    with transaction.atomic():
        locked = _open_locked(cluster)
        locked.status = Status.DISMISSED
        locked.decided_by, locked.decided_at = user_or_none(actor), timezone.now()
        locked.save()
        audit_record(
            actor=actor,
            action="unknown_cluster_dismiss",
            target=locked,
            detail={"size": locked.size, "nearest_known": locked.nearest_known, "reason": reason[:500]},
        )
    return locked
