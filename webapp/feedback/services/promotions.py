"""Submissions copied into the registry's references of a generator, linked back to the submission."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.core.exceptions import PermissionDenied
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction

from webapp.audit.services import audit_record
from webapp.common.permissions import PROMOTE_MESSAGE, user_may_promote_references
from webapp.common.tasks import task_send_on_commit
from webapp.common.uploads import UploadRejected
from webapp.feedback.models import ReferencePromotion, UnknownCluster
from webapp.registry.models import Generator, ReferenceImage
from webapp.registry.services.errors import Actor
from webapp.registry.services.references import FEATURES_TASK, reference_image_create
from webapp.submissions.models import Confirmation, Submission
from webapp.teams.models import Team
from webapp.teams.selectors import user_or_none


@dataclass(frozen=True)
class Promotion:
    """What became of one submission: a new reference, one the generator already had (same SHA-256), or why
    it could not be copied."""

    submission: Submission
    reference: ReferenceImage | None
    created: bool
    error: str = ""


def references_promote(
    *,
    submissions: Sequence[Submission],
    generator: Generator,
    actor: Actor,
    source: str,
    cluster: UnknownCluster | None = None,
) -> list[Promotion]:
    """Copy each submission's stored image into `generator`'s references (an image it already has, by
    SHA-256, is not copied twice), link each reference to the submission it came from, record it in the
    audit log, and compute the new references' features on a worker after commit.

    Who may promote is the caller's check (staff); which submissions may be promoted (confirmed ones, a
    cluster's members) is the caller's too.
    """
    results: list[Promotion] = []
    with transaction.atomic():
        for submission in submissions:
            try:
                with default_storage.open(submission.image.name or "", "rb") as stored:
                    reference, created = reference_image_create(
                        generator=generator,
                        upload=File(stored, name=submission.original_name),
                        uploaded_by=actor,
                        enqueue=False,
                        source_team=submission.team,
                    )
            except FileNotFoundError:
                results.append(Promotion(submission, None, False, "the stored image is missing"))
                continue
            except UploadRejected as rejected:
                results.append(Promotion(submission, None, False, f"the stored image was refused: {rejected}"))
                continue
            ReferencePromotion.objects.get_or_create(
                reference=reference,
                defaults={
                    "submission": submission,
                    "source": source,
                    "cluster": cluster,
                    "promoted_by": user_or_none(actor),
                },
            )
            results.append(Promotion(submission, reference, created))
        new_ids = [r.reference.pk for r in results if r.created and r.reference is not None]
        audit_record(
            actor=actor,
            action="reference_promote",
            target=generator,
            detail={
                "source": source,
                "cluster": cluster.pk if cluster else None,
                "submissions": [r.submission.pk for r in results if r.reference is not None],
                "added": len(new_ids),
            },
        )
        if new_ids:
            task_send_on_commit(FEATURES_TASK, new_ids)
    return results


# --- confirmed submissions -----------------------------------------------------------------------------


class PromotionStatus:
    PROMOTED = "promoted"
    ALREADY_REFERENCE = "already_reference"
    REFUSED = "refused"
    ALL = (PROMOTED, ALREADY_REFERENCE, REFUSED)


@dataclass(frozen=True)
class ConfirmedPromotion:
    """What became of one submission id asked for: `promoted` (a new reference of `generator`),
    `already_reference` (the generator has that image already), or `refused` with the reason."""

    submission_id: int
    status: str
    reason: str = ""
    generator: Generator | None = None
    reference: ReferenceImage | None = None


NOT_FOUND = "no such submission in your team"


def _confirmed_generator(submission: Submission, generators: dict[str, Generator]) -> Generator | str:
    """The registered generator the submission's confirmation names, or why there is none."""
    confirmation = getattr(submission, "confirmation", None)
    if confirmation is None:
        return "no analyst has confirmed its verdict"
    if confirmation.status != Confirmation.Status.CONFIRMED:
        return "its verdict was disputed, not confirmed"
    generator = confirmation.generator or generators.get(confirmation.label)
    if generator is not None:
        return generator
    if not confirmation.label:
        return "it was confirmed as from an unregistered source: register the generator first"
    return f"it was confirmed as {confirmation.label!r}, which is not a registered generator"


def confirmed_submissions_promote(
    *, team: Team, submission_ids: Sequence[int], actor: Actor
) -> list[ConfirmedPromotion]:
    """Copy the team's confirmed submissions among `submission_ids` into the references of the registered
    generator their confirmation names (`references_promote`, source "confirmation"); every other id is
    refused with the reason (an id of another team's submission reads as no such submission). One answer per
    distinct id, in the order given."""
    if actor is None or not user_may_promote_references(user=actor):
        raise PermissionDenied(PROMOTE_MESSAGE)
    wanted = list(dict.fromkeys(int(pk) for pk in submission_ids))
    submissions = {
        submission.pk: submission
        for submission in Submission.objects.filter(team=team, pk__in=wanted).select_related("confirmation__generator")
    }
    labels = {s.confirmation.label for s in submissions.values() if getattr(s, "confirmation", None) is not None}
    generators = {g.slug: g for g in Generator.objects.filter(slug__in=labels)}
    outcomes: dict[int, ConfirmedPromotion] = {}
    by_generator: dict[int, tuple[Generator, list[Submission]]] = {}
    for pk in wanted:
        submission = submissions.get(pk)
        if submission is None:
            outcomes[pk] = ConfirmedPromotion(pk, PromotionStatus.REFUSED, NOT_FOUND)
            continue
        generator = _confirmed_generator(submission, generators)
        if isinstance(generator, str):
            outcomes[pk] = ConfirmedPromotion(pk, PromotionStatus.REFUSED, generator)
            continue
        by_generator.setdefault(generator.pk, (generator, []))[1].append(submission)
    for generator, chosen in by_generator.values():
        for result in references_promote(
            submissions=chosen, generator=generator, actor=actor, source=ReferencePromotion.Source.CONFIRMATION
        ):
            pk = result.submission.pk
            if result.reference is None:
                outcomes[pk] = ConfirmedPromotion(pk, PromotionStatus.REFUSED, result.error, generator)
            else:
                status = PromotionStatus.PROMOTED if result.created else PromotionStatus.ALREADY_REFERENCE
                outcomes[pk] = ConfirmedPromotion(pk, status, "", generator, result.reference)
    return [outcomes[pk] for pk in wanted]
