"""Bulk reference import on the real database: `manage.py registry_import` (ImageFolder and GenImage layouts)
and the archive import behind `POST /api/v1/generators/import/`."""

from __future__ import annotations

import io
import tarfile
import zipfile
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from django.test import override_settings
from PIL import Image

from tests.fixtures import api_client
from webapp.registry import services
from webapp.registry.models import Generator, ImportJob, ReferenceImage
from webapp.registry.services import imports


def image_bytes(seed: int, fmt: str = "PNG", size: tuple[int, int] = (24, 20)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def folder(db: None, tmp_path: Path) -> Path:
    """An ImageFolder: real (3 images, PNG/JPEG/WEBP), ganx (2 + a nested one + a duplicate + a fake PNG)."""
    root = tmp_path / "refs"
    write(root / "real" / "a.png", image_bytes(1))
    write(root / "real" / "b.jpg", image_bytes(2, "JPEG"))
    write(root / "real" / "c.webp", image_bytes(3, "WEBP"))
    write(root / "ganx" / "1.png", image_bytes(10))
    write(root / "ganx" / "2.bmp", image_bytes(11, "BMP"))
    write(root / "ganx" / "deep" / "3.png", image_bytes(12))
    write(root / "ganx" / "copy-of-1.png", image_bytes(10))
    write(root / "ganx" / "notes.png", b"not an image at all")
    write(root / "ganx" / ".hidden.png", image_bytes(13))
    return root


def run_import(*args: str) -> str:
    out = io.StringIO()
    call_command("registry_import", *args, "--no-progress", "--no-features", stdout=out)
    return out.getvalue()


def test_it_imports_a_folder_once_and_a_second_run_adds_nothing(folder: Path) -> None:
    first = run_import(str(folder), "--create-generators")
    assert ReferenceImage.objects.filter(generator__slug="real").count() == 3
    ganx = Generator.objects.get(slug="ganx")
    assert ganx.references.count() == 3  # the copy is a duplicate, the fake PNG refused, the hidden file left out
    assert {r.image_format for r in ReferenceImage.objects.all()} == {"PNG", "JPEG", "WEBP", "BMP"}
    assert "refused 1: " in first and "notes.png" in first
    lines = {line.split()[0]: line.split()[1:] for line in first.splitlines() if line.split()}
    assert lines["real"][:4] == ["real", "3", "0", "0"]
    assert lines["ganx"][:4] == ["ganx", "3", "1", "1"]  # added, present (the copy), refused

    second = run_import(str(folder), "--create-generators")
    assert ReferenceImage.objects.count() == 6
    lines = {line.split()[0]: line.split()[1:] for line in second.splitlines() if line.split()}
    assert lines["total"][:2] == ["0", "7"]  # added 0, present 7 (the copy too)


def test_it_refuses_a_missing_generator_unless_asked_to_create_it(folder: Path) -> None:
    out = run_import(str(folder))
    assert not Generator.objects.filter(slug="ganx").exists()
    assert "no generator with slug 'ganx' (use --create-generators to make it)" in out
    assert ReferenceImage.objects.filter(generator__slug="real").count() == 3


def test_it_caps_each_class_and_goes_on_where_a_capped_or_interrupted_run_stopped(folder: Path) -> None:
    run_import(str(folder), "--create-generators", "--per-class", "2")
    assert ReferenceImage.objects.filter(generator__slug="real").count() == 2
    assert ReferenceImage.objects.filter(generator__slug="ganx").count() == 2
    out = run_import(str(folder), "--create-generators")
    assert ReferenceImage.objects.count() == 6
    assert [line.split()[1:4] for line in out.splitlines() if line.startswith("real")] == [["real", "1", "2"]]


def test_a_dry_run_checks_everything_and_writes_nothing(folder: Path) -> None:
    out = run_import(str(folder), "--create-generators", "--dry-run")
    assert ReferenceImage.objects.count() == 0 and not Generator.objects.filter(slug="ganx").exists()
    assert "would add" in out and "notes.png" in out
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.split()}
    assert lines["total"][:3] == ["6", "1", "1"]


