"""DICOMweb (PS3.18) under /dicomweb/: QIDO-RS, WADO-RS, STOW-RS and WADO-URI."""

from django.urls import path

from medvault.dicomweb import views

app_name = "dicomweb"

_S = "studies/<str:study>"
_SE = _S + "/series/<str:series>"
_I = _SE + "/instances/<str:instance>"

urlpatterns = [
    path("studies", views.studies, name="studies"),
    path("series", views.all_series, name="series"),
    path("instances", views.all_instances, name="instances"),
    path("wado", views.wado_uri, name="wado-uri"),
    path(_S, views.study, name="study"),
    path(_S + "/metadata", views.study_metadata, name="study-metadata"),
    path(_S + "/thumbnail", views.study_thumbnail, name="study-thumbnail"),
    path(_S + "/series", views.study_series, name="study-series"),
    path(_S + "/instances", views.study_instances, name="study-instances"),
    path(_SE, views.retrieve_series, name="series-retrieve"),
    path(_SE + "/metadata", views.series_metadata, name="series-metadata"),
    path(_SE + "/thumbnail", views.series_thumbnail, name="series-thumbnail"),
    path(_SE + "/instances", views.series_instances, name="series-instances"),
    path(_I, views.retrieve_instance, name="instance-retrieve"),
    path(_I + "/metadata", views.instance_metadata, name="instance-metadata"),
    path(_I + "/rendered", views.instance_rendered, name="instance-rendered"),
    path(_I + "/thumbnail", views.instance_thumbnail, name="instance-thumbnail"),
    path(_I + "/frames/<str:frames>", views.frames, name="frames"),
    path(_I + "/frames/<str:frames>/rendered", views.frame_rendered, name="frame-rendered"),
    path(_I + "/bulkdata/<str:tag>", views.bulkdata, name="bulkdata"),
]
