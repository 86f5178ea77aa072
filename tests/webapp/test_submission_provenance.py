"""Provenance beside the pixels (issue #15, the web part): read at upload through the API, shown with the
verdict's agreement, filtered in the history, carried by the exports and the PDF report; generator aliases."""

from __future__ import annotations

import csv
import io
import json
import struct
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import schemathesis
import urllib3
from django.contrib.auth.models import User
from django.test import Client
from drf_spectacular.generators import SchemaGenerator
from PIL import Image, PngImagePlugin
from pytest_django.fixtures import Settings

from tests.attribution.c2pa_fixtures import SigningChain, generator_manifest, make_chain, sign
from tests.fixtures import api_client
from tests.webapp import head_version_row, uploaded, verdict_row
from webapp.cases.models import Case
from webapp.registry.models import Generator, HeadVersion
from webapp.reports.services import case_report_pdf
from webapp.submissions.models import Submission

LIST = "/api/v1/submissions/"
CLASSES = ("real", "firefly", "sdxl", "sd15")
A1111 = (
    "a lighthouse at dusk, oil painting\n"
    "Negative prompt: blurry\n"
    "Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234, Size: 96x64, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.6.0"
)
CONTRACT = {"claims", "c2pa", "agreement", "reason"}
CLAIM_KEYS = {"source", "says", "generator", "strength", "detail"}
C2PA_KEYS = {"claim_generator", "digital_source_type", "signer", "validation", "codes"}


def picture_bytes(image_format: str = "JPEG", seed: int = 0, **save: Any) -> bytes:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:64, 0:96]
    pixels = np.stack([x * 2, y * 3, (x + y) % 256], axis=-1) + rng.integers(0, 20, (64, 96, 3))
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, image_format, **save)
    return buffer.getvalue()


def start_of_scan(jpeg: bytes) -> int:
    position = 2
    while jpeg[position + 1] != 0xDA:
        (length,) = struct.unpack_from(">H", jpeg, position + 2)
        position += 2 + length
    return position


@pytest.fixture(scope="module")
def chain() -> SigningChain:
    return make_chain(organisation="Adobe Test", signer_name="Firefly Signer")


@pytest.fixture(scope="module")
def signed_jpeg(chain: SigningChain) -> bytes:
    return sign(picture_bytes(quality=90), "image/jpeg", generator_manifest(generator="Adobe Firefly"), chain)


@pytest.fixture
def trusted(chain: SigningChain, settings: Settings, tmp_path: Path) -> None:
    anchors = tmp_path / "anchors.pem"
    anchors.write_text(chain.root_pem)
    settings.C2PA_TRUST_ANCHORS = str(anchors)


@pytest.fixture
def head(db: None) -> HeadVersion:
    Generator.objects.create(name="Firefly Image 3", slug="firefly", family="diffusion", aliases=["Adobe Firefly"])
    Generator.objects.create(name="SDXL", slug="sdxl", family="diffusion", aliases=["sd_xl_base_1.0"])
    Generator.objects.create(name="Stable Diffusion 1.5", slug="sd15", family="diffusion", aliases=["6ce0161689"])
    return head_version_row(classes=CLASSES)


def upload(user: User, name: str, data: bytes, **fields: Any) -> Submission:
    response = api_client(user).post(LIST, {"image": uploaded(name, data), **fields}, format="multipart")
    assert response.status_code == 201, response.content
    return Submission.objects.get(pk=response.json()["id"])


@cache
def detail_operation() -> Any:
    schema = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
    return schema["/api/v1/submissions/{id}/"]["GET"]


def schema_check(url: str, body: bytes) -> None:
    """The answer conforms to the published OpenAPI schema (schemathesis' own response check)."""
    answer = requests.Response()
    answer.status_code, answer._content, answer.url = 200, body, f"http://testserver{url}"
    answer.raw = urllib3.HTTPResponse(headers={"Content-Type": "application/json"}, status=200)
    answer.request = requests.Request("GET", answer.url).prepare()
    detail_operation().validate_response(answer)


