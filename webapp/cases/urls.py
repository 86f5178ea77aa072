from django.urls import path

from webapp.cases import api, views

app_name = "cases"

urlpatterns = [
    path("", views.case_list_view, name="list"),
    path("new/", views.case_create_view, name="create"),
    path("<int:pk>/", views.case_detail_view, name="detail"),
    path("<int:pk>/edit/", views.case_edit_view, name="edit"),
    path("<int:pk>/export/<str:export_format>/", views.case_export_view, name="export"),
]

# Included under /api/v1/ without a namespace: the names say which app they belong to.
api_urlpatterns = [
    path("cases/", api.CaseListCreateApi.as_view(), name="api-case-list"),
    path("cases/<int:pk>/", api.CaseDetailApi.as_view(), name="api-case-detail"),
]
