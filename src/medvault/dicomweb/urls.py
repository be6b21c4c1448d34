"""DICOMweb (PS3.18) under /dicomweb/: QIDO-RS, WADO-RS, STOW-RS and WADO-URI."""

from django.urls import path

from medvault.dicomweb import views
from medvault.dicomweb.views import with_options as o

app_name = "dicomweb"

_S = "studies/<str:study>"
_SE = _S + "/series/<str:series>"
_I = _SE + "/instances/<str:instance>"

# Every resource answers OPTIONS with its methods (``with_options``).
urlpatterns = [
    path("studies", o(views.studies, "GET POST"), name="studies"),
    path("series", o(views.all_series, "GET"), name="series"),
    path("instances", o(views.all_instances, "GET"), name="instances"),
    path("wado", o(views.wado_uri, "GET"), name="wado-uri"),
    path(_S, o(views.study, "GET POST"), name="study"),
    path(_S + "/metadata", o(views.study_metadata, "GET"), name="study-metadata"),
    path(_S + "/rendered", o(views.study_rendered, "GET"), name="study-rendered"),
    path(_S + "/thumbnail", o(views.study_thumbnail, "GET"), name="study-thumbnail"),
    path(_S + "/series", o(views.study_series, "GET"), name="study-series"),
    path(_S + "/instances", o(views.study_instances, "GET"), name="study-instances"),
    path(_SE, o(views.retrieve_series, "GET"), name="series-retrieve"),
    path(_SE + "/metadata", o(views.series_metadata, "GET"), name="series-metadata"),
    path(_SE + "/rendered", o(views.series_rendered, "GET"), name="series-rendered"),
    path(_SE + "/thumbnail", o(views.series_thumbnail, "GET"), name="series-thumbnail"),
    path(_SE + "/instances", o(views.series_instances, "GET"), name="series-instances"),
    path(_I, o(views.retrieve_instance, "GET"), name="instance-retrieve"),
    path(_I + "/metadata", o(views.instance_metadata, "GET"), name="instance-metadata"),
    path(_I + "/rendered", o(views.instance_rendered, "GET"), name="instance-rendered"),
    path(_I + "/thumbnail", o(views.instance_thumbnail, "GET"), name="instance-thumbnail"),
    path(_I + "/frames/<str:frames>", o(views.frames, "GET"), name="frames"),
    path(_I + "/frames/<str:frames>/rendered", o(views.frame_rendered, "GET"), name="frame-rendered"),
    path(_I + "/bulkdata/<str:tag>", o(views.bulkdata, "GET"), name="bulkdata"),
]