def provenance_of(user: User, submission: Submission) -> dict[str, Any]:
    url = f"{LIST}{submission.pk}/"
    response = api_client(user).get(url)
    assert response.status_code == 200, response.content
    schema_check(url, response.content)
    provenance = response.json()["provenance"]
    assert set(provenance) == CONTRACT
    for claim in provenance["claims"]:
        assert set(claim) == CLAIM_KEYS
    assert provenance["c2pa"] is None or set(provenance["c2pa"]) == C2PA_KEYS
    return provenance


def listed(user: User, **filters: str) -> list[int]:
    response = api_client(user).get(LIST, filters)
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def test_a_trusted_signed_generator_image_agrees_with_its_generators_verdict(
    bob: User, head: HeadVersion, signed_jpeg: bytes, trusted: None
) -> None:
    submission = upload(bob, "firefly.jpg", signed_jpeg)

    before = provenance_of(bob, submission)
    assert before["c2pa"] == {
        "claim_generator": "Adobe Firefly 3.1",
        "digital_source_type": "trainedAlgorithmicMedia",
        "signer": {"issuer": "Adobe Test", "common_name": "Firefly Signer"},
        "validation": "valid",
        "codes": before["c2pa"]["codes"],
    }
    assert "signingCredential.trusted" in before["c2pa"]["codes"]
    [claim] = before["claims"]
    assert (claim["source"], claim["says"], claim["generator"], claim["strength"]) == (
        "c2pa", "generated", "Adobe Firefly", "strong"
    )
    assert (before["agreement"], before["reason"]) == ("none", "There is no verdict yet to compare the claims with.")
    assert (submission.provenance_c2pa, submission.provenance_agreement) == ("valid", "none")

    verdict_row(submission, head, label="firefly", decision="known_generator")

    after = provenance_of(bob, submission)
    assert after["agreement"] == "agrees"
    assert after["reason"] == (
        "The trusted C2PA manifest says the image was generated by Adobe Firefly, which is registered as "
        "firefly, the generator the verdict names."
    )
    submission.refresh_from_db()
    assert submission.provenance_agreement == "agrees"
    assert listed(bob, provenance="signed") == listed(bob, provenance="agrees") == [submission.pk]
    assert listed(bob, provenance="conflicts") == []


def test_an_untrusted_signature_that_contradicts_a_real_verdict_is_a_conflict(
    bob: User, head: HeadVersion, signed_jpeg: bytes
) -> None:
    submission = upload(bob, "firefly.jpg", signed_jpeg)  # no trust anchors configured
    plain = upload(bob, "plain.jpg", picture_bytes(seed=3))

    verdict_row(submission, head, label="real", decision="real")
    verdict_row(plain, head, label="real", decision="real")

    provenance = provenance_of(bob, submission)
    assert provenance["c2pa"]["validation"] == "untrusted"
    assert provenance["claims"][0]["strength"] == "medium"
    assert provenance["agreement"] == "conflicts"
    assert provenance["reason"] == (
        "The untrusted C2PA manifest says the image was generated by Adobe Firefly, but the verdict is a real "
        "photograph."
    )
    # The history's filters: only the conflicting one; both signed filters find it, the plain file neither.
    assert listed(bob, provenance="conflicts") == [submission.pk]
    assert listed(bob, provenance="signed") == [submission.pk]
    assert listed(bob, provenance="has_c2pa") == [submission.pk]
    assert set(listed(bob)) == {submission.pk, plain.pk}
    assert api_client(bob).get(LIST, {"provenance": "forged"}).status_code == 400


def test_pixels_changed_after_signing_are_a_hash_mismatch_and_not_signed(
    bob: User, head: HeadVersion, signed_jpeg: bytes, trusted: None
) -> None:
    other = picture_bytes(seed=1, quality=90)
    tampered = signed_jpeg[: start_of_scan(signed_jpeg)] + other[start_of_scan(other) :]

    submission = upload(bob, "tampered.jpg", tampered)
    verdict_row(submission, head, label="real", decision="real")

    provenance = provenance_of(bob, submission)
    assert provenance["c2pa"]["validation"] == "hash_mismatch"
    assert provenance["c2pa"]["codes"][0] == "assertion.dataHash.mismatch"
    assert provenance["claims"][0]["strength"] == "weak"
    assert "failed validation: hash_mismatch" in provenance["reason"]
    assert listed(bob, provenance="has_c2pa") == [submission.pk]
    assert listed(bob, provenance="signed") == []


