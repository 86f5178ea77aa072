"""Robust training (TRAINING_ROBUST=1): perturbed copies of every reference join the head's training set,
their features cached under their own keys, and the head records it."""

from __future__ import annotations

from pathlib import Path

from django.contrib.auth.models import User
from django.test import override_settings

from attribution.perturb import ROBUST_TRAINING, Perturbation, parse_perturbations, perturbed_sha256
from webapp.registry import services
from webapp.registry.models import ReferenceImage

CLASSES = ["real", "tconv-s1", "bilinear-s1"]
PER_CLASS = 4  # few, to keep the forward passes few (the minimum is lowered below)


@override_settings(TRAINING_MIN_REFERENCES=PER_CLASS)
def test_it_trains_on_perturbed_copies_only_when_asked(staff: User, synth_dir: Path, engine) -> None:  # type: ignore[no-untyped-def]
    backbone, cache = engine
    services.registry_seed_from_folder(source_dir=synth_dir, classes=CLASSES, per_class=PER_CLASS, actor=staff)
    plain = services.head_train_now(actor=staff, backbone=backbone, cache=cache)
    assert plain.metrics["robust_training"] is None and plain.metrics["n_samples"] == 12

    with override_settings(TRAINING_ROBUST=True):
        robust = services.head_train_now(actor=staff, backbone=backbone, cache=cache)
    copies = len(CLASSES) * PER_CLASS * len(ROBUST_TRAINING)
    assert robust.metrics["robust_training"] == {"perturbations": list(ROBUST_TRAINING), "copies": copies}
    assert robust.metrics["hyperparameters"]["robust_training"] is True
    assert robust.metrics["n_samples"] == 12 + copies
    assert len(robust.manifest) == 12  # the manifest lists the reference images, not their copies
    jpeg: Perturbation = parse_perturbations(["jpeg:75"])[0]
    for reference in ReferenceImage.objects.all():
        assert cache.get(perturbed_sha256(reference.sha256, jpeg), backbone.identity, 8) is not None
