"""HTML pages of submissions: upload, history, the verdict page, and the analyst's confirmation of verdicts."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from attribution.images import ALLOWED_FORMATS
from webapp.audit.services import audit_record
from webapp.cases.models import Case
from webapp.cases.selectors import case_choices
from webapp.common.pagination import CappedPaginator
from webapp.common.permissions import reattributor_required, registry_admin_required, request_user, team_required
from webapp.registry.forms import ActivationForm
from webapp.registry.models import Generator, HeadVersion
from webapp.registry.selectors import head_version_active
from webapp.registry.services import RegistryError
from webapp.submissions.forms import (
    OTHER_LABEL,
    ConfirmationForm,
    ConfirmationSelectionForm,
    ReattributeForm,
    selector_kwargs,
    submission_filters,
    submission_order,
)
from webapp.submissions.models import Confirmation
from webapp.submissions.selectors import (
    CONFIRMATION_FILTER_CHOICES,
    DECISION_NAMES,
    PROVENANCE_FILTER_CHOICES,
    ConfirmationReading,
    confirmation_label_choices,
    generator_names,
    open_cases_reattribution_progress,
    submission_confirmation,
    submission_get,
    submission_list,
    submission_provenance,
    verdict_changes,
    verdict_evidence,
    verdict_list,
    verdict_probabilities,
    verdict_reading,
    verdict_sentence,
    verdicts_attach,
)
from webapp.submissions.services import (
    ConfirmationRefused,
    ReattributionRefused,
    head_version_activate_and_reattribute,
    submission_confirm,
    submission_confirmation_clear,
    submissions_confirm,
    submissions_reattribute,
)
from webapp.submissions.thumbnails import thumbnail_response
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
            "cases": case_choices(team=team, status=Case.Status.OPEN),
            "selected_case": request.GET.get("case", ""),
            "accept": ACCEPT,
            "formats": ", ".join(sorted(ALLOWED_FORMATS)),
            "max_megabytes": settings.UPLOAD_MAX_BYTES // (1024 * 1024),
            "max_files": settings.UPLOAD_MAX_FILES,
            "group_size": min(UPLOAD_GROUP_SIZE, settings.UPLOAD_MAX_FILES),
        },
    )


# The history's sortable columns: (heading, sort key).
SORTABLE_COLUMNS = {"uploaded": "Uploaded", "name": "File", "submitter": "By", "decision": "Verdict", "score": "Score"}


def _sort_links(query: QueryDict, current: str) -> dict[str, dict[str, str]]:
    """Each sortable column's link (the other direction when it is the current sort) and aria-sort."""
    links = {}
    for key in SORTABLE_COLUMNS:
        ascending = current == key
        descending = current == f"-{key}" or (key == "uploaded" and current == "")
        params = query.copy()
        params.pop("page", None)
        params["sort"] = key if descending else f"-{key}"
        links[key] = {
            "url": "?" + params.urlencode(),
            "aria": "ascending" if ascending else "descending" if descending else "none",
        }
    return links


@require_GET
@team_required
def history(request: HttpRequest, team: Team) -> HttpResponse:
    filters = submission_filters(request.GET)
    valid = filters.is_valid()
    order = submission_order(request.GET)
    submissions = submission_list(
        team=team, order=order, **selector_kwargs(filters.validated_data if valid else {})
    )
    page = CappedPaginator(submissions, HISTORY_PAGE_SIZE).get_page(request.GET.get("page"))
    rows = verdicts_attach(page.object_list)
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "submissions/history.html",
        {
            "page": page,
            "rows": rows,
            "filters": request.GET,
            "filtered": any(request.GET.get(key, "").strip() for key in request.GET if key not in ("page", "sort")),
            "filter_errors": {} if valid else filters.errors,
            "query": query.urlencode(),
            "sort": _sort_links(request.GET, order),
            "cases": case_choices(team=team),
            "open_cases": case_choices(team=team, status=Case.Status.OPEN),
            "generators": Generator.objects.order_by("name"),
            "decisions": list(DECISION_NAMES.items()),
            "provenance_filters": PROVENANCE_FILTER_CHOICES,
            "confirmation_filters": CONFIRMATION_FILTER_CHOICES,
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
    confirmation = submission_confirmation(submission=submission, names=names)
    label_choices = confirmation_label_choices()
    audit_record(actor=request.user, action="view", team=team, target=submission)
    return render(
        request,
        "submissions/detail.html",
        {
            "submission": submission,
            "verdict": verdict,
            "reading": verdict_reading(verdict=verdict, names=names) if verdict else None,
            "active_head": head_version_active(),
            "probabilities": verdict_probabilities(verdict=verdict, names=names) if verdict else [],
            "evidence": verdict_evidence(verdict=verdict, names=names) if verdict else [],
            "earlier_verdicts": [(v, verdict_sentence(verdict=v, names=names)) for v in verdicts[1:]],
            "tags": sorted((submission.metadata.get("tags") or {}).items()),
            "provenance": submission_provenance(submission=submission),
            "open_cases": case_choices(team=team, status=Case.Status.OPEN),
            "confirmation": confirmation,
            "confirmation_form": _confirmation_initial(confirmation, label_choices),
            "label_choices": label_choices,
            "other_label": OTHER_LABEL,
            "confirmation_statuses": Confirmation.Status.choices,
        },
    )


def _confirmation_initial(confirmation: ConfirmationReading | None, choices: list[tuple[str, str]]) -> dict[str, str]:
    """The confirmation card's form as the current confirmation left it (confirmed, the verdict's own label,
    when there is none)."""
    if confirmation is None:
        return {"status": Confirmation.Status.CONFIRMED, "label": "", "label_other": "", "note": ""}
    registered = {slug for slug, _ in choices}
    label, other = confirmation.label, ""
    if label and label not in registered:
        label, other = OTHER_LABEL, confirmation.label
    return {"status": confirmation.status, "label": label, "label_other": other, "note": confirmation.note}


def _back(request: HttpRequest, target: str, default: str) -> HttpResponse:
    """Back to the page the form was sent from (a path of this site only)."""
    safe = url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=False)
    return redirect(target if target and safe else default)