def test_automatic1111_parameters_naming_another_registered_generator_conflict(
    bob: User, head: HeadVersion
) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", A1111)
    submission = upload(bob, "a1111.png", picture_bytes("PNG", pnginfo=info))

    verdict_row(submission, head, label="sdxl", decision="known_generator")

    provenance = provenance_of(bob, submission)
    assert provenance["c2pa"] is None
    [claim] = provenance["claims"]
    assert (claim["source"], claim["says"], claim["generator"], claim["strength"]) == (
        "png-text", "generated", "v1-5-pruned-emaonly", "weak"
    )
    assert claim["detail"]["model_hash"] == "6ce0161689"
    # The model hash is an alias of sd15: the file names sd15, the pixels sdxl.
    assert provenance["agreement"] == "conflicts"
    assert "registered as sd15, but the verdict names sdxl" in provenance["reason"]
    assert listed(bob, provenance="conflicts") == [submission.pk]


def test_a_camera_jpeg_agrees_with_a_real_verdict_and_its_duplicate_shares_it(bob: User, head: HeadVersion) -> None:
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Canon", "Canon EOS R5"
    data = picture_bytes(exif=exif)
    submission = upload(bob, "camera.jpg", data)
    verdict_row(submission, head, label="real", decision="real")
    duplicate = upload(bob, "camera-again.jpg", data)

    for row in (submission, duplicate):
        provenance = provenance_of(bob, row)
        [claim] = provenance["claims"]
        assert (claim["source"], claim["says"], claim["detail"]["camera"]) == (
            "exif", "camera capture", "Canon Canon EOS R5"
        )
        assert provenance["agreement"] == "agrees"
    duplicate.refresh_from_db()
    assert duplicate.duplicate_of_id == submission.pk
    assert (duplicate.provenance, duplicate.provenance_agreement) == (submission.provenance, "agrees")

    # A later verdict (another head) that calls it generated turns both into a conflict.
    verdict_row(submission, head_version_row(version=2, classes=CLASSES), label="sdxl", decision="known_generator")
    assert set(listed(bob, provenance="conflicts")) == {submission.pk, duplicate.pk}


def test_a_file_without_metadata_has_nothing_to_compare(bob: User, head: HeadVersion) -> None:
    submission = upload(bob, "bare.png", picture_bytes("PNG"))
    verdict_row(submission, head, label="sdxl", decision="known_generator")

    provenance = provenance_of(bob, submission)
    assert (provenance["claims"], provenance["c2pa"], provenance["agreement"]) == ([], None, "none")
    assert provenance["reason"] == "The file carries no provenance claims to compare with the verdict."
    submission.refresh_from_db()
    assert (submission.provenance_c2pa, submission.provenance_agreement) == ("", "none")


def test_a_hostile_manifest_is_a_finding_not_a_failure(bob: User, head: HeadVersion, signed_jpeg: bytes) -> None:
    app11 = signed_jpeg.index(b"\xff\xeb")
    (length,) = struct.unpack_from(">H", signed_jpeg, app11 + 2)
    kept = 100  # the manifest's segment ends in the middle of its JUMBF boxes
    truncated = (
        signed_jpeg[: app11 + 2] + struct.pack(">H", kept) + signed_jpeg[app11 + 4 : app11 + 2 + kept]
        + signed_jpeg[app11 + 2 + length :]
    )
    bogus = b"\xff\xeb" + struct.pack(">H", 65535) + b"JP\x00\x01jumbc2pa" + b"\xff" * (65535 - 14)
    jpeg = picture_bytes(seed=5)
    flooded = jpeg[:2] + bogus * 80 + jpeg[2:]  # 5 MB of bogus manifest, over the reader's limit

    for name, data, code in (
        ("truncated.jpg", truncated, "provenance.manifestUnreadable"),
        ("flooded.jpg", flooded, "provenance.manifestTooLarge"),
    ):
        submission = upload(bob, name, data)
        provenance = provenance_of(bob, submission)
        assert provenance["c2pa"]["validation"] == "malformed", name
        assert provenance["c2pa"]["codes"] == [code], name
        assert provenance["claims"] == []
        assert submission.status == Submission.Status.QUEUED
    assert len(listed(bob, provenance="has_c2pa")) == 2


