"""The case report: rendered for real (WeasyPrint), read back with poppler's pdftotext and pdfinfo."""

from __future__ import annotations

import base64
import hashlib
import html
import io
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import reverse
from PIL import Image

from tests.fixtures import api_client
from webapp.audit.models import AuditEvent
from webapp.audit.services import audit_record
from webapp.cases.models import Case
from webapp.registry.models import Generator, HeadVersion, ReferenceImage
from webapp.reports.services import case_report_html, case_report_pdf, html_to_pdf
from webapp.submissions.models import Submission, Verdict
from webapp.submissions.services import verdict_store
from webapp.teams.models import Team

NOT_PRETRAINED = "NOT PRETRAINED — demonstration, not evidence"


def png(color: tuple[int, int, int], size: tuple[int, int] = (24, 16)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def stored_png(folder: str, color: tuple[int, int, int]) -> tuple[str, str]:
    data = png(color)
    name = default_storage.save(f"{folder}/{hashlib.sha256(data).hexdigest()[:12]}.png", ContentFile(data))
    return name, hashlib.sha256(data).hexdigest()


def submission_create(case: Case, user: User, number: int, **fields: object) -> Submission:
    name, sha256 = stored_png("submissions/test", (number * 7 % 256, 40, 200 - number))
    values: dict[str, object] = {
        "team": case.team, "case": case, "submitted_by": user, "image": name,
        "original_name": f"image-{number}.png", "sha256": sha256, "size_bytes": default_storage.size(name),
        "image_format": "PNG", "width": 24, "height": 16, "status": Submission.Status.DONE,
    }
    return Submission.objects.create(**{**values, **fields})


def pdf_text(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf)
    text = subprocess.run(["pdftotext", "-enc", "UTF-8", str(path), "-"], capture_output=True, check=True)
    return " ".join(text.stdout.decode("utf-8").split())


def pdf_pages(pdf: bytes, tmp_path: Path) -> int:
    path = tmp_path / "pages.pdf"
    path.write_bytes(pdf)
    info = subprocess.run(["pdfinfo", str(path)], capture_output=True, check=True, text=True).stdout
    match = re.search(r"^Pages:\s+(\d+)", info, re.MULTILINE)
    assert match, info
    return int(match.group(1))


@dataclass
class CaseWorld:
    case: Case
    known: Submission
    unknown: Submission
    failed: Submission
    duplicate: Submission
    head: HeadVersion
    references: list[ReferenceImage]


@pytest.fixture
def media(settings: object, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"  # type: ignore[attr-defined]
    return tmp_path / "media"


@pytest.fixture
def head(db: None) -> HeadVersion:
    return HeadVersion.objects.create(
        version=7, status=HeadVersion.Status.ACTIVE, artifact="heads/v7.head", head_kind="linear",
        classes=["real", "sd14", "progan"], blocks=[8], backbone="ViT-S-16/random-seed0", pretrained=False,
        threshold=0.63,
    )


@pytest.fixture
def world(media: Path, team_a: Team, alice: User, bob: User, head: HeadVersion) -> CaseWorld:
    sd14 = Generator.objects.create(name="Stable Diffusion 1.4", slug="sd14",
                                    family=Generator.Family.DIFFUSION)
    Generator.objects.create(name="ProGAN", slug="progan", family=Generator.Family.GAN)
    references = []
    for i in range(2):
        name, sha256 = stored_png("references/test", (250, 10 * i, 10))
        references.append(ReferenceImage.objects.create(
            generator=sd14, image=name, original_name=f"ref-{i}.png", sha256=sha256, size_bytes=100,
            image_format="PNG", width=24, height=16, uploaded_by=alice,
        ))
    case = Case.objects.create(team=team_a, title="Leaked campaign photos", reference="INC-2024-017",
                               notes="Received from the newsroom.", created_by=alice)
    known = submission_create(case, bob, 1)
    unknown = submission_create(case, alice, 2)
    failed = submission_create(case, bob, 3, status=Submission.Status.FAILED, error="The file is truncated.")
    default_storage.delete(failed.image.name)
    # The team uploads the first image again: the earlier analysis stands for it.
    duplicate = submission_create(case, alice, 4, sha256=known.sha256, duplicate_of=known,
                                  status=Submission.Status.QUEUED)
    verdict_store(
        submission=known, head_version=head, label="sd14", decision=Verdict.Decision.KNOWN_GENERATOR,
        score=0.97, threshold=0.63, probabilities={"sd14": 0.97, "real": 0.02, "progan": 0.01},
        nearest_references=[{"sha256": r.sha256, "label": "sd14", "similarity": 0.91 - i / 10}
                            for i, r in enumerate(references)],
        backbone="ViT-B-16/laion2b_s34b_b88k", pretrained=True, elapsed_ms=12.0,
    )[0]
    verdict_store(
        submission=unknown, head_version=head, label="progan", decision=Verdict.Decision.UNKNOWN_GENERATOR,
        score=0.41, threshold=0.63, probabilities={"progan": 0.41, "real": 0.35, "sd14": 0.24},
        nearest_references=[], backbone="ViT-S-16/random-seed0", pretrained=False, elapsed_ms=15.0,
    )[0]
    audit_record(actor=bob, action="upload", team=team_a, target=known, detail={"via": "browser"})
    audit_record(actor=alice, action="view", team=team_a, target=case)
    # Another case of the same team: its events stay out of this report.
    other = Case.objects.create(team=team_a, title="Another case", created_by=alice)
    audit_record(actor=bob, action="upload", team=team_a, target=submission_create(other, bob, 9),
                 detail={"marker": "other-case-event"})
    return CaseWorld(case, known, unknown, failed, duplicate, head, references)


def expected_facts(world: CaseWorld) -> list[str]:
    return [
        "Leaked campaign photos", "INC-2024-017", "Received from the newsroom.", "Team A",
        world.known.sha256, world.unknown.sha256, world.failed.sha256,
        f"{world.known.created_at:%Y-%m-%d %H:%M:%S} UTC",
        "Generated by Stable Diffusion 1.4 — high confidence (97%; runner-up: Real photograph, 2%)",
        "Unrecognised source: matches neither real photographs nor a registered generator — high confidence"
        " (score 0.410 under the threshold 0.630; closest known class: ProGAN, 41%)",
        "threshold 0.630", "v7", "ViT-B-16/laion2b_s34b_b88k", "ViT-S-16/random-seed0", NOT_PRETRAINED,
        "The file is truncated.", "similarity 0.910", "similarity 0.810",
        f"submission #{world.known.pk} image-1.png", "upload", "view", "platform version 0.1.0",
        "image-1.png", "image-2.png", "image-3.png", "bob", "alice",
    ]


def test_it_renders_a_pdf_with_every_fact(world: CaseWorld, tmp_path: Path) -> None:
    pdf = case_report_pdf(case=world.case)

    assert pdf.startswith(b"%PDF-")
    text = pdf_text(pdf, tmp_path)
    for fact in expected_facts(world):
        assert fact in text, fact
    # The banner at the top and the warning on the one verdict made without pretrained weights.
    assert text.count(NOT_PRETRAINED) == 2
    assert "other-case-event" not in text
    assert re.search(r"Page 1 of \d+", text)


def test_it_renders_the_same_facts_as_a_standalone_html_document(world: CaseWorld) -> None:
    document = case_report_html(case=world.case)

    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", document)).split())
    for fact in expected_facts(world):
        assert fact in text, fact
    assert "other-case-event" not in text
    assert "Image not available" in text  # the failed upload's file is gone
    assert f"The team already submitted this image (submission #{world.known.pk}" in text
    assert text.count("Generated by Stable Diffusion 1.4 — high confidence (97%") == 2  # the duplicate too
    sources = re.findall(r'<img[^>]*\ssrc="([^"]*)"', document)
    # three readable submissions, and the two reference images of each of the two sd14 verdicts
    assert len(sources) == 3 + 2 * 2
    for source in sources:
        assert source.startswith("data:image/jpeg;base64,")
        Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1]))).verify()
    assert "/media/" not in document and "http" not in document and "{%" not in document


