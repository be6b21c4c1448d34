"""DICOMweb (PS3.18) under /dicomweb/: QIDO-RS, WADO-RS, STOW-RS and WADO-URI."""

from django.urls import path

from medvault.dicomweb.views import qido, rendered, resources, wado, wado_uri
from medvault.dicomweb.views.base import with_options as o

app_name = "dicomweb"

_S = "studies/<str:study>"
_SE = _S + "/series/<str:series>"
_I = _SE + "/instances/<str:instance>"

# Every resource answers OPTIONS with its methods (``with_options``).
urlpatterns = [
    path("studies", o(resources.studies, "GET POST"), name="studies"),
    path("series", o(qido.all_series, "GET"), name="series"),
    path("instances", o(qido.all_instances, "GET"), name="instances"),
    path("wado", o(wado_uri.wado_uri, "GET"), name="wado-uri"),
    path(_S, o(resources.study, "GET POST"), name="study"),
    path(_S + "/metadata", o(wado.study_metadata, "GET"), name="study-metadata"),
    path(_S + "/rendered", o(rendered.study_rendered, "GET"), name="study-rendered"),
    path(_S + "/thumbnail", o(rendered.study_thumbnail, "GET"), name="study-thumbnail"),
    path(_S + "/series", o(qido.study_series, "GET"), name="study-series"),
    path(_S + "/instances", o(qido.study_instances, "GET"), name="study-instances"),
    path(_SE, o(wado.retrieve_series, "GET"), name="series-retrieve"),
    path(_SE + "/metadata", o(wado.series_metadata, "GET"), name="series-metadata"),
    path(_SE + "/rendered", o(rendered.series_rendered, "GET"), name="series-rendered"),
    path(_SE + "/thumbnail", o(rendered.series_thumbnail, "GET"), name="series-thumbnail"),
    path(_SE + "/instances", o(qido.series_instances, "GET"), name="series-instances"),
    path(_I, o(wado.retrieve_instance, "GET"), name="instance-retrieve"),
    path(_I + "/metadata", o(wado.instance_metadata, "GET"), name="instance-metadata"),
    path(_I + "/rendered", o(rendered.instance_rendered, "GET"), name="instance-rendered"),
    path(_I + "/thumbnail", o(rendered.instance_thumbnail, "GET"), name="instance-thumbnail"),
    path(_I + "/frames/<str:frames>", o(wado.frames, "GET"), name="frames"),
    path(_I + "/frames/<str:frames>/rendered", o(rendered.frame_rendered, "GET"), name="frame-rendered"),
    path(_I + "/bulkdata/<str:tag>", o(wado.bulkdata, "GET"), name="bulkdata"),
]
