"""`{% confirmed_promotion submission as promotion %}`: for templates/feedback/_promote.html, which the verdict
page of webapp.submissions includes (that app may not import feedback; a template may load its tags)."""

from __future__ import annotations

from django import template

from webapp.feedback.models import ReferencePromotion
from webapp.submissions.models import Submission

register = template.Library()


@register.simple_tag
def confirmed_promotion(submission: Submission) -> ReferencePromotion | None:
    """The submission's copy among the references of the generator it was confirmed as, if it has one."""
    confirmation = getattr(submission, "confirmation", None)
    if confirmation is None or confirmation.generator_id is None:
        return None
    return (
        ReferencePromotion.objects.filter(submission=submission, reference__generator_id=confirmation.generator_id)
        .select_related("promoted_by")
        .first()
    )