def test_it_adds_pages_as_submissions_grow(media: Path, team_a: Team, bob: User, head: HeadVersion,
                                           tmp_path: Path) -> None:
    pages = []
    for count in (1, 12):
        case = Case.objects.create(team=team_a, title=f"{count} images", created_by=bob)
        for number in range(count):
            submission = submission_create(case, bob, number)
            verdict_store(
                submission=submission, head_version=head, label="real", decision=Verdict.Decision.REAL,
                score=0.9, threshold=0.63, probabilities={"real": 0.9, "sd14": 0.1}, backbone="b",
                pretrained=False, elapsed_ms=1.0,
            )[0]
        pages.append(pdf_pages(case_report_pdf(case=case), tmp_path))

    assert pages[0] >= 1
    assert pages[1] > pages[0] + 2


def test_it_fetches_nothing_from_outside_the_document(tmp_path: Path) -> None:
    local = tmp_path / "secret.png"
    local.write_bytes(png((0, 0, 0)))
    inline = "data:image/png;base64," + base64.b64encode(png((255, 0, 0))).decode()
    pdf = html_to_pdf(f'<p>x</p><img src="{inline}"><img src="{local.as_uri()}">'
                      '<img src="http://127.0.0.1:9/x.png">')

    (tmp_path / "images.pdf").write_bytes(pdf)
    listing = subprocess.run(["pdfimages", "-list", str(tmp_path / "images.pdf")], capture_output=True,
                             check=True, text=True).stdout
    assert len(listing.strip().splitlines()[2:]) == 1  # the data: image only


