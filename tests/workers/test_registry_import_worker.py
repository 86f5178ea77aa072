"""An archive import through the API runs on a real Celery worker (real Redis), never in the request, and
the features of the new references are then computed on the worker too."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User

from attribution.images import sha256_of
from tests.fixtures import WorkerProcess, api_client, wait_for
from webapp.registry.models import ImportJob, ReferenceImage


@pytest.mark.worker
def test_an_archive_import_runs_on_the_worker_and_its_features_follow(
    staff: User,
    synth_dir: Path,
    worker: WorkerProcess,
    engine,  # type: ignore[no-untyped-def]
) -> None:
    backbone, cache = engine
    paths = {name: sorted((synth_dir / name).glob("*.png"))[-2:] for name in ("real", "bilinear-s2")}
    for class_paths in paths.values():  # whatever an earlier run cached, the worker must compute these
        for path in class_paths:
            for block in settings.ATTRIBUTION_BLOCKS:
                cache.path(sha256_of(path), backbone.identity, block).unlink(missing_ok=True)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, class_paths in paths.items():
            for path in class_paths:
                archive.write(path, f"refs/{name}/{path.name}")
    buffer.name = "refs.zip"
    buffer.seek(0)
    response = api_client(staff).post(
        "/api/v1/generators/import/", {"archive": buffer, "create_generators": "true"}, format="multipart"
    )
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "queued"
    job_id = response.json()["id"]

    def finished() -> dict | None:
        body = api_client(staff).get(f"/api/v1/generators/import/{job_id}/").json()
        return body if body["status"] in ("done", "failed") else None

    body = wait_for(finished, timeout=120, message="the import job finished on the worker")
    assert body["status"] == "done", body["error"]
    assert {name: c["added"] for name, c in body["summary"]["classes"].items()} == {"real": 2, "bilinear-s2": 2}
    assert ImportJob.objects.get(pk=job_id).processed == 4
    shas = list(ReferenceImage.objects.values_list("sha256", flat=True))
    assert len(shas) == 4
    wait_for(
        lambda: all(
            cache.get(sha, backbone.identity, b) is not None for sha in shas for b in settings.ATTRIBUTION_BLOCKS
        ),
        timeout=120,
        message="features of the imported references computed on the worker",
    )
