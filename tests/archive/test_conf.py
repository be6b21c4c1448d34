"""The archive's settings are read through archive.conf, and a door's choice is a parameter."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from pydicom.data import get_testdata_file

from medvault.archive import conf
from medvault.archive.ingest import instance_store
from medvault.archive.models import CompressionTask
from medvault.web import settings as web_settings

JPEG_LS = "1.2.840.10008.1.2.4.80"

pytestmark = pytest.mark.django_db


def test_the_defaults_are_those_of_web_settings(settings) -> None:
    settings.MEDVAULT_COMPRESSION = web_settings.MEDVAULT_COMPRESSION
    settings.MEDVAULT_COMPRESSION_DEFERRED = web_settings.MEDVAULT_COMPRESSION_DEFERRED
    assert conf.compression_codec() == web_settings.MEDVAULT_COMPRESSION.lower()
    assert conf.compression_deferred() is web_settings.MEDVAULT_COMPRESSION_DEFERRED
    assert conf.structure_limits() == (web_settings.MEDVAULT_DICOM_MAX_DEPTH, web_settings.MEDVAULT_DICOM_MAX_ELEMENTS)


def test_an_unknown_codec_is_a_configuration_error(settings) -> None:
    settings.MEDVAULT_COMPRESSION = "gif"
    with pytest.raises(ImproperlyConfigured, match="MEDVAULT_COMPRESSION"):
        conf.compression_codec()


def test_defer_compression_overrides_the_setting_for_one_call(blob_dir, settings) -> None:
    data = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    settings.MEDVAULT_COMPRESSION = "jpegls"
    settings.MEDVAULT_COMPRESSION_DEFERRED = True
    inline = instance_store(data=data, source="test", defer_compression=False)
    assert inline.instance is not None and inline.instance.transfer_syntax_uid == JPEG_LS
    assert not CompressionTask.objects.exists()
    assert settings.MEDVAULT_COMPRESSION_DEFERRED is True

    settings.MEDVAULT_COMPRESSION_DEFERRED = False
    mr = Path(get_testdata_file("MR_small.dcm")).read_bytes()
    later = instance_store(data=mr, source="test", defer_compression=True)
    assert later.instance is not None and later.instance.transfer_syntax_uid != JPEG_LS
    assert CompressionTask.objects.filter(instance=later.instance).exists()
