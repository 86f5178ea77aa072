"""Writes of head versions: activation and rollback."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from webapp.audit.services import audit_record
from webapp.registry.models import HeadVersion
from webapp.registry.selectors import head_version_activation_review, head_version_active
from webapp.registry.services.errors import Actor, RegistryError

COMPARED_METRICS = ("accuracy", "auroc", "oscr")


def head_version_may_auto_activate(*, candidate: HeadVersion) -> bool:
    """True when no head is active, or when none of the candidate's accuracy, AUROC and OSCR is worse than
    the active head's by more than HEAD_AUTO_ACTIVATE_TOLERANCE (a metric the candidate lacks but the
    active head has counts as worse)."""
    active = head_version_active()
    if active is None:
        return True
    tolerance = settings.HEAD_AUTO_ACTIVATE_TOLERANCE
    for key in COMPARED_METRICS:
        theirs, ours = active.metrics.get(key), candidate.metrics.get(key)
        if theirs is None:
            continue
        if ours is None or ours < theirs - tolerance:
            return False
    return True


def head_version_activate(*, head_version: HeadVersion, actor: Actor, automatic: bool = False) -> HeadVersion:
    """Make this head the one that makes verdicts; the active one is retired. Activating an older version
    than the active one is a rollback (audited as such)."""
    with transaction.atomic():
        current = HeadVersion.objects.select_for_update().filter(status=HeadVersion.Status.ACTIVE).first()
        if current is not None and current.pk == head_version.pk:
            return current
        if current is not None:
            current.status = HeadVersion.Status.RETIRED
            current.save(update_fields=["status"])
        head_version.status, head_version.activated_at = HeadVersion.Status.ACTIVE, timezone.now()
        head_version.save(update_fields=["status", "activated_at"])
        rollback = current is not None and head_version.version < current.version
        audit_record(
            actor=actor,
            action="rollback" if rollback else "activate",
            target=head_version,
            detail={
                "version": head_version.version,
                "previous": current.version if current else None,
                "automatic": automatic,
            },
        )
    return head_version


def head_version_activate_reviewed(*, head_version: HeadVersion, actor: Actor, confirm_worse: bool) -> HeadVersion:
    """Activation from the confirmation page: a head worse than the active one on any measured metric is
    activated only with `confirm_worse` (the page's second confirmation); RegistryError says why not."""
    review = head_version_activation_review(head_version=head_version)
    if review.worse and not confirm_worse:
        raise RegistryError(
            f"v{head_version.version} is worse than the active v{review.active.version if review.active else '?'} "
            f"on {len(review.worse)} metric{'s' if len(review.worse) != 1 else ''} ({', '.join(review.worse)}): "
            "confirm that you want it active anyway."
        )
    return head_version_activate(head_version=head_version, actor=actor)
