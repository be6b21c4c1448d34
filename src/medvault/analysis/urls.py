"""Analysis JSON API, mounted under ``/api/v1/``."""

from django.urls import path

from medvault.analysis import views

app_name = "analysis"
urlpatterns = [
    path("analyses", views.analyses, name="analyses"),
    path("analyses/<int:result_id>", views.analysis_detail, name="detail"),
    path("analyses/<int:result_id>/heatmap.png", views.analysis_heatmap, name="heatmap"),
    path("analyses/<int:result_id>/export", views.analysis_export, name="export"),
    path("models/<str:model_name>", views.model_card, name="model_card"),
]
