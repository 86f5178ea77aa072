"""Staff pages of the unknown pile's clusters: the list, one cluster with every member (outliers first) and the
forms that register it as a new generator or dismiss it, and the members' thumbnails."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from webapp.audit.services import audit_record
from webapp.common.permissions import staff_required
from webapp.feedback.forms import ClusterDismissForm, ClusterRegisterForm
from webapp.feedback.selectors.clusters import (
    STATUS_FILTERS,
    ClusterSummary,
    unknown_cluster_get,
    unknown_cluster_list,
    unknown_cluster_member_submission,
    unknown_cluster_members,
)
from webapp.feedback.services.clusters import (
    ClusterRefused,
    unknown_cluster_dismiss,
    unknown_cluster_register,
    unknown_clusters_refresh,
)
from webapp.submissions.thumbnails import thumbnail_response


@staff_required
@require_GET
def unknown_clusters(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", "open")
    if status not in STATUS_FILTERS:
        status = "open"
    context = {
        "summaries": unknown_cluster_list(status=status),
        "status": status,
        "statuses": STATUS_FILTERS,
        "interval_minutes": max(round(settings.UNKNOWN_CLUSTER_INTERVAL_S / 60), 1),
    }
    return render(request, "feedback/unknown_clusters.html", context)


@staff_required
@require_POST
def unknown_clusters_refresh_now(request: HttpRequest) -> HttpResponse:
    result = unknown_clusters_refresh()
    if result.skipped:
        messages.info(request, f"Nothing re-clustered: {result.skipped}.")
    else:
        messages.success(
            request,
            f"{result.items} unrecognised images re-clustered: {result.clusters} open clusters "
            f"({result.created} new, {result.removed} gone).",
        )
    return redirect("feedback:unknown_clusters")


def _summary(pk: int) -> ClusterSummary:
    summary = unknown_cluster_get(cluster_id=pk)
    if summary is None:
        raise Http404("No such cluster")
    return summary


def _detail(
    request: HttpRequest,
    summary: ClusterSummary,
    *,
    form: ClusterRegisterForm | None = None,
    status: int = 200,
) -> HttpResponse:
    members = unknown_cluster_members(cluster=summary.cluster)
    form = form or ClusterRegisterForm(member_ids=[member.submission_id for member in members])
    context = {
        "summary": summary,
        "cluster": summary.cluster,
        "members": members,
        "form": form,
        "excluded": {int(pk) for pk in request.POST.getlist("exclude") if pk.isdigit()},
        "dismiss_form": ClusterDismissForm(),
    }
    return render(request, "feedback/unknown_cluster.html", context, status=status)


@staff_required
@require_GET
def unknown_cluster(request: HttpRequest, pk: int) -> HttpResponse:
    summary = _summary(pk)
    # Staff see every team's images here: who looked at which team's images is on the record.
    audit_record(
        actor=request.user, action="unknown_cluster_view", target=summary.cluster, detail={"teams": summary.teams}
    )
    return _detail(request, summary)


@staff_required
@require_POST
def unknown_cluster_register_view(request: HttpRequest, pk: int) -> HttpResponse:
    summary = _summary(pk)
    form = ClusterRegisterForm(request.POST, member_ids=summary.submission_ids)
    if not form.is_valid():
        return _detail(request, summary, form=form, status=400)
    try:
        registration = unknown_cluster_register(
            cluster=summary.cluster,
            name=form.cleaned_data["name"],
            slug=form.cleaned_data["slug"],
            family=form.cleaned_data["family"],
            description=form.cleaned_data["description"],
            exclude_submission_ids=form.cleaned_data["exclude"],
            actor=request.user,
        )
    except ClusterRefused as refused:
        form.add_error(refused.field if refused.field in form.fields else None, str(refused))
        return _detail(request, _summary(pk), form=form, status=400)
    except DjangoValidationError as error:
        form.add_error(None, error)
        return _detail(request, summary, form=form, status=400)
    generator = registration.generator
    added = sum(p.created for p in registration.promotions)
    messages.success(request, f"Cluster {pk} registered as {generator.name}: {added} reference images added.")
    if registration.training_job is not None:
        messages.success(request, f"Training job {registration.training_job.pk} queued.")
        return redirect("registry:training_job", pk=registration.training_job.pk)
    messages.warning(request, f"No training was started: {registration.training_error}")
    return redirect("registry:generator_detail", slug=generator.slug)


@staff_required
@require_POST
def unknown_cluster_dismiss_view(request: HttpRequest, pk: int) -> HttpResponse:
    summary = _summary(pk)
    form = ClusterDismissForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    try:
        unknown_cluster_dismiss(cluster=summary.cluster, actor=request.user, reason=reason)
    except ClusterRefused as refused:
        messages.error(request, str(refused))
        return redirect("feedback:unknown_cluster", pk=pk)
    messages.success(request, f"Cluster {pk} dismissed: its images stay out of later clusters.")
    return redirect("feedback:unknown_clusters")


@staff_required
@require_GET
def unknown_cluster_thumbnail(request: HttpRequest, pk: int, submission_id: int) -> HttpResponse:
    """A small JPEG of one member of the cluster (the submissions' own thumbnails, made once)."""
    return thumbnail_response(submission=unknown_cluster_member_submission(cluster_id=pk, submission_id=submission_id))
