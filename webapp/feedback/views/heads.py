"""The head version pages (list, detail, activation), here because they show each head's field accuracy,
which the registry may not import. Their URLs keep the `registry:` namespace (webapp/urls.py serves them
beside the registry's own pages); everything but the field figures comes from the registry's selectors."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from webapp.common.permissions import registry_admin_required, registry_reader_required
from webapp.feedback.selectors.field import head_version_field_metrics, head_version_field_rows
from webapp.registry import selectors, services
from webapp.registry.charts import BlockChart, block_chart
from webapp.registry.forms import ActivationForm
from webapp.registry.models import HeadVersion, TrainingJob


def _block_sweep_chart(sweep: selectors.BlockSweep, head: HeadVersion) -> BlockChart | None:
    if sweep.state != "measured":
        return None
    series = [("Accuracy", sweep.values("accuracy")), ("Macro F1", sweep.values("macro_f1"))]
    if sweep.has_auroc:
        series.append(("AUROC", sweep.values("auroc")))
    return block_chart(series, marked_blocks=head.blocks)


@registry_reader_required
def heads(request: HttpRequest) -> HttpResponse:
    active, candidate = selectors.head_version_active(), selectors.head_version_candidate()
    context = {
        "heads": selectors.head_version_list(),
        "active": active,
        "candidate": candidate,
        "compare_rows": selectors.head_version_metric_rows(active=active, candidate=candidate),
        "field_rows": head_version_field_rows(active=active, candidate=candidate),
        "block_comparison": selectors.head_version_block_comparison(active=active, candidate=candidate),
        "current_job": selectors.training_job_current(),
        "recent_jobs": selectors.training_job_list()[:10],
    }
    return render(request, "registry/heads.html", context)


@registry_reader_required
def head_detail(request: HttpRequest, version: int) -> HttpResponse:
    head = get_object_or_404(selectors.head_version_list(), version=version)
    active = selectors.head_version_active()
    labels, confusion_rows = selectors.head_version_confusion_rows(head_version=head)
    block_sweep = selectors.head_version_block_sweep(head_version=head)
    field = head_version_field_metrics(head_version=head)
    compared = None if active is not None and active.pk == head.pk else active
    context = {
        "head": head,
        "method": selectors.head_version_method(head_version=head),
        "active": active,
        "block_sweep": block_sweep,
        "block_chart": _block_sweep_chart(block_sweep, head),
        "compare_rows": selectors.head_version_metric_rows(active=active, candidate=head),
        "field": field,
        "field_rows": head_version_field_rows(active=compared, candidate=head, metrics={head.pk: field}),
        "confusion_labels": labels,
        "confusion_rows": confusion_rows,
        "per_holdout": sorted((head.metrics.get("per_holdout") or {}).items()),
        "manifest_counts": selectors.head_version_manifest_counts(head_version=head),
        "training_job": TrainingJob.objects.filter(head_version=head).first(),
    }
    return render(request, "registry/head_detail.html", context)


@registry_admin_required
@require_http_methods(["GET", "POST"])
def head_activate(request: HttpRequest, version: int) -> HttpResponse:
    """GET: the confirmation page (the metrics beside the active head's, a warning when the head is worse on
    any of them); POST: activate, with the second confirmation where it is worse."""
    head = get_object_or_404(HeadVersion, version=version)
    review = selectors.head_version_activation_review(head_version=head)
    form = ActivationForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            services.head_version_activate_reviewed(
                head_version=head, actor=request.user, confirm_worse=form.cleaned_data["confirm_worse"]
            )
        except services.RegistryError as error:
            form.add_error("confirm_worse", str(error))
        else:
            rollback = review.rollback
            messages.success(request, f"Head v{head.version} is active{' again (rollback)' if rollback else ''}.")
            return redirect("registry:heads")
    compared = None if review.already_active else review.active
    context = {
        "head": head,
        "review": review,
        "form": form,
        "field_rows": head_version_field_rows(active=compared, candidate=head),
    }
    return render(request, "registry/head_activate.html", context, status=400 if form.errors else 200)