@require_POST
@team_required
def confirmation_edit(request: HttpRequest, team: Team, pk: int) -> HttpResponse:
    """The verdict page's confirmation card: confirm or dispute the latest verdict, or withdraw that."""
    submission = submission_get(team=team, submission_id=pk)
    if submission is None:
        raise Http404("No such submission")
    form = ConfirmationForm(request.POST)
    page = reverse("submissions:detail", args=[submission.pk])
    if not form.is_valid():
        messages.error(request, " ".join(str(e) for errors in form.errors.values() for e in errors))
        return redirect(page)
    try:
        if form.clearing:
            cleared = submission_confirmation_clear(submission=submission, actor=request_user(request))
            messages.success(request, "Confirmation withdrawn." if cleared else "There was nothing to withdraw.")
        else:
            confirmed, _ = submission_confirm(
                submission=submission,
                actor=request_user(request),
                status=form.cleaned_data["status"],
                label=form.chosen_label,
                note=form.cleaned_data["note"],
            )
            messages.success(request, f"Verdict {confirmed.get_status_display().lower()}.")
    except ConfirmationRefused as refused:
        messages.error(request, str(refused))
    return redirect(page)


@require_POST
@team_required
def confirm_selection(request: HttpRequest, team: Team) -> HttpResponse:
    """The history's "confirm selected" and "dispute selected": each selected verdict is right (its own label)
    or wrong (what the image is not said)."""
    form = ConfirmationSelectionForm(request.POST)
    history = reverse("submissions:history")
    if not form.is_valid():
        messages.error(request, " ".join(str(e) for errors in form.errors.values() for e in errors))
        return _back(request, form.data.get("next", ""), history)
    status = form.cleaned_data["status"]
    try:
        done = submissions_confirm(
            team=team,
            actor=request_user(request),
            submission_ids=form.cleaned_data["submission_ids"],
            status=status,
        )
    except ConfirmationRefused as refused:
        messages.error(request, str(refused))
    else:
        verb = Confirmation.Status(status).label.lower()
        messages.success(request, f"{len(done)} verdict{'s' if len(done) != 1 else ''} {verb}.")
    return _back(request, form.cleaned_data.get("next", ""), history)


@require_GET
@team_required
def thumbnail(request: HttpRequest, team: Team, pk: int) -> HttpResponse:
    """A small JPEG of one of the team's submissions (the history's thumbnails)."""
    return thumbnail_response(submission=submission_get(team=team, submission_id=pk))


# --- re-attribution with the active head --------------------------------------------------------------


@reattributor_required
def reattribute(request: HttpRequest, team: Team) -> HttpResponse:
    form = ReattributeForm(request.POST or None, team=team)
    if request.method == "POST" and form.is_valid():
        case, since = form.cleaned_data.get("case"), form.since_datetime
        try:
            queued = submissions_reattribute(actor=request.user, team=team, case=case, since=since)
        except ReattributionRefused as error:
            form.add_error(None, str(error))
        else:
            messages.success(request, f"{queued} submissions queued for the active head.")
            query = f"?case={case.pk}" if case else f"?since={form.cleaned_data['since']:%Y-%m-%d}"
            return redirect(reverse("submissions:verdict_changes") + query)
    return render(
        request,
        "submissions/reattribute.html",
        {"form": form, "active": head_version_active()},
    )


@require_GET
@team_required
def verdict_changes_view(request: HttpRequest, team: Team) -> HttpResponse:
    form = ReattributeForm(request.GET or None, team=team)
    case = since = None
    if form.is_bound and form.is_valid():
        case, since = form.cleaned_data.get("case"), form.since_datetime
    changes = verdict_changes(team=team, case=case, since=since)
    return render(request, "submissions/verdict_changes.html", {"form": form, "changes": changes})


# --- activating a head and re-attributing the open cases, as one action ---------------------------------


@registry_admin_required
@require_POST
def activate_and_reattribute(request: HttpRequest, version: int) -> HttpResponse:
    """The activation page's second button: activate the head and queue every open case for it."""
    head = get_object_or_404(HeadVersion, version=version)
    form = ActivationForm(request.POST)
    confirm_worse = form.is_valid() and form.cleaned_data["confirm_worse"]
    try:
        queued = head_version_activate_and_reattribute(
            head_version=head, actor=request_user(request), confirm_worse=confirm_worse
        )
    except RegistryError as error:
        messages.error(request, str(error))
        return redirect("registry:head_activate", version=version)
    messages.success(request, f"Head v{head.version} is active; {queued} images of the open cases queued for it.")
    return redirect("submissions:reattribution_progress")


@registry_admin_required
@require_GET
def reattribution_progress(request: HttpRequest) -> HttpResponse:
    progress = open_cases_reattribution_progress()
    return render(request, "submissions/reattribution_progress.html", {"progress": progress})
