"""Issue 5's scenario, in process: a generator the registry does not know is not attributed to it; ten
reference images, a training and an activation later, most of its held-out images are; a rollback brings
the earlier verdicts back. Verdicts come from the worker runtime's own head loading, on the offline backbone.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from django.contrib.auth.models import User
from django.core.files import File

from tests.fixtures_registry import SYNTH_PER_CLASS, image_features
from webapp.audit.models import AuditEvent
from webapp.registry import services
from webapp.registry.models import HeadVersion
from webapp.registry.selectors import head_version_active

NEW_GENERATOR = "tconv-s2"  # unknown to the demo head: the known tconv-s1's architecture, another seed
REFERENCES = 10


def active_verdicts(features, engine) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """(label, decision) of each image by whatever head is active now, loaded as a worker loads it."""
    from workers.runtime import load_attributor

    head = head_version_active()
    assert head is not None
    loaded = load_attributor(head_version_id=head.pk, version=head.version, artifact_name=head.artifact.name)
    assert loaded.version == head.version
    return [(a.label, a.decision) for a in loaded.attributor.attribute_features(features)]


def test_it_learns_a_new_generator_from_ten_images_and_rolls_back(
    active_head: HeadVersion, staff: User, synth_dir: Path, engine
) -> None:
    images = sorted((synth_dir / NEW_GENERATOR).glob("*.png"))
    assert len(images) == SYNTH_PER_CLASS
    references, held_out = images[:REFERENCES], images[REFERENCES:]
    held_out_features = image_features(held_out, engine)

    before = active_verdicts(held_out_features, engine)
    assert all(label != NEW_GENERATOR for label, _ in before)

    generator = services.generator_create(actor=staff, name="TConv seed 2", slug=NEW_GENERATOR, family="gan")
    handles = [File(open(path, "rb"), name=path.name) for path in references]  # noqa: SIM115
    try:
        results = services.reference_images_upload(generator=generator, files=handles, uploaded_by=staff)
    finally:
        for handle in handles:
            handle.close()
    assert [r.created for r in results] == [True] * REFERENCES

    backbone, cache = engine
    new_head = services.head_train_now(actor=staff, backbone=backbone, cache=cache)
    assert NEW_GENERATOR in new_head.classes and new_head.status == HeadVersion.Status.CANDIDATE
    services.head_version_activate(head_version=new_head, actor=staff)

    after = active_verdicts(held_out_features, engine)
    attributed = Counter(decision for label, decision in after if label == NEW_GENERATOR)
    assert sum(attributed.values()) > len(held_out) / 2, after
    assert attributed["known_generator"] >= len(held_out) / 2, after

    services.head_version_activate(head_version=active_head, actor=staff)
    assert AuditEvent.objects.filter(action="rollback", detail__version=active_head.version).exists()
    assert active_verdicts(held_out_features, engine) == before
