from django.urls import path

from webapp.reports import api, views

app_name = "reports"

urlpatterns = [
    path("cases/<int:case_id>.html", views.case_html, name="case_html"),
    path("cases/<int:case_id>.pdf", views.case_pdf, name="case_pdf"),
]

api_urlpatterns = [
    path("cases/<int:case_id>/report.pdf", api.CaseReportPdfApi.as_view(), name="api-case-report-pdf"),
]
