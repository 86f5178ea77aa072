from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from webapp.accounts import views as accounts_views
from webapp.audit import urls as audit_urls
from webapp.cases import urls as cases_urls
from webapp.core import urls as core_urls
from webapp.feedback import urls as feedback_urls
from webapp.registry import urls as registry_urls
from webapp.reports import urls as reports_urls
from webapp.submissions import urls as submissions_urls
from webapp.teams import views as teams_views

api_v1 = [
    *submissions_urls.api_urlpatterns,
    *registry_urls.api_urlpatterns,
    *core_urls.api_urlpatterns,
    *reports_urls.api_urlpatterns,
    *feedback_urls.api_urlpatterns,
]

urlpatterns = [
    # Where "/" and the login form lead: the team's history, the registry (staff without a team), or a page
    # that says the user belongs to no team.
    path("", teams_views.home, name="home"),
    path("", include(core_urls)),
    # A case's list and forms (webapp.cases) and its pages that read its submissions (webapp.reports), in one
    # namespace: the apps are layered (docs/architecture.md), the URLs are not.
    path("cases/", include((cases_urls.urlpatterns + reports_urls.case_urlpatterns, "cases"))),
    path("submissions/", include(submissions_urls)),
    # The registry's pages, and those of head versions that show field accuracy (webapp.feedback), in one
    # namespace, as for the cases above.
    path("registry/", include((registry_urls.urlpatterns + feedback_urls.registry_urlpatterns, "registry"))),
    path("feedback/", include(feedback_urls)),
    path("audit/", include(audit_urls)),
    path("reports/", include(reports_urls)),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # Swagger UI and ReDoc from static files (drf-spectacular-sidecar); the split view serves Swagger UI's
    # start-up script as a file too, so the Content-Security-Policy needs no inline script.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("accounts/tokens/", accounts_views.tokens, name="account-tokens"),
    path("django-admin/", admin.site.urls),
]

# JSON error bodies under /api/, the site's own pages (templates/403.html, 404.html) elsewhere.
handler400 = "webapp.core.views.bad_request"
handler403 = "webapp.core.views.permission_denied"
handler404 = "webapp.core.views.page_not_found"
handler500 = "webapp.core.views.server_error"