def test_it_reads_the_genimage_layout_with_nature_as_real(db: None, tmp_path: Path) -> None:
    root = tmp_path / "GenImage"
    write(root / "BigGAN" / "imagenet_ai_0419_biggan" / "train" / "ai" / "x.png", image_bytes(20))
    write(root / "BigGAN" / "imagenet_ai_0419_biggan" / "train" / "nature" / "n.JPEG", image_bytes(21, "JPEG"))
    write(root / "BigGAN" / "imagenet_ai_0419_biggan" / "val" / "ai" / "v.png", image_bytes(22))
    write(root / "wukong" / "train" / "ai" / "y.png", image_bytes(23))
    write(root / "wukong" / "train" / "nature" / "m.JPEG", image_bytes(24, "JPEG"))
    out = run_import(str(root), "--layout", "genimage", "--create-generators")
    assert sorted(Generator.objects.exclude(slug="real").values_list("slug", flat=True)) == ["biggan", "wukong"]
    assert Generator.objects.get(slug="biggan").name == "BigGAN"
    assert ReferenceImage.objects.filter(generator__slug="real").count() == 2
    assert ReferenceImage.objects.filter(generator__slug="biggan").count() == 1  # train only: val is the test set
    assert "total" in out
    assert run_import(str(root), "--layout", "genimage", "--phase", "all").count("\n") > 0
    assert ReferenceImage.objects.filter(generator__slug="biggan").count() == 2


def test_a_bad_directory_is_a_command_error(db: None, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="does not exist"):
        run_import(str(tmp_path / "nowhere"))
    (tmp_path / "flat").mkdir()
    with pytest.raises(CommandError, match="not in the GenImage layout"):
        run_import(str(tmp_path / "flat"), "--layout", "genimage")


