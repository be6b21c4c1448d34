"""Every URL pattern of the project (all apps, including ones added later) is enumerated:

* unauthenticated: pages redirect to the login page, APIs (/api/, /dicomweb/) answer 401;
* a user of group A asking for a group-B study, series or instance by UID gets 404, never data.

A new public endpoint must be added to PUBLIC deliberately.
"""

from __future__ import annotations

import re

import pytest
from django.test import Client
from mvfixtures import PASSWORD
from urlenum import API_PREFIXES, PUBLIC, UID_PARAMS, _build, endpoints, uid_values


def _is_login_redirect(response) -> bool:
    return response.status_code in (301, 302) and "login" in response.get("Location", "")


def test_every_url_pattern_is_enumerated():
    names = {e.name for e in endpoints()}
    # The enumeration sees every app, not just this one.
    assert {"ui:studies", "accounts:audit", "admin:index"} <= names
    assert len(names) > 25


@pytest.mark.django_db
def test_unauthenticated_requests_are_refused_everywhere():
    client = Client()
    failures, checked = [], 0
    for endpoint in endpoints():
        if endpoint.name in PUBLIC:
            continue
        path = _build(endpoint, {})
        if path is None:
            failures.append(f"{endpoint.name or endpoint.regex}: could not build a URL to test")
            continue
        checked += 1
        responses = [client.get(path)]
        if responses[0].status_code == 405:
            responses.append(client.post(path))
        final = responses[-1]
        if path.startswith(API_PREFIXES):
            ok = final.status_code == 401 and "WWW-Authenticate" in final
        else:
            ok = _is_login_redirect(final)
        if not ok:
            failures.append(f"{path} ({endpoint.name}): {final.status_code} {final.get('Location', '')}")
    assert checked > 20
    assert not failures, "\n".join(failures)



@pytest.mark.django_db
def test_group_a_user_gets_404_for_group_b_objects(blob_dir, group_a, group_b, clinician_a, clinician_b):
    from mvfixtures import sample_bytes

    from medvault.archive.uploads import upload_store

    [stored] = upload_store(name="ct.dcm", data=sample_bytes(), source="test", user=clinician_b, group=group_b)
    assert stored.status == "stored"
    instance = stored.instance
    series = instance.series
    study = series.study
    patient_name = study.patient.patient_name.split("^")[0]
    client = Client()
    assert client.login(username=clinician_a.username, password=PASSWORD)
    failures, checked = [], 0
    for endpoint in endpoints():
        params = re.findall(r"\?P<(\w+)>", endpoint.regex)
        if endpoint.name in PUBLIC or not any(UID_PARAMS.search(p) for p in params):
            continue
        values = uid_values(endpoint, study)
        path = _build(endpoint, values)
        if path is None:
            failures.append(f"{endpoint.name}: could not build a URL")
            continue
        checked += 1
        response = client.get(path)
        if response.status_code == 405:
            response = client.post(path)
            ok = response.status_code in (403, 404)
        else:
            ok = response.status_code == 404
        body = b"".join(response.streaming_content) if response.streaming else response.content
        if (
            not ok
            or patient_name.encode() in body
            or instance.sop_instance_uid.encode() in body
            and response.status_code == 200
        ):
            failures.append(f"{path} ({endpoint.name}): {response.status_code}")
    assert checked >= 8
    assert not failures, "\n".join(failures)


@pytest.mark.django_db
def test_researcher_sees_no_identifiers_at_any_url(blob_dir, group_a, clinician_a, researcher_a):
    """Every URL of every app, given the UIDs of a study the researcher may see, answers
    without the patient's name, ID, birth date or accession number."""
    from mvfixtures import sample_bytes

    from medvault.archive.uploads import upload_store

    [stored] = upload_store(name="ct.dcm", data=sample_bytes(), source="test", user=clinician_a, group=group_a)
    study = stored.instance.series.study
    patient = study.patient
    secrets = {patient.patient_id, patient.patient_name, patient.patient_name.split("^")[0], study.accession_number}
    if patient.patient_birth_date:
        secrets |= {patient.patient_birth_date.isoformat(), patient.patient_birth_date.strftime("%Y%m%d")}
    secrets = {s for s in secrets if s and len(s) >= 3}
    client = Client()
    client.force_login(researcher_a)
    leaks, checked = [], 0
    for endpoint in endpoints():
        if endpoint.name in PUBLIC or endpoint.name.startswith("admin:"):
            continue
        path = _build(endpoint, uid_values(endpoint, study))
        if path is None:
            continue
        extra = {}
        if path.startswith("/api/v1/analyses") or path.startswith("/api/v1/similar"):
            extra = {"study": study.study_instance_uid, "instance": stored.sop_instance_uid}
        response = client.get(path, extra)
        checked += 1
        body = b"".join(response.streaming_content) if response.streaming else response.content
        text = body.decode("utf-8", "replace")
        found = [s for s in secrets if s in text]
        if found:
            leaks.append(f"{path} ({endpoint.name}) {response.status_code}: shows {found}")
    assert checked > 20
    assert not leaks, "\n".join(leaks)
