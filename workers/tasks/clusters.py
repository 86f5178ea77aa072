"""The unknown pile's periodic clustering (queue `training`: it reads features the verdicts kept and never
loads the backbone, so it does not wait behind the analysts' images on the `attribution` queue)."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from webapp.feedback.services.clusters import unknown_clusters_refresh

__all__ = ["refresh_unknown_clusters"]


@shared_task(name="workers.tasks.refresh_unknown_clusters")
def refresh_unknown_clusters() -> dict[str, Any]:
    """Periodic (beat): re-cluster the newest images rejected as unknown; returns what changed."""
    return unknown_clusters_refresh().as_dict()