def test_it_queues_one_features_task_per_chunk_of_new_references(
    folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks,  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.setattr(imports, "CHUNK_SIZE", 2)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.registry_import_folder(root=folder, actor=None, create_generators=True)
    sent = [cb for cb in callbacks if isinstance(cb, partial) and cb.args[0] == imports.FEATURES_TASK]
    ids = [pk for cb in sent for args in cb.args[1] for pk in args[0]]
    assert sorted(ids) == sorted(ReferenceImage.objects.values_list("pk", flat=True))
    assert [len(cb.args[1][0][0]) for cb in sent] == [2, 2, 2]


def test_the_demo_seeding_is_the_import_with_the_same_results(staff: User, tmp_path: Path) -> None:
    root = tmp_path / "synth"
    for slug, base in (("real", 0), ("gana", 100)):
        for i in range(3):
            write(root / slug / f"{i}.png", image_bytes(base + i))
    assert services.registry_seed_from_folder(source_dir=root, classes=["real", "gana"], per_class=2, actor=staff) == {
        "real": 2,
        "gana": 2,
    }
    assert Generator.objects.get(slug="gana").family == Generator.Family.GAN
    assert services.registry_seed_from_folder(source_dir=root, classes=["real", "gana"], per_class=2, actor=staff) == {
        "real": 0,
        "gana": 0,
    }
    write(root / "empty" / "readme.txt", b"no images here")
    with pytest.raises(services.RegistryError, match="readme.txt"):
        services.registry_seed_from_folder(source_dir=root, classes=["empty"], per_class=2, actor=staff)


# --- archives through the API -----------------------------------------------------------------------


def zip_of(entries: dict[str, bytes]) -> ContentFile:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return ContentFile(buffer.getvalue(), name="refs.zip")


def test_the_api_stores_the_archive_queues_a_job_and_the_job_imports_it(
    staff: User,
    alice: User,
    django_capture_on_commit_callbacks,  # type: ignore[no-untyped-def]
) -> None:
    archive = zip_of(
        {
            "data/real/a.png": image_bytes(1),
            "data/real/b.jpg": image_bytes(2, "JPEG"),
            "data/gany/c.png": image_bytes(3),
            "data/gany/not-an-image.png": b"nope",
            "data/readme.txt": b"top-level file",
        }
    )
    assert api_client(alice).post("/api/v1/generators/import/", {"archive": archive}).status_code == 403
    archive.seek(0)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api_client(staff).post(
            "/api/v1/generators/import/", {"archive": archive, "create_generators": "true"}, format="multipart"
        )
    assert response.status_code == 202, response.content
    job = ImportJob.objects.get(pk=response.json()["id"])
    assert job.status == "queued" and default_storage.exists(job.archive.name)
    assert [cb.args[:2] for cb in callbacks if isinstance(cb, partial)] == [
        ("workers.tasks.registry_import", [[job.pk]])
    ]
    assert ReferenceImage.objects.count() == 0  # nothing in the request itself

    services.import_job_run(job_id=job.pk)
    body = api_client(staff).get(f"/api/v1/generators/import/{job.pk}/").json()
    assert (body["status"], body["progress"], body["total"]) == ("done", 1.0, 5)
    assert body["summary"]["classes"]["real"]["added"] == 2
    assert body["summary"]["classes"]["gany"]["added"] == 1
    assert body["summary"]["classes"]["gany"]["refused"] == 1
    assert body["summary"]["skipped_entries"] == {"not inside a class folder": 1}
    assert services.import_job_run(job_id=job.pk).status == "done"  # a second delivery does nothing
    assert ReferenceImage.objects.count() == 3


def test_the_api_refuses_what_is_not_an_archive(staff: User) -> None:
    response = api_client(staff).post(
        "/api/v1/generators/import/", {"archive": ContentFile(image_bytes(1), name="x.zip")}, format="multipart"
    )
    assert response.status_code == 400 and "not a zip or tar" in response.json()["archive"][0]


def make_job(staff: User, content: ContentFile) -> ImportJob:
    return services.import_job_create(archive=content, requested_by=staff, create_generators=True)


def test_a_tar_with_traversal_links_and_devices_imports_only_its_plain_files(staff: User) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:

        def add(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.size, info.linkname = kind, len(data), link
            archive.addfile(info, io.BytesIO(data) if data else None)

        add("real/ok.png", image_bytes(5))
        add("../real/escape.png", image_bytes(6))
        add("/etc/real/abs.png", image_bytes(7))
        add("real/link.png", kind=tarfile.SYMTYPE, link="/etc/passwd")
        add("real/hard.png", kind=tarfile.LNKTYPE, link="real/ok.png")
        add("real/fifo", kind=tarfile.FIFOTYPE)
    job = make_job(staff, ContentFile(buffer.getvalue(), name="refs.tar.gz"))
    job = services.import_job_run(job_id=job.pk)
    assert job.status == "done", job.error
    assert ReferenceImage.objects.count() == 1
    skipped = job.summary["skipped_entries"]
    assert skipped["unsafe path (absolute, .. or backslash)"] == 2
    assert skipped["not a regular file (link or device)"] == 3


def test_a_zip_bomb_is_stopped_by_the_caps(staff: User) -> None:
    bomb = zip_of({"real/big.png": b"\0" * 3_000_000})  # compresses to a few kB
    with override_settings(IMPORT_MAX_TOTAL_BYTES=1_000_000):
        job = services.import_job_run(job_id=make_job(staff, bomb).pk)
    assert job.status == "failed" and "uncompressed" in job.error
    many = zip_of({f"real/{i}.png": b"x" for i in range(30)})
    with override_settings(IMPORT_MAX_ENTRIES=20):
        job = services.import_job_run(job_id=make_job(staff, many).pk)
    assert job.status == "failed" and "more than 20" in job.error
    big = zip_of({"real/big.png": b"\0" * 300_000})
    with override_settings(UPLOAD_MAX_BYTES=100_000):
        job = services.import_job_run(job_id=make_job(staff, big).pk)
    assert job.status == "done" and "over the limit" in next(iter(job.summary["classes"]["real"]["reasons"]))
    assert ReferenceImage.objects.count() == 0


# --- the whole path on a GenImage-shaped tree -------------------------------------------------------


def totals(summary: str) -> list[str]:
    return next(line.split()[1:4] for line in summary.splitlines() if line.startswith("total"))


SPLIT1_NAMES = {  # the synthetic benchmark's generators under split 1's folder names: seed 1 known, seed 2 unknown
    "tconv-s1": "wukong",
    "nearest-s1": "Midjourney",
    "bilinear-s1": "VQDM",
    "pixelshuffle-s1": "stable_diffusion_v_1_4",
    "tconv-s2": "stable_diffusion_v_1_5",
    "nearest-s2": "BigGAN",
    "bilinear-s2": "ADM",
    "pixelshuffle-s2": "glide",
}


@override_settings(TRAINING_MIN_REFERENCES=3)
def test_smoke_genimage_split_1_import_train_evaluate_and_perturb(
    db: None,
    tmp_path: Path,
    engine,  # type: ignore[no-untyped-def]
) -> None:
    """Without GenImage here: a tiny tree in its layout from the synthetic benchmark, then the whole path:
    import (the command), train (the registry's service), evaluate split 1 with perturbations (the CLI)."""
    import json

    from django.conf import settings

    from attribution.__main__ import main
    from attribution.genimage import genimage_split, write_genimage_tree
    from attribution.synth import make_benchmark

    backbone, cache = engine
    make_benchmark(tmp_path / "synth", seed=0, per_class=6, size=64)
    known = list(genimage_split(1).known)
    write_genimage_tree(tmp_path / "synth", tmp_path / "GenImage", SPLIT1_NAMES, train_fraction=0.5, real_to=known[1:])

    tree, classes = str(tmp_path / "GenImage"), ",".join(known)
    first = run_import(tree, "--layout", "genimage", "--create-generators", "--classes", classes)
    slugs = ["real", "wukong", "midjourney", "vqdm", "stable_diffusion_v_1_4"]
    assert sorted(Generator.objects.values_list("slug", flat=True)) == sorted(slugs)
    assert {slug: ReferenceImage.objects.filter(generator__slug=slug).count() for slug in slugs} == dict.fromkeys(
        slugs, 3
    )
    assert totals(first) == ["15", "0", "0"]  # added, present, refused
    assert totals(run_import(tree, "--layout", "genimage", "--classes", classes)) == ["0", "15", "0"]

    head = services.head_train_now(actor=None, backbone=backbone, cache=cache)
    assert sorted(head.classes) == sorted(slugs)

    report_path = tmp_path / "report.json"
    args = ["evaluate", str(tmp_path / "GenImage"), "--layout", "genimage", "--split", "1", "--blocks", "8"]
    args += [
        "--perturb",
        "jpeg:75",
        "blur:1",
        "--cache-dir",
        str(settings.FEATURE_CACHE_DIR),
        "--out",
        str(report_path),
    ]
    assert main([*args, "--no-progress"]) == 0
    report = json.loads(report_path.read_text())
    assert report["split"]["known"] == known and report["split"]["unknown"] == list(genimage_split(1).unknown)
    assert report["protocol"]["counts"]["train"] == dict.fromkeys(known, 3)
    assert report["protocol"]["counts"]["unknown"] == dict.fromkeys(genimage_split(1).unknown, 3)
    assert "doubles as" in report["protocol"]["test"]
    for name, level in (("jpeg", "75"), ("blur", "1")):
        figures = report["robustness"][name][level]
        assert all(0.0 <= figures[key] <= 1.0 for key in ("accuracy", "auroc", "oscr"))
    assert report["robustness_clean"] == {k: report["blocks"]["8"][k] for k in ("accuracy", "auroc", "oscr")}
    assert (tmp_path / "report-robustness.png").stat().st_size > 0


def test_the_sweep_resends_a_lost_job_and_fails_one_whose_worker_died(staff: User) -> None:
    from datetime import timedelta

    from django.utils import timezone

    lost = make_job(staff, zip_of({"real/a.png": image_bytes(1)}))
    dead = make_job(staff, zip_of({"real/b.png": image_bytes(2)}))
    fresh = make_job(staff, zip_of({"real/c.png": image_bytes(3)}))
    long_ago = timezone.now() - timedelta(hours=7)
    ImportJob.objects.filter(pk=lost.pk).update(created_at=long_ago)
    ImportJob.objects.filter(pk=dead.pk).update(status="running", created_at=long_ago, started_at=long_ago)
    assert services.import_jobs_sweep(queued_after_s=120) == {"resent": [lost.pk], "failed": [dead.pk]}
    dead.refresh_from_db()
    assert dead.status == "failed" and "upload the archive again" in dead.error
    assert ImportJob.objects.get(pk=fresh.pk).status == "queued"
