"""HTML pages of submissions: upload, history, and the verdict page."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from attribution.images import ALLOWED_FORMATS
from webapp.audit.services import audit_record
from webapp.cases.models import Case
from webapp.cases.selectors import case_list
from webapp.core.permissions import team_required
from webapp.registry.models import Generator
from webapp.submissions.forms import selector_kwargs, submission_filters
from webapp.submissions.models import Verdict
from webapp.submissions.selectors import (
    generator_names,
    submission_get,
    submission_list,
    verdict_evidence,
    verdict_list,
    verdict_probabilities,
    verdict_sentence,
    verdicts_attach,
)
from webapp.teams.models import Team

HISTORY_PAGE_SIZE = 25
# Files sent per request by the upload page: small groups keep each request short and show progress.
UPLOAD_GROUP_SIZE = 10
ACCEPT = ",".join(
    [".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"]
    + [f"image/{name.lower()}" for name in sorted(ALLOWED_FORMATS)]
)


@require_GET
@team_required
def upload(request: HttpRequest, team: Team) -> HttpResponse:
    return render(
        request,
        "submissions/upload.html",
        {
            "cases": case_list(team=team, status=Case.Status.OPEN),
            "selected_case": request.GET.get("case", ""),
            "accept": ACCEPT,
            "formats": ", ".join(sorted(ALLOWED_FORMATS)),
            "max_megabytes": settings.UPLOAD_MAX_BYTES // (1024 * 1024),
            "max_files": settings.UPLOAD_MAX_FILES,
            "group_size": min(UPLOAD_GROUP_SIZE, settings.UPLOAD_MAX_FILES),
        },
    )


@require_GET
@team_required
def history(request: HttpRequest, team: Team) -> HttpResponse:
    filters = submission_filters(request.GET)
    valid = filters.is_valid()
    submissions = submission_list(team=team, **selector_kwargs(filters.validated_data if valid else {}))
    page = Paginator(submissions, HISTORY_PAGE_SIZE).get_page(request.GET.get("page"))
    names = generator_names()
    rows = verdicts_attach(page.object_list)
    for row in rows:
        verdict = row.current_verdict
        row.summary = verdict_sentence(verdict=verdict, names=names) if verdict else ""
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "submissions/history.html",
        {
            "page": page,
            "rows": rows,
            "filters": request.GET,
            "filter_errors": {} if valid else filters.errors,
            "query": query.urlencode(),
            "cases": case_list(team=team),
            "generators": Generator.objects.order_by("name"),
            "decisions": Verdict.Decision.choices,
            "members": get_user_model().objects.filter(membership__team=team).order_by("username"),
        },
    )


@require_GET
@team_required
def detail(request: HttpRequest, team: Team, pk: int) -> HttpResponse:
    submission = submission_get(team=team, submission_id=pk)
    if submission is None:
        raise Http404("No such submission")
    names = generator_names()
    verdicts = verdict_list(submission=submission)
    verdict = verdicts[0] if verdicts else None
    audit_record(actor=request.user, action="view", team=team, target=submission)
    return render(
        request,
        "submissions/detail.html",
        {
            "submission": submission,
            "verdict": verdict,
            "summary": verdict_sentence(verdict=verdict, names=names) if verdict else "",
            "probabilities": verdict_probabilities(verdict=verdict, names=names) if verdict else [],
            "evidence": verdict_evidence(verdict=verdict, names=names) if verdict else [],
            "earlier_verdicts": [(v, verdict_sentence(verdict=v, names=names)) for v in verdicts[1:]],
            "tags": sorted((submission.metadata.get("tags") or {}).items()),
        },
    )