def test_it_serves_the_pdf_as_an_audited_download(world: CaseWorld, bob: User, tmp_path: Path) -> None:
    client = Client()
    client.force_login(bob)

    response = client.get(reverse("reports:case_pdf", args=[world.case.pk]))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == f'attachment; filename="case-{world.case.pk}-report.pdf"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "Leaked campaign photos" in pdf_text(response.content, tmp_path)
    export = AuditEvent.objects.get(action="export")
    assert (export.actor, export.team, export.object_type, export.object_id) == (
        bob, world.case.team, "case", str(world.case.pk))
    assert export.detail["report"] == "pdf"
    # The next report lists the export in its audit trail.
    assert "export" in pdf_text(case_report_pdf(case=world.case), tmp_path)


def test_it_serves_the_html_report(world: CaseWorld, alice: User) -> None:
    client = Client()
    client.force_login(alice)

    response = client.get(reverse("reports:case_html", args=[world.case.pk]))

    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'none'" in response["Content-Security-Policy"]
    assert world.known.sha256 in response.content.decode()
    assert AuditEvent.objects.get(action="export").detail["report"] == "html"


def test_it_serves_the_pdf_through_the_api(world: CaseWorld, bob: User, tmp_path: Path) -> None:
    url = f"/api/v1/cases/{world.case.pk}/report.pdf"

    response = api_client(bob).get(url, HTTP_ACCEPT="application/pdf")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert world.unknown.sha256 in pdf_text(response.content, tmp_path)
    assert AuditEvent.objects.filter(action="export", actor=bob).count() == 1
    assert api_client().get(url).status_code == 401


def test_it_hides_another_teams_report(world: CaseWorld, charlie: User) -> None:
    client = Client()
    client.force_login(charlie)
    for name in ("reports:case_html", "reports:case_pdf"):
        assert client.get(reverse(name, args=[world.case.pk])).status_code == 404
    url = f"/api/v1/cases/{world.case.pk}/report.pdf"
    response = api_client(charlie).get(url, HTTP_ACCEPT="application/pdf")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert not AuditEvent.objects.filter(action="export").exists()


def test_it_sends_anonymous_users_to_log_in(world: CaseWorld) -> None:
    for name in ("reports:case_html", "reports:case_pdf"):
        response = Client().get(reverse(name, args=[world.case.pk]))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
