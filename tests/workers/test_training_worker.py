"""Registry work through a real Celery worker on real Redis: reference features computed on the worker,
a training job queued by the API and followed through it (one at a time), then its head activated."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User

from attribution.images import sha256_of
from tests.fixtures import WorkerProcess, api_client, wait_for
from webapp.audit.models import AuditEvent
from webapp.registry.models import HeadVersion, ReferenceImage

# Images no other test sends through the backbone, so the worker is the one that computes their features.
NEW_GENERATOR = "pixelshuffle-s2"
REFERENCES = 10  # the last ten of 16, the fewest a training accepts per generator


@pytest.mark.worker
def test_a_training_job_runs_on_the_worker_with_live_progress(
    registry_references: dict[str, int],
    staff: User,
    bob: User,
    synth_dir: Path,
    worker: WorkerProcess,
    engine,
) -> None:
    backbone, cache = engine
    admin = api_client(staff)
    assert (
        admin.post(
            "/api/v1/generators/",
            {"name": "PixelShuffle s2", "slug": NEW_GENERATOR, "family": "gan"},
            format="json",
        ).status_code
        == 201
    )
    paths = sorted((synth_dir / NEW_GENERATOR).glob("*.png"))[-REFERENCES:]
    # The head's block, and every other block for the training's per-block sweep, from the same pass.
    blocks = sorted({*settings.ATTRIBUTION_BLOCKS, *range(backbone.num_blocks)})
    for path in paths:  # whatever an earlier run cached, the worker must compute these
        for block in blocks:
            cache.path(sha256_of(path), backbone.identity, block).unlink(missing_ok=True)
    for path in paths:
        with open(path, "rb") as handle:
            response = admin.post(f"/api/v1/generators/{NEW_GENERATOR}/references/", {"image": handle})
        assert response.status_code == 201, response.json()

    # Each upload queued `compute_reference_features` on commit: the worker fills the shared cache.
    new_shas = list(
        ReferenceImage.objects.filter(generator__slug=NEW_GENERATOR).values_list("sha256", flat=True)
    )
    wait_for(
        lambda: all(cache.get(sha, backbone.identity, b) is not None for sha in new_shas for b in blocks),
        timeout=120,
        message="reference features computed on the worker",
    )

    started = admin.post("/api/v1/heads/train/")
    assert started.status_code == 202, started.json()
    job_id = started.json()["id"]
    second = admin.post("/api/v1/heads/train/")
    assert second.status_code == 409 and f"Training job {job_id}" in second.json()["detail"]

    seen: list[tuple[str, str, float]] = []

    def finished() -> dict | None:
        body = api_client(bob).get(f"/api/v1/training-jobs/{job_id}/").json()
        if not seen or seen[-1] != (body["status"], body["step"], body["progress"]):
            seen.append((body["status"], body["step"], body["progress"]))
        return body if body["status"] in ("done", "failed", "cancelled") else None

    job = wait_for(finished, timeout=180, interval=0.05, message="training job finished")
    assert job["status"] == "done", job
    assert job["head_version"] == 1 and job["progress"] == 1.0 and job["error"] == ""
    logged_steps = {line.split(" ")[1].rstrip(":") for line in job["log"].splitlines()}
    steps = {"features", "fit", "cross_validation", "holdout", "block_sweep", "saving", "done"}
    assert steps <= logged_steps, job["log"]
    running = [progress for status, _, progress in seen if status == "running"]
    assert running, seen  # the API showed the job while it ran
    assert running == sorted(running), seen  # progress only moves forward
    assert f"running on backbone {backbone.identity}" in job["log"]

    head = HeadVersion.objects.get(version=1)
    assert NEW_GENERATOR in head.classes and head.status == HeadVersion.Status.CANDIDATE
    assert sum(item["generator"] == NEW_GENERATOR for item in head.manifest) == REFERENCES
    assert head.backbone == backbone.identity  # the worker's backbone is the one this process loads
    assert [row["block"] for row in head.metrics["per_block"]] == list(range(backbone.num_blocks))

    assert admin.post("/api/v1/heads/1/activate/").json()["status"] == "active"
    assert AuditEvent.objects.filter(action="activate", actor=staff, detail__version=1).exists()
