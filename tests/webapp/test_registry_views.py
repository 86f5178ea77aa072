"""The registry's pages: members read, registry admins get the buttons and the forms that write."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image

from tests.fixtures_registry import head_version_copy
from webapp.registry import services
from webapp.registry.models import Generator, HeadVersion, TrainingJob
from webapp.submissions.models import Submission
from webapp.submissions.services import verdict_store


def browser(user: User | None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def png_upload(name: str, color: tuple[int, int, int]) -> SimpleUploadedFile:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 32), color).save(buffer, "PNG")
    return SimpleUploadedFile(name, buffer.getvalue(), content_type="image/png")


@pytest.fixture
def sdxl(staff: User) -> Generator:
    return services.generator_create(actor=staff, name="SDXL", slug="sdxl", family="diffusion")


def test_it_shows_members_the_registry_without_admin_buttons(bob: User, staff: User, sdxl: Generator) -> None:
    member_page = browser(bob).get("/registry/")
    assert member_page.status_code == 200
    assert b"SDXL" in member_page.content and b"Real photograph" in member_page.content
    assert b"Add a generator" not in member_page.content
    assert b"Add a generator" in browser(staff).get("/registry/").content
    detail = browser(bob).get("/registry/generators/sdxl/")
    assert detail.status_code == 200 and b"Add reference images" not in detail.content
    assert b"Add reference images" in browser(staff).get("/registry/generators/sdxl/").content
    assert browser(None).get("/registry/").status_code == 302  # to the login page


def test_it_refuses_every_registry_write_to_members(bob: User, alice: User, sdxl: Generator) -> None:
    for user in (alice, bob):
        client = browser(user)
        responses = [
            client.get("/registry/generators/new/"),
            client.post("/registry/generators/new/", {"name": "X", "slug": "x", "family": "gan"}),
            client.post("/registry/generators/sdxl/edit/", {"name": "Y", "slug": "sdxl", "family": "gan"}),
            client.post("/registry/generators/sdxl/delete/"),
            client.post("/registry/generators/sdxl/references/", {"images": [png_upload("a.png", (1, 2, 3))]}),
            client.post("/registry/heads/train/"),
            client.post("/registry/heads/1/activate/"),
            client.post("/registry/training-jobs/1/cancel/"),
        ]
        assert [r.status_code for r in responses] == [403] * len(responses), user
    assert list(Generator.objects.values_list("slug", flat=True)) == ["real", "sdxl"]
    assert not sdxl.references.exists()


def test_it_lets_an_admin_add_and_edit_a_generator(staff: User) -> None:
    client = browser(staff)
    created = client.post(
        "/registry/generators/new/",
        {
            "name": "Flux",
            "slug": "flux",
            "family": "diffusion",
            "description": "",
            "release": "1.1",
            "is_active": "on",
        },
    )
    assert created.status_code == 302 and created["Location"] == "/registry/generators/flux/"
    edited = client.post(
        "/registry/generators/flux/edit/",
        {"name": "FLUX.1", "slug": "flux", "family": "diffusion", "description": "dev", "release": "1.1"},
    )
    assert edited.status_code == 302
    flux = Generator.objects.get(slug="flux")
    assert (flux.name, flux.description, flux.is_active) == ("FLUX.1", "dev", False)
    duplicate = client.post("/registry/generators/new/", {"name": "Other", "slug": "flux", "family": "gan"})
    assert duplicate.status_code == 200 and b"already exists" in duplicate.content
    # The built-in class keeps its name whatever the form sends.
    client.post("/registry/generators/real/edit/", {"name": "Photos", "slug": "photos", "family": "gan"})
    assert Generator.objects.get(builtin=True).slug == "real"


def test_it_uploads_many_reference_images_at_once_with_a_result_per_file(staff: User, sdxl: Generator) -> None:
    files = [png_upload(f"sdxl-{i}.png", (i * 40, 10, 200)) for i in range(3)]
    files.append(SimpleUploadedFile("broken.png", b"\x89PNG\r\n\x1a\n truncated", content_type="image/png"))
    files.append(png_upload("copy.png", (0, 10, 200)))  # the same pixels as sdxl-0.png
    response = browser(staff).post("/registry/generators/sdxl/references/", {"images": files})
    assert response.status_code == 200
    page = response.content.decode()
    assert "3 reference images added, 1 already there, 1 refused." in page
    assert "broken.png" in page and "Refused:" in page and "Already in the registry" in page
    assert sdxl.references.count() == 3
    reference = sdxl.references.first()
    assert reference is not None and f'src="/media/{reference.image.name}"' in page
    # Thumbnails come through the protected media view: members see them, strangers do not.
    assert browser(staff).get(f"/media/{reference.image.name}").status_code == 200
    assert browser(None).get(f"/media/{reference.image.name}").status_code == 302
    empty = browser(staff).post("/registry/generators/sdxl/references/", {})
    assert empty.status_code == 400 and b"This field is required" in empty.content


def test_it_shows_heads_with_compare_and_a_head_page_with_its_confusion_matrix(
    active_head: HeadVersion, bob: User, staff: User
) -> None:
    candidate = head_version_copy(active_head, version=2)
    heads_page = browser(staff).get("/registry/heads/").content.decode()
    assert 'data-testid="compare"' in heads_page and "Active (v1)" in heads_page and "Candidate (v2)" in heads_page
    assert (
        f"{active_head.metrics['accuracy']:.3f}" in heads_page and f"{candidate.metrics['accuracy']:.3f}" in heads_page
    )
    assert "Activate v2" in heads_page and "Train a new head" in heads_page
    member_page = browser(bob).get("/registry/heads/").content.decode()
    assert "Activate v2" not in member_page and "Train a new head" not in member_page
    detail = browser(bob).get("/registry/heads/2/").content.decode()
    assert 'data-testid="confusion"' in detail and 'style="background:' in detail  # shaded by share
    for label in candidate.classes:
        assert f'<th scope="row">{label}</th>' in detail
    assert candidate.manifest[0]["sha256"] in detail and "not pretrained" in detail
    activated = browser(staff).post("/registry/heads/2/activate/")
    assert activated.status_code == 302
    assert "Roll back to v1" in browser(staff).get("/registry/heads/").content.decode()


def test_it_starts_training_from_the_button_and_shows_the_job_page(
    registry_references: dict[str, int], staff: User, bob: User
) -> None:
    response = browser(staff).post("/registry/heads/train/")
    job = TrainingJob.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/registry/training-jobs/{job.pk}/"
    page = browser(staff).get(response["Location"]).content.decode()
    assert f'data-status-url="/api/v1/training-jobs/{job.pk}/"' in page and 'role="progressbar"' in page
    assert "Cancel training" in page and "setTimeout(poll, 1000)" in page
    assert "Cancel training" not in browser(bob).get(response["Location"]).content.decode()
    # The page polls the API with the browser's session.
    polled = browser(bob).get(f"/api/v1/training-jobs/{job.pk}/", HTTP_ACCEPT="application/json")
    assert polled.status_code == 200 and polled.json()["status"] == "queued"
    again = browser(staff).post("/registry/heads/train/", follow=True)
    assert f"Training job {job.pk} is already queued" in again.content.decode()
    cancelled = browser(staff).post(f"/registry/training-jobs/{job.pk}/cancel/", follow=True)
    assert "Cancelled." in cancelled.content.decode()
    job.refresh_from_db()
    assert job.status == TrainingJob.Status.CANCELLED


def test_it_lets_a_team_admin_reattribute_and_see_changes(alice: User, bob: User, charlie: User) -> None:
    assert browser(bob).get("/submissions/reattribute/").status_code == 403
    page = browser(alice).get("/submissions/reattribute/")
    assert page.status_code == 200 and b"No head is active" in page.content
    refused = browser(alice).post("/submissions/reattribute/", {"since": "2020-01-01"})
    assert refused.status_code == 200 and b"No head is active" in refused.content
    assert b"No decision changed." in browser(bob).get("/submissions/reattribute/changes/").content

    team = alice.membership.team
    old, new = (
        HeadVersion.objects.create(
            version=v, status=status, artifact=f"heads/v{v}.npz", head_kind="linear",
            classes=["real", "sdxl"], blocks=[8], backbone="ViT-S-16/random-seed0", pretrained=False,
            threshold=0.5,
        )
        for v, status in ((1, "retired"), (2, "active"))
    )  # fmt: skip
    submission = Submission.objects.create(
        team=team, submitted_by=alice, image=ContentFile(b"x", name="a.png"), original_name="suspect.png",
        sha256="a" * 64, size_bytes=1, image_format="PNG", width=1, height=1, status="done",
    )  # fmt: skip
    for head, label, decision in ((old, "real", "real"), (new, "sdxl", "known_generator")):
        verdict_store(
            submission=submission, head_version=head, label=label, decision=decision, score=0.9,
            threshold=0.5, probabilities={label: 0.9}, backbone=head.backbone, pretrained=False,
            elapsed_ms=1.0,
        )[0]  # fmt: skip
    changed = browser(bob).get("/submissions/reattribute/changes/").content.decode()
    assert "suspect.png" in changed and "head v1" in changed and "head v2" in changed
    assert "Real photograph" in changed and "Known generator" in changed
    assert "suspect.png" not in browser(charlie).get("/submissions/reattribute/changes/").content.decode()
    queued = browser(alice).post("/submissions/reattribute/", {"since": "2020-01-01"})
    assert queued.status_code == 302 and queued["Location"] == "/submissions/reattribute/changes/?since=2020-01-01"
    submission.refresh_from_db()
    assert submission.status == "done"  # the active head (v2) already judged it: nothing to re-run
