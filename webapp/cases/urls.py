from django.urls import path

from webapp.cases import views

app_name = "cases"

urlpatterns = [
    path("", views.case_list_view, name="list"),
    path("new/", views.case_create_view, name="create"),
    path("<int:pk>/edit/", views.case_edit_view, name="edit"),
]
