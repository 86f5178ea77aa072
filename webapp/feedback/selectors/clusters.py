"""Reads of the unknown pile's clusters, for site staff: the list with each cluster's teams and a few members,
a cluster's members farthest from its centre first, and one member's image."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from django.db.models import QuerySet

from webapp.feedback.models import UnknownCluster, UnknownClusterMember
from webapp.submissions.models import Submission

PREVIEW_MEMBERS = 6
STATUS_FILTERS = ("open", "registered", "dismissed", "all")


def unknown_cluster_queryset(*, status: str = "open") -> QuerySet[UnknownCluster]:
    """Clusters of one status (or "all"), largest first."""
    clusters = UnknownCluster.objects.select_related("generator", "decided_by").order_by("-size", "-id")
    if status != "all":
        clusters = clusters.filter(status=status)
    return clusters


@dataclass(frozen=True)
class ClusterSummary:
    """A cluster as the pages and the API show it: its members' submission ids (nearest the centre first) and
    how many of them each team sent (most first)."""

    cluster: UnknownCluster
    submission_ids: list[int]
    teams: dict[str, int]

    @property
    def preview_ids(self) -> list[int]:
        return self.submission_ids[:PREVIEW_MEMBERS]


def unknown_clusters_summarise(clusters: Sequence[UnknownCluster]) -> list[ClusterSummary]:
    """Each cluster's `ClusterSummary`, in one query for all of them."""
    members: dict[int, list[int]] = defaultdict(list)
    teams: dict[int, Counter[str]] = defaultdict(Counter)
    rows = (
        UnknownClusterMember.objects.filter(cluster__in=[cluster.pk for cluster in clusters])
        .order_by("cluster_id", "distance", "id")
        .values_list("cluster_id", "submission_id", "submission__team__name")
    )
    for cluster_id, submission_id, team in rows:
        members[cluster_id].append(submission_id)
        teams[cluster_id][team] += 1
    return [
        ClusterSummary(
            cluster=cluster,
            submission_ids=members[cluster.pk],
            teams=dict(sorted(teams[cluster.pk].items(), key=lambda pair: (-pair[1], pair[0]))),
        )
        for cluster in clusters
    ]


def unknown_cluster_list(*, status: str = "open") -> list[ClusterSummary]:
    """The clusters of `unknown_cluster_queryset`, summarised."""
    return unknown_clusters_summarise(list(unknown_cluster_queryset(status=status)))


def unknown_cluster_get(*, cluster_id: int) -> ClusterSummary | None:
    """One cluster of any status, summarised, or None."""
    cluster = unknown_cluster_queryset(status="all").filter(pk=cluster_id).first()
    return unknown_clusters_summarise([cluster])[0] if cluster is not None else None


def unknown_cluster_members(*, cluster: UnknownCluster) -> list[UnknownClusterMember]:
    """Every member with its submission and team, farthest from the centre first (likely outliers on top)."""
    return list(cluster.members.select_related("submission", "submission__team").order_by("-distance", "-id"))


def unknown_cluster_member_submission(*, cluster_id: int, submission_id: int) -> Submission | None:
    """A member's submission, or None when it is not a member of that cluster."""
    member = (
        UnknownClusterMember.objects.filter(cluster_id=cluster_id, submission_id=submission_id)
        .select_related("submission")
        .first()
    )
    return member.submission if member is not None else None
