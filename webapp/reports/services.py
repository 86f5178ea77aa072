"""Case reports as a standalone HTML document and as a PDF made from it with WeasyPrint."""

from __future__ import annotations

from typing import Literal, TypeAlias

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.template.loader import render_to_string

from webapp.audit.services import audit_record
from webapp.cases.models import Case
from webapp.reports.selectors import case_report_context

ReportFormat = Literal["html", "pdf"]
User: TypeAlias = AbstractBaseUser | AnonymousUser


def html_to_pdf(html: str) -> bytes:
    """Lay out an HTML document as a PDF without fetching anything: the report embeds its images
    as data: URIs, and a reference to a file or a server (an intranet address, /etc/passwd) is refused."""
    from weasyprint import HTML, URLFetcher  # heavy import, only when a PDF is made

    return bytes(HTML(string=html, url_fetcher=URLFetcher(allowed_protocols=("data",))).write_pdf())


def case_report_html(*, case: Case, generated_by: User | None = None) -> str:
    context = case_report_context(case=case, generated_by=generated_by)
    return render_to_string("reports/case_report.html", context)


def case_report_pdf(*, case: Case, generated_by: User | None = None) -> bytes:
    return html_to_pdf(case_report_html(case=case, generated_by=generated_by))


def case_report_export(*, case: Case, actor: User, report_format: ReportFormat) -> bytes:
    """The report in one format, recorded in the audit log as an export by `actor`."""
    if report_format == "pdf":
        report = case_report_pdf(case=case, generated_by=actor)
    else:
        report = case_report_html(case=case, generated_by=actor).encode("utf-8")
    audit_record(actor=actor, action="export", team=case.team, target=case,
                 detail={"report": report_format, "bytes": len(report)})
    return report
