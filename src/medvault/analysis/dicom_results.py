"""Analysis results as standard DICOM objects, stored in their study through ingest.

Each finished analysis becomes

- a **Comprehensive SR** (highdicom) in the study's "MedVault AI: <model>" series (Modality
  SR): the model's name, version and file hash, the label, the ``call`` where the result has
  one, every class probability, a refusal's reason, and references to the analysed image and
  to the heat-map;
- when the model gave a heat-map, a **colour Secondary Capture** of the analysed image with the
  heat-map blended on it, in the study's "MedVault AI: <model> heat-map" series.

Why a blended colour Secondary Capture for the heat-map, and not a Parametric Map or a
fractional Segmentation: every viewer and PACS displays a colour Secondary Capture, including
ones that know nothing of overlays (OHIF 3.13 shows it as a plain series; Parametric Map and
fractional SEG support is uneven across viewers and PACS, and both need the image's geometry,
which PNG-derived images do not have). The heat-map is a coarse class-activation map for
decision support, not a measurement: its exact float values carry nothing a reader needs,
while the picture of where the model looked does. The built-in viewer keeps the interactive
overlay (from the result's own blob).

Both objects go in through ``instance_store`` like every image (``source="analysis"``), into
the study's own group, so QIDO, WADO, C-MOVE, C-GET, export and the visibility rules treat them
as the study's own. Their UIDs are derived from the result (``generate_uid`` with the result's
identity as entropy): storing the same result twice is an ingest "duplicate", never a second
copy; a new analysis (for instance with a new model version) is a new result and so a new SR
beside the earlier ones. Nothing is overwritten.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import Any

from medvault.analysis.models import DISCLAIMER, AnalysisResult
from medvault.archive.models import Instance
from medvault.archive.outcomes import StoreStatus

log = logging.getLogger(__name__)

CODING_SCHEME = "99MEDVAULT"
SR_SERIES_NUMBER = 990
HEATMAP_SERIES_NUMBER = 991
# The call (issue 12) as SNOMED CT concepts.
CALL_CODES = {
    "abnormal": ("263654008", "SCT", "Abnormal"),
    "normal": ("17621005", "SCT", "Normal"),
    "indeterminate": ("82334004", "SCT", "Indeterminate"),
}


@dataclass(frozen=True)
class StoredObjects:
    sr_sop_instance_uid: str
    heatmap_sop_instance_uid: str  # "" when the result has no heat-map


def _code(value: str, meaning: str, scheme: str = CODING_SCHEME) -> Any:
    import highdicom as hd

    return hd.sr.CodedConcept(value=value, scheme_designator=scheme, meaning=meaning[:64])


def _uid(*parts: str) -> str:
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=["medvault-analysis-dicom", *parts]))


def result_call(result: AnalysisResult) -> str:
    """The result's call (abnormal / normal / indeterminate) where the model gives one."""
    call = getattr(result, "call", None) or (result.extra or {}).get("call")
    return str(call or "").strip().lower()


def _identity(result: AnalysisResult) -> list[str]:
    return [result.instance.sop_instance_uid, str(result.pk), result.created_at.isoformat(),
            result.model_name, result.model_version]


def heatmap_capture(*, result: AnalysisResult, ref_dataset: Any, series_uid: str, sop_uid: str,
                    series_number: int, instance_number: int) -> Any:
    """A colour Secondary Capture of the analysed image with the heat-map blended on it."""
    import highdicom as hd

    from medvault.analysis.overlay import composite, display_rgb, png_rgba
    from medvault.analysis.services import _frame_for_display
    from medvault.archive.blobstore import blob_store

    pixels, window = _frame_for_display(ref_dataset)
    heat = png_rgba(blob_store().get(result.heatmap_key))
    burned = composite(display_rgb(pixels, window=window), heat)
    outcome = "refused" if result.refused else (result.label or "")
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=ref_dataset,
        pixel_array=burned,
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        series_instance_uid=series_uid,
        series_number=series_number,
        sop_instance_uid=sop_uid,
        instance_number=instance_number,
        manufacturer="MedVault",
        patient_orientation=("L", "P"),
        transfer_syntax_uid="1.2.840.10008.1.2.1",
    )
    sc.SeriesDescription = f"MedVault AI: {result.model_name} heat-map"[:64]
    sc.ImageComments = (
        f"{result.model_name} {result.model_version}: {outcome}. Class activation heat-map "
        f"blended on the image. Decision support, not a diagnosis."
    )[:10240]
    sc.DerivationDescription = (
        f"Class activation heat-map of {result.model_name} {result.model_version}"[:1024]
    )
    sc.BurnedInAnnotation = "YES"
    sc.Modality = "OT"
    return sc


