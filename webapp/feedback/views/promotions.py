"""The verdict page's "Add to <generator>'s references" form (templates/feedback/_promote.html): a registry
admin of the team copies a confirmed submission into the references of the generator it was confirmed as."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from webapp.common.permissions import reference_promoter_required
from webapp.feedback.services.promotions import NOT_FOUND, PromotionStatus, confirmed_submissions_promote
from webapp.teams.models import Team


@require_POST
@reference_promoter_required
def promote(request: HttpRequest, team: Team, pk: int) -> HttpResponse:
    (outcome,) = confirmed_submissions_promote(team=team, submission_ids=[pk], actor=request.user)
    if outcome.reason == NOT_FOUND:
        raise Http404("No such submission")
    name = outcome.generator.name if outcome.generator is not None else ""
    if outcome.status == PromotionStatus.PROMOTED:
        messages.success(request, f"Added to {name}'s references. Train a new head to use it.")
    elif outcome.status == PromotionStatus.ALREADY_REFERENCE:
        messages.info(request, f"{name} already has this image among its references.")
    else:
        messages.error(request, f"Not added to the references: {outcome.reason}")
    return redirect("submissions:detail", pk=pk)
