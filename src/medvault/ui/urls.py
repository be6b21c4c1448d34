from django.urls import path

from medvault.ui import ohif, viewer, views

app_name = "ui"
urlpatterns = [
    path("", views.home, name="home"),
    path("upload/", views.upload, name="upload"),
    path("upload/file", views.upload_file, name="upload_file"),
    path("studies/", views.studies, name="studies"),
    path("studies/<str:study_uid>/", views.study_detail, name="study"),
    path("studies/<str:study_uid>/share", views.share_create, name="share_create"),
    path("shares/<int:share_id>/revoke", views.share_revoke, name="share_revoke"),
    path("series/<str:series_uid>/thumbnail.png", views.series_thumbnail, name="thumbnail"),
    path("instances/<str:sop_uid>/download", views.instance_download, name="download"),
    path("viewer/<str:study_uid>/", viewer.viewer, name="viewer"),
    path("frames/<str:sop_uid>/<int:frame>.png", viewer.frame_png, name="frame"),
    path("frames/<str:sop_uid>/<int:frame>.pixels", viewer.frame_pixels, name="frame_pixels"),
    path("frames/<str:sop_uid>/info", viewer.frame_info, name="frame_info"),
    path("history/", views.history, name="history"),
    path("models/<str:model_name>/", views.model_card, name="model_card"),
    path("ohif/", ohif.ohif, name="ohif"),
    path("ohif/<path:path>", ohif.ohif, name="ohif_path"),
]
