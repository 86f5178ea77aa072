from django.urls import path

from webapp.audit import views

app_name = "audit"

urlpatterns = [path("", views.events, name="events")]

api_urlpatterns: list = []