def _content(result: AnalysisResult, ref_dataset: Any, heatmap: Any | None) -> Any:
    """The SR content tree: one container with the result's items."""
    import highdicom as hd
    from pydicom.sequence import Sequence
    from pydicom.sr.codedict import codes

    contains = hd.sr.RelationshipTypeValues.CONTAINS
    items: list[Any] = [
        hd.sr.TextContentItem(name=_code("111001", "Algorithm Name", "DCM"),
                              value=result.model_name, relationship_type=contains),
        hd.sr.TextContentItem(name=_code("111003", "Algorithm Version", "DCM"),
                              value=result.model_version or "unknown", relationship_type=contains),
    ]
    if result.model_sha256:
        items.append(hd.sr.TextContentItem(name=_code("MODELSHA256", "Model file SHA-256"),
                                           value=result.model_sha256, relationship_type=contains))
    if result.refused:
        items.append(hd.sr.TextContentItem(
            name=_code("REFUSED", "Reason the model refused the image"),
            value=result.reason or "refused", relationship_type=contains))
    if result.label:
        items.append(hd.sr.CodeContentItem(
            name=codes.DCM.Finding, value=_code(result.label, result.label.replace("_", " ")),
            relationship_type=contains))
    call = result_call(result)
    if call:
        value = CALL_CODES.get(call)
        concept = hd.sr.CodedConcept(*value) if value else _code(call, call)
        items.append(hd.sr.CodeContentItem(name=_code("CALL", "Call"), value=concept,
                                           relationship_type=contains))
    unit = hd.sr.CodedConcept(value="1", scheme_designator="UCUM", meaning="no units")
    for label, probability in sorted((result.probabilities or {}).items()):
        items.append(hd.sr.NumContentItem(
            name=_code(f"P-{label}", f"Probability of {label.replace('_', ' ')}"),
            value=float(probability), unit=unit, relationship_type=contains))
    items.append(hd.sr.ImageContentItem(
        name=_code("121112", "Source of Measurement", "DCM"),
        referenced_sop_class_uid=ref_dataset.SOPClassUID,
        referenced_sop_instance_uid=ref_dataset.SOPInstanceUID,
        relationship_type=contains))
    if heatmap is not None:
        items.append(hd.sr.ImageContentItem(
            name=_code("HEATMAP", "Class activation heat-map"),
            referenced_sop_class_uid=heatmap.SOPClassUID,
            referenced_sop_instance_uid=heatmap.SOPInstanceUID,
            relationship_type=contains))
    items.append(hd.sr.TextContentItem(name=_code("121106", "Comment", "DCM"),
                                       value=DISCLAIMER, relationship_type=contains))
    root = hd.sr.ContainerContentItem(name=_code("AIRESULT", "AI analysis result"))
    root.ContentSequence = Sequence(items)
    return root


