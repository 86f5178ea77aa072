"""Site staff in a real browser review the unknown pile: re-cluster it, open a cluster of images the head
rejected, exclude the outlier, register the rest as a new generator, and follow the training it starts on the
worker to its end."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from attribution.synth import DEFAULT_UNKNOWN
from tests.browser import assert_accessible, log_in, screenshot
from tests.fixtures import WorkerProcess
from tests.webapp import uploaded, verdict_row
from webapp.feedback.models import ReferencePromotion, UnknownCluster
from webapp.registry.models import Generator, HeadVersion, TrainingJob
from webapp.submissions.models import Submission, Verdict
from webapp.submissions.services import submission_create, verdict_feature_space
from webapp.teams.models import Team

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.redis]

NEW_CLASS = DEFAULT_UNKNOWN[3]  # pixelshuffle-s2: unknown to the active head
MEMBERS = 11  # enough references for a training (TRAINING_MIN_REFERENCES, 10) once the outlier is excluded
TRAINING_TIMEOUT_MS = 150_000


def rejected_pile(team: Team, user: User, head: HeadVersion, synth_dir: Path) -> tuple[list[Submission], Submission]:
    """MEMBERS images of the new generator and one real photograph, uploaded by the team and rejected as unknown
    by the active head, with features (as a worker keeps them) that put the photograph at the group's edge."""
    rng = np.random.default_rng(0)
    width = 384  # ViT-S-16's
    centre = rng.normal(size=width)
    centre /= np.linalg.norm(centre)

    def near(scale: float) -> bytes:
        point = centre + scale * rng.normal(size=width) / np.sqrt(width)
        return np.asarray(point / np.linalg.norm(point), dtype="<f4").tobytes()

    space = verdict_feature_space(backbone=head.backbone, blocks=head.blocks)
    paths = sorted((synth_dir / NEW_CLASS).glob("*.png"))[:MEMBERS] + [sorted((synth_dir / "real").glob("*.png"))[15]]
    submissions = []
    for index, path in enumerate(paths):
        submission = submission_create(team=team, user=user, uploaded_file=uploaded(path.name, path.read_bytes()))
        outlier = index == len(paths) - 1
        verdict_row(
            submission,
            head,
            label="real" if outlier else "bilinear-s1",
            decision=Verdict.Decision.UNKNOWN_GENERATOR,
            score=0.3,
            features=near(0.35 if outlier else 0.1),
            feature_space=space,
        )
        submissions.append(submission)
    return submissions[:-1], submissions[-1]


def test_staff_register_an_unknown_cluster_without_its_outlier_and_a_training_runs(
    page: Page,
    staff: User,
    bob: User,
    active_head: HeadVersion,
    browser_worker: WorkerProcess,
    synth_dir: Path,
) -> None:
    members, outlier = rejected_pile(bob.membership.team, bob, active_head, synth_dir)
    log_in(page, "staff", next_url="/registry/")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Unknown").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Unknown clusters")
    page.get_by_role("button", name="Re-cluster now").click()
    expect(page.get_by_role("status")).to_contain_text("1 open clusters")
    cluster = UnknownCluster.objects.get()
    row = page.get_by_test_id("unknown-clusters").locator(f'tr[data-cluster="{cluster.pk}"]')
    expect(row.get_by_role("cell").nth(1)).to_have_text(str(MEMBERS + 1))
    expect(row).to_contain_text("Team A: 12")
    expect(row).to_contain_text("bilinear-s1")
    expect(row.get_by_role("img")).to_have_count(6)
    assert_accessible(page, "unknown clusters")

    row.get_by_role("link", name=f"Cluster {cluster.pk}").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"Unknown cluster {cluster.pk}")
    images = page.get_by_test_id("members").get_by_role("listitem")
    expect(images).to_have_count(MEMBERS + 1)
    # The photograph is the farthest from the centre: first in the review, where an admin spots it.
    expect(images.first).to_have_attribute("data-submission", str(outlier.pk))
    expect(images.first.get_by_role("img")).to_have_js_property("naturalWidth", 96)
    assert_accessible(page, "an unknown cluster")

    page.get_by_label(f"Exclude #{outlier.pk}", exact=True).check()
    screenshot(page, "unknown-cluster-review")
    page.get_by_label("Name").fill("Pixelshuffle s2")
    page.get_by_label("Slug").fill(NEW_CLASS)
    page.get_by_label("Family").select_option(label="GAN")
    page.get_by_role("button", name="Register and train").click()

    page.wait_for_url(re.compile(r"/registry/training-jobs/\d+/$"))
    job = TrainingJob.objects.get(pk=int(page.url.rstrip("/").rsplit("/", 1)[1]))
    expect(page.get_by_role("status")).to_contain_text(f"registered as Pixelshuffle s2: {MEMBERS} reference images")
    expect(page.locator("#job-status")).to_have_text("Done", timeout=TRAINING_TIMEOUT_MS)

    job.refresh_from_db()
    assert job.status == TrainingJob.Status.DONE and job.head_version is not None
    assert NEW_CLASS in job.head_version.classes
    generator = Generator.objects.get(slug=NEW_CLASS)
    promoted = ReferencePromotion.objects.filter(cluster=cluster)
    assert set(promoted.values_list("submission_id", flat=True)) == {s.pk for s in members}
    assert generator.references.count() == MEMBERS
    cluster.refresh_from_db()
    assert cluster.status == UnknownCluster.Status.REGISTERED and cluster.generator == generator

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Unknown").click()
    expect(page.get_by_test_id("unknown-clusters")).to_contain_text("No open clusters")
    page.get_by_role("link", name="Registered").click()
    registered = page.get_by_test_id("unknown-clusters").locator(f'tr[data-cluster="{cluster.pk}"]')
    expect(registered.get_by_role("link", name="Pixelshuffle s2")).to_be_visible()
    expect(registered.get_by_role("cell").nth(1)).to_have_text(str(MEMBERS))
    expect(registered).to_contain_text("(100%)")  # the photograph, closest to real, left with the outlier
