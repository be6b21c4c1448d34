"""QIDO-RS and C-FIND answer the same keys with the same rows: both search through the archive's
one query service (``archive.query.search.rows_matching``).

Each case sends one matching key through both doors (an HTTP query parameter, a C-FIND
identifier element) and checks that the same studies or instances come back, and that they
are the ones expected, so that two empty answers cannot pass. A study of another group with
matching values must stay out of both.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from pydicom.dataset import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "accounts"))

from mvfixtures import PASSWORD, make_study, make_user  # noqa: E402

from medvault.archive.query.attributes import BY_KEYWORD, Level  # noqa: E402
from medvault.archive.query.search import rows_matching  # noqa: E402
from medvault.dimse import handlers  # noqa: E402
from medvault.dimse.models import RemoteAE  # noqa: E402
from medvault.dimse.status import Status  # noqa: E402

STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"


class FindEvent:
    """What ``handle_find`` reads from a pynetdicom C-FIND event."""

    def __init__(self, title: str, identifier: Dataset) -> None:
        requestor = SimpleNamespace(ae_title=title, address="127.0.0.1", port=40000)
        self.assoc = SimpleNamespace(requestor=requestor, acceptor=SimpleNamespace(ae_title="MEDVAULT"))
        self.identifier = identifier
        self.request = SimpleNamespace(AffectedSOPClassUID=STUDY_ROOT_FIND)
        self.is_cancelled = False


@pytest.fixture
def archive(db: Any) -> SimpleNamespace:
    """Studies of group A, seen by a clinician and an AE of A; one look-alike in group B."""
    group_a = Group.objects.create(name="parity-a")
    group_b = Group.objects.create(name="parity-b")
    user = make_user("parity", "clinician", [group_a])
    RemoteAE.objects.create(ae_title="PARITY", host="127.0.0.1", port=104, group=group_a)
    studies = {
        "jane": make_study(group_a, patient_id="P-11", patient_name="Doe^Jane", modality="CT",
                           description="Head CT", accession="ACC_1", study_date="2024-01-15"),
        "john": make_study(group_a, patient_id="P-21", patient_name="Doe^John", modality="MR",
                           description="Knee MR", accession="ACCX1", study_date="2024-03-01"),
        "jan": make_study(group_a, patient_id="Q-31", patient_name="Smith^Jan^Peter", modality="CT",
                          description="Chest [low dose]", accession="B-7", study_date="2024-07-30"),
        "mary": make_study(group_a, patient_id="P-12", patient_name="JANSSEN^MARY", modality="US",
                           description="Abdomen", accession="C%9", study_date="2023-12-31"),
        # Another group's study that every key below would match: neither door may show it.
        "other": make_study(group_b, patient_id="P-19", patient_name="Doe^Jane", modality="MR",
                            description="Head CT", accession="ACC_1", study_date="2024-03-01"),
    }
    client = Client()
    assert client.login(username="parity", password=PASSWORD)
    return SimpleNamespace(user=user, studies=studies, client=client)


def _uid(archive: SimpleNamespace, name: str, level: Level) -> str:
    study = archive.studies[name]
    if level is Level.STUDY:
        return str(study.study_instance_uid)
    return str(study.series.get().instances.get().sop_instance_uid)


def _qido(archive: SimpleNamespace, level: Level, keyword: str, value: str, fuzzy: bool = False) -> set[str]:
    path, tag = ("studies", "0020000D") if level is Level.STUDY else ("instances", "00080018")
    params = {keyword: value, **({"fuzzymatching": "true"} if fuzzy else {})}
    response = archive.client.get(f"/dicomweb/{path}", params, HTTP_ACCEPT="application/dicom+json")
    assert response.status_code == 200, response.content[:300]
    return {item[tag]["Value"][0] for item in response.json()}


def _c_find(level: Level, keyword: str, value: str) -> set[str]:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = level.value
    identifier.StudyInstanceUID = ""
    if level is Level.IMAGE:
        identifier.SOPInstanceUID = ""
    setattr(identifier, keyword, value)
    out = list(handlers.handle_find(FindEvent("PARITY", identifier)))
    assert out[-1] == (int(Status.SUCCESS), None), out[-1]
    uid_keyword = "StudyInstanceUID" if level is Level.STUDY else "SOPInstanceUID"
    return {str(getattr(ds, uid_keyword)) for status, ds in out[:-1] if status == Status.PENDING}


CASES = [
    # (level, keyword, value, names of the studies that match)
    (Level.STUDY, "PatientName", "Doe^J*", {"jane", "john"}),
    (Level.STUDY, "PatientName", "*jan*", {"jane", "jan", "mary"}),  # person names ignore case
    (Level.STUDY, "PatientName", "doe^jane", {"jane"}),
    (Level.STUDY, "PatientID", "P-?1", {"jane", "john"}),
    (Level.STUDY, "AccessionNumber", "ACC_*", {"jane"}),  # "_" is a character, not LIKE's any-one
    (Level.STUDY, "AccessionNumber", "C%*", {"mary"}),  # so is "%"
    (Level.STUDY, "AccessionNumber", "acc*", set()),  # case-sensitive outside person names
    (Level.STUDY, "StudyDescription", "*[low*", {"jan"}),
    (Level.STUDY, "StudyDate", "20240101-20240630", {"jane", "john"}),
    (Level.STUDY, "StudyDate", "-20240115", {"jane", "mary"}),
    (Level.STUDY, "StudyDate", "20240301-", {"john", "jan"}),
    (Level.STUDY, "StudyDate", "20240301", {"john"}),
    (Level.STUDY, "ModalitiesInStudy", "MR", {"john"}),
    (Level.STUDY, "ModalitiesInStudy", "C?", {"jane", "jan"}),
    (Level.STUDY, "StudyInstanceUID", "{jane}\\{mary}\\{other}", {"jane", "mary"}),
    (Level.IMAGE, "PatientName", "Doe^*", {"jane", "john"}),
    (Level.IMAGE, "StudyDate", "20231201-20240131", {"jane", "mary"}),
    (Level.IMAGE, "SOPInstanceUID", "{john}\\{jan}\\{other}", {"john", "jan"}),
]


@pytest.mark.parametrize(("level", "keyword", "value", "expected"), CASES,
                         ids=[f"{c[0].value}-{c[1]}-{c[2]}" for c in CASES])
def test_qido_and_c_find_return_the_same_rows(
    archive: SimpleNamespace, level: Level, keyword: str, value: str, expected: set[str]
) -> None:
    if "{" in value:  # a list of UIDs, named by study
        value = value.format(**{name: _uid(archive, name, level) for name in archive.studies})
    want = {_uid(archive, name, level) for name in expected}
    assert _qido(archive, level, keyword, value) == want
    assert _c_find(level, keyword, value) == want


@pytest.mark.parametrize(("value", "expected"), [("jan", {"jane", "jan", "mary"}), ("pet smi", {"jan"})])
def test_fuzzy_person_names_through_the_one_search(
    archive: SimpleNamespace, value: str, expected: set[str]
) -> None:
    """QIDO-RS ``fuzzymatching=true`` is the one search with ``fuzzy``; C-FIND has no fuzzy
    matching, so it answers the same key as QIDO-RS without it."""
    want = {_uid(archive, name, Level.STUDY) for name in expected}
    assert _qido(archive, Level.STUDY, "PatientName", value, fuzzy=True) == want
    rows = rows_matching(principal=archive.user, level=Level.STUDY,
                         keys=[(BY_KEYWORD["PatientName"], value)], fuzzy=True)
    assert {s.study_instance_uid for s in rows} == want
    assert _c_find(Level.STUDY, "PatientName", value) == _qido(archive, Level.STUDY, "PatientName", value)
