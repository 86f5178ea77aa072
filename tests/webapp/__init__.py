"""Tests of the Django apps on a real database. Small helpers for image files and verdict rows."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from webapp.registry.models import HeadVersion
from webapp.submissions.models import Submission, Verdict
from webapp.submissions.services import verdict_store


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (32, 24), seed: int = 0, **save: Any) -> bytes:
    """A small image of seeded noise, encoded in `fmt` (distinct seeds give distinct bytes)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **save)
    return buffer.getvalue()


def uploaded(name: str, data: bytes, content_type: str = "application/octet-stream") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


def head_version_row(
    version: int = 1, classes: tuple[str, ...] = ("real", "gan-a", "diffusion-b")
) -> HeadVersion:
    """A head version row without an artifact file: enough for verdicts that tests write themselves."""
    return HeadVersion.objects.create(
        version=version,
        status=HeadVersion.Status.ACTIVE if version == 1 else HeadVersion.Status.CANDIDATE,
        artifact=f"heads/test-v{version}.npz",
        head_kind="linear",
        classes=list(classes),
        blocks=[8],
        backbone="ViT-S-16/random-seed0",
        pretrained=False,
        threshold=0.6,
    )


def verdict_row(
    submission: Submission,
    head: HeadVersion,
    *,
    label: str,
    decision: str,
    score: float = 0.97,
    **fields: Any,
) -> Verdict:
    """A verdict on `submission` as a worker stores it; the submission is marked done."""
    rest = (1 - score) / max(len(head.classes) - 1, 1)
    verdict = verdict_store(
        submission=submission,
        head_version=head,
        label=label,
        decision=decision,
        score=score,
        threshold=head.threshold,
        probabilities={c: (score if c == label else rest) for c in head.classes},
        backbone=head.backbone,
        pretrained=head.pretrained,
        elapsed_ms=12.5,
        **fields,
    )[0]
    Submission.objects.filter(pk=submission.pk).update(status=Submission.Status.DONE)
    return verdict
