"""Issue 13, finding 5: wildcard matching is an escaped SQL GLOB/LIKE pattern, never a
backtracking regex, and patterns are capped in length (QIDO-RS, C-FIND, the studies page).

The pathological pattern below took 25-180 s against a long name as a regex. Each test checks
the SQL that would run *before* running it, so a regression fails on the assertion instead of
hanging the suite.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from django.test import Client

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "accounts"))

from mvfixtures import PASSWORD, make_study, make_user  # noqa: E402

from medvault.archive.query.attributes import BY_KEYWORD, Level  # noqa: E402
from medvault.archive.query.matching import QueryError  # noqa: E402
from medvault.archive.query.search import rows_matching  # noqa: E402
from medvault.archive.query.wildcard import MAX_PATTERN_LENGTH, glob_pattern, like_pattern  # noqa: E402

EVIL = "*a" * 20 + "*b"  # 41 characters; against "a" * 64 a regex backtracks for hours
LONG_NAME = "A" * 64


def _sql(qs) -> str:
    sql, params = qs.query.sql_with_params()
    return sql.upper()


def _no_regex(sql: str) -> None:
    assert "REGEXP" not in sql and " ~ " not in sql and "~*" not in sql, sql
    assert " GLOB " in sql or " LIKE " in sql, sql


def _attribute(keyword: str):
    return BY_KEYWORD[keyword]


def _studies(user, keyword: str, pattern: str, *, fuzzy: bool = False):
    return rows_matching(principal=user, level=Level.STUDY, keys=[(_attribute(keyword), pattern)], fuzzy=fuzzy)


def test_patterns_escape_what_sql_would_read_as_wildcards():
    assert like_pattern("A_1%*?\\") == "A\\_1\\%%_\\\\"
    assert like_pattern("**A***B*") == "%A%B%"
    assert glob_pattern("[x]*?") == "[[]x]*?"
    with pytest.raises(ValueError):
        like_pattern("*" + "a" * MAX_PATTERN_LENGTH)


@pytest.fixture
def evil_studies(db):
    from django.contrib.auth.models import Group

    group = Group.objects.create(name="wild-a")
    user = make_user("wild", "clinician", [group])
    long_one = make_study(group, uploaded_by=user, patient_id="W-LONG", patient_name=LONG_NAME,
                          accession="a" * 16, description="a" * 60)
    match = make_study(group, uploaded_by=user, patient_id="W-MATCH", patient_name="A" * 30 + "B",
                       accession="ACC_1", description="Chest")
    other = make_study(group, uploaded_by=user, patient_id="W-OTHER", patient_name="Doe^Jane",
                       accession="ACCX1", description="Head [scan]")
    return user, long_one, match, other


@pytest.mark.django_db
def test_query_layer_builds_glob_or_like_for_the_pathological_pattern(evil_studies):
    """The C-FIND handler and QIDO-RS both search through ``rows_matching``."""
    user, _, match, _ = evil_studies
    qs = _studies(user, "PatientName", EVIL)
    _no_regex(_sql(qs))
    assert [s.pk for s in qs] == [match.pk]
    fuzzy = _studies(user, "PatientName", "jan", fuzzy=True)
    _no_regex(_sql(fuzzy))
    assert [s.patient.patient_id for s in fuzzy] == ["W-OTHER"]


@pytest.mark.django_db
def test_wildcards_are_literal_where_sql_has_its_own(evil_studies):
    user = evil_studies[0]

    def accessions(pattern: str) -> list[str]:
        return sorted(s.accession_number for s in _studies(user, "AccessionNumber", pattern))

    assert accessions("ACC_*") == ["ACC_1"]        # "_" is a character, not LIKE's any-one
    assert accessions("ACC?1") == ["ACCX1", "ACC_1"]
    assert accessions("acc*") == []                # case-sensitive outside person names
    assert accessions("*%*") == []                 # "%" is a character, not LIKE's any-run
    descriptions = _studies(user, "StudyDescription", "Head [*")
    assert [s.study_description for s in descriptions] == ["Head [scan]"]


@pytest.mark.django_db
def test_overlong_pattern_is_a_query_error(evil_studies):
    with pytest.raises(QueryError):
        _studies(evil_studies[0], "PatientName", "*" + "a" * MAX_PATTERN_LENGTH)


@pytest.mark.django_db
def test_qido_pathological_pattern_answers_and_overlong_is_400(evil_studies):
    # What QIDO-RS will run, checked first: a regex here would hang the request below.
    _no_regex(_sql(_studies(evil_studies[0], "PatientName", EVIL)))
    client = Client()
    assert client.login(username="wild", password=PASSWORD)
    response = client.get("/dicomweb/studies", {"PatientName": EVIL}, HTTP_ACCEPT="application/dicom+json")
    assert response.status_code == 200, response.content[:300]
    names = [item["00100010"]["Value"][0]["Alphabetic"] for item in response.json()]
    assert names == ["A" * 30 + "B"]
    too_long = client.get("/dicomweb/studies", {"PatientName": "*" + "a" * 200})
    assert too_long.status_code == 400
    assert str(MAX_PATTERN_LENGTH) in too_long.content.decode()


@pytest.mark.django_db
def test_studies_page_uses_no_regex_and_answers(evil_studies):
    from medvault.ui.selectors import StudyQuery, study_search

    user, _, match, _ = evil_studies
    qs = study_search(user=user, query=StudyQuery(patient_name=EVIL.lower()))
    _no_regex(_sql(qs))
    assert [s.pk for s in qs] == [match.pk]
    spaced = study_search(user=user, query=StudyQuery(patient_name="doe ja*"))
    assert [s.patient.patient_id for s in spaced] == ["W-OTHER"]
    client = Client()
    assert client.login(username="wild", password=PASSWORD)
    page = client.get("/studies/", {"patient_name": EVIL})
    assert page.status_code == 200
    overlong = client.get("/studies/", {"patient_name": "*" + "a" * 200})
    assert overlong.status_code == 200 and "at most" in overlong.content.decode()