def analysis_report(*, result: AnalysisResult, ref_dataset: Any, heatmap: Any | None,
                    series_uid: str, sop_uid: str, series_number: int, instance_number: int) -> Any:
    """The Comprehensive SR of ``result``."""
    import highdicom as hd
    from pydicom.dataset import Dataset

    evidence = [ref_dataset] + ([heatmap] if heatmap is not None else [])
    sr = hd.sr.ComprehensiveSR(
        evidence=evidence,
        content=_content(result, ref_dataset, heatmap),
        series_instance_uid=series_uid,
        series_number=series_number,
        sop_instance_uid=sop_uid,
        instance_number=instance_number,
        manufacturer="MedVault",
        is_complete=True,
    )
    sr.SeriesDescription = f"MedVault AI: {result.model_name}"[:64]
    item = Dataset()
    item.CodingSchemeDesignator = CODING_SCHEME
    item.CodingSchemeName = "MedVault analysis codes"
    item.CodingSchemeResponsibleOrganization = "MedVault"
    sr.CodingSchemeIdentificationSequence = [item]
    return sr


def _part10(ds: Any) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def result_dicom_store(*, result: AnalysisResult) -> StoredObjects:
    """Store ``result`` in its study as a Comprehensive SR (and the heat-map as a colour
    Secondary Capture), through ``instance_store``. Idempotent for one result."""
    from medvault.analysis.services import instance_dataset
    from medvault.archive.ingest import instance_store

    instance = result.instance
    study = instance.series.study
    uids = result_dicom_uids(result)
    sr_uid, heatmap_uid = uids.sr_sop_instance_uid, uids.heatmap_sop_instance_uid
    has_heatmap = bool(heatmap_uid)
    stored_uids = set(Instance.objects.filter(sop_instance_uid__in=[sr_uid, heatmap_uid])
                      .values_list("sop_instance_uid", flat=True))
    if sr_uid in stored_uids:  # stored before (a retry): nothing to do, nothing to overwrite
        return uids
    ref_dataset = instance_dataset(instance)
    owner = result.requested_by
    heatmap = None
    if has_heatmap and heatmap_uid in stored_uids:
        heatmap = instance_dataset(Instance.objects.get(sop_instance_uid=heatmap_uid))
    elif has_heatmap:
        heatmap = heatmap_capture(
            result=result, ref_dataset=ref_dataset,
            series_uid=_uid("heatmap-series", study.study_instance_uid, result.model_name),
            sop_uid=heatmap_uid, series_number=HEATMAP_SERIES_NUMBER, instance_number=result.pk,
        )
        stored = instance_store(data=_part10(heatmap), source="analysis", user=owner,
                                group=study.group)
        if stored.status not in (StoreStatus.STORED, StoreStatus.DUPLICATE):
            raise RuntimeError(
                f"the heat-map of result {result.pk} was not stored: {stored.reason}")
    sr = analysis_report(
        result=result, ref_dataset=ref_dataset, heatmap=heatmap,
        series_uid=_uid("sr-series", study.study_instance_uid, result.model_name),
        sop_uid=sr_uid, series_number=SR_SERIES_NUMBER, instance_number=result.pk,
    )
    stored = instance_store(data=_part10(sr), source="analysis", user=owner, group=study.group)
    if stored.status not in (StoreStatus.STORED, StoreStatus.DUPLICATE):
        raise RuntimeError(f"the report of result {result.pk} was not stored: {stored.reason}")
    return uids


def result_dicom_uids(result: AnalysisResult) -> StoredObjects:
    """The SOP Instance UIDs the result's report and heat-map have (or will have): derived
    from the result, so nothing needs to be stored to find them."""
    identity = _identity(result)
    has_heatmap = bool(result.heatmap_key) and not result.refused
    return StoredObjects(_uid("sr", *identity), _uid("heatmap", *identity) if has_heatmap else "")


def result_dicom_store_logged(*, result: AnalysisResult) -> StoredObjects | None:
    """``result_dicom_store`` for the worker: the result record stands even when its DICOM
    copy cannot be stored (logged with the reason)."""
    try:
        return result_dicom_store(result=result)
    except Exception:  # the analysis is done and recorded; the DICOM copy is an extra
        log.exception("could not store analysis result %s as DICOM", result.pk)
        return None
