from django.urls import path

from webapp.reports import api, views

app_name = "reports"

urlpatterns = [
    path("cases/<int:case_id>.html", views.case_html, name="case_html"),
    path("cases/<int:case_id>.pdf", views.case_pdf, name="case_pdf"),
    path("submissions/export/", views.selection_export_view, name="selection_export"),
]

# The case's own pages that read its submissions; the root URLconf serves them in the `cases` namespace,
# beside the case list and forms of `webapp.cases.urls`.
case_urlpatterns = [
    path("<int:pk>/", views.case_detail_view, name="detail"),
    path("<int:pk>/export/<str:export_format>/", views.case_export_view, name="export"),
    path("add-submissions/", views.case_add_submissions_view, name="add_submissions"),
]

api_urlpatterns = [
    path("cases/", api.CaseListCreateApi.as_view(), name="api-case-list"),
    path("cases/<int:pk>/", api.CaseDetailApi.as_view(), name="api-case-detail"),
    path("cases/<int:pk>/submissions/", api.CaseSubmissionsAddApi.as_view(), name="api-case-submissions"),
    path("cases/<int:case_id>/report.pdf", api.CaseReportPdfApi.as_view(), name="api-case-report-pdf"),
]
