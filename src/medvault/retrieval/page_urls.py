"""Page routes (mounted under ``similar/``)."""

from django.urls import path

from medvault.retrieval import views

app_name = "retrieval_pages"
urlpatterns = [
    path("<str:sop_instance_uid>/", views.similar_page, name="similar"),
    path("<str:sop_instance_uid>/compare/<str:other_uid>/", views.compare_page, name="compare"),
]