def test_exports_and_the_pdf_report_carry_the_agreement_and_its_reason(
    bob: User, head: HeadVersion, signed_jpeg: bytes, tmp_path: Path
) -> None:
    case = Case.objects.create(team=bob.membership.team, title="Leak", created_by=bob)
    signed = upload(bob, "firefly.jpg", signed_jpeg, case=case.pk)
    bare = upload(bob, "bare.png", picture_bytes("PNG"), case=case.pk)
    verdict_row(signed, head, label="real", decision="real")
    verdict_row(bare, head, label="real", decision="real")
    client = Client()
    client.force_login(bob)

    rows = list(csv.DictReader(io.StringIO(client.get(f"/cases/{case.pk}/export/csv/").content.decode())))
    assert [(row["file_name"], row["provenance_agreement"], row["c2pa_validation"]) for row in rows] == [
        ("firefly.jpg", "conflicts", "untrusted"),
        ("bare.png", "none", ""),
    ]
    assert rows[0]["provenance_reason"].startswith("The untrusted C2PA manifest says the image was generated")
    document = json.loads(client.get(f"/cases/{case.pk}/export/json/").content)
    first = document["submissions"][0]
    assert (first["provenance_agreement"], first["provenance_claims"][0]["generator"]) == ("conflicts", "Adobe Firefly")

    path = tmp_path / "report.pdf"
    path.write_bytes(case_report_pdf(case=case))
    text = " ".join(subprocess.run(["pdftotext", "-enc", "UTF-8", str(path), "-"], capture_output=True, check=True)
                    .stdout.decode().split())
    assert "Provenance conflicts with the verdict." in text
    assert "but the verdict is a real photograph." in text
    assert "untrusted; signer Firefly Signer (Adobe Test); made by Adobe Firefly 3.1" in text
    assert "Provenance: nothing to compare. The file carries no provenance claims" in text
    assert "a file without provenance proves nothing" in text


def test_the_verdict_page_shows_both_sides(bob: User, head: HeadVersion, signed_jpeg: bytes) -> None:
    submission = upload(bob, "firefly.jpg", signed_jpeg)
    verdict_row(submission, head, label="real", decision="real")
    client = Client()
    client.force_login(bob)

    page = client.get(f"/submissions/{submission.pk}/").content.decode()

    assert 'data-testid="provenance"' in page
    assert "Conflict:" in page and "Adobe Firefly" in page
    assert "Valid, but the signer is not among the trusted ones" in page
    assert "a file without provenance proves nothing" in page
    history = client.get("/submissions/", {"provenance": "conflicts"}).content.decode()
    assert "firefly.jpg" in history and 'value="conflicts" selected' in history


def test_an_admin_names_a_generators_aliases_in_the_form_and_the_api(staff: User, head: HeadVersion) -> None:
    client = Client()
    client.force_login(staff)
    response = client.post(
        "/registry/generators/sdxl/edit/",
        {"name": "SDXL", "slug": "sdxl", "family": "diffusion", "is_active": "on",
         "aliases": "sd_xl_base_1.0\n  DreamShaper XL \n\nsd_xl_base_1.0\n31e35c80fc"},
    )
    assert response.status_code == 302, response.content.decode()
    assert Generator.objects.get(slug="sdxl").aliases == ["sd_xl_base_1.0", "DreamShaper XL", "31e35c80fc"]
    assert "DreamShaper XL\n31e35c80fc" in client.get("/registry/generators/sdxl/edit/").content.decode()

    api = api_client(staff)
    patched = api.patch("/api/v1/generators/sdxl/", {"aliases": ["SDXL Turbo"]}, format="json")
    assert patched.status_code == 200, patched.content
    assert patched.json()["aliases"] == ["SDXL Turbo"]
    created = api.post(
        "/api/v1/generators/", {"name": "DALL-E 3", "slug": "dalle3", "family": "diffusion", "aliases": ["DALL-E"]},
        format="json",
    )
    assert created.status_code == 201, created.content
    assert Generator.objects.get(slug="dalle3").aliases == ["DALL-E"]
    too_many = api.patch("/api/v1/generators/sdxl/", {"aliases": [f"n{i}" for i in range(51)]}, format="json")
    assert too_many.status_code == 400
