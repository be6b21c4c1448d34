"""API routes (mounted under ``api/v1/``)."""

from django.urls import path

from medvault.retrieval import views

app_name = "retrieval"
urlpatterns = [
    path("similar", views.similar_api, name="similar"),
    path("similar/<str:sop_instance_uid>/thumbnail.png", views.thumbnail, name="thumbnail"),
]
