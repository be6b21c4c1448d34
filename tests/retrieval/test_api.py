"""POST /api/v1/similar and the "Find similar" pages: auth, permissions, filters, audit."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from django.test import Client
from PIL import Image

from medvault.accounts.models import AuditRecord
from medvault.retrieval.services import embedding_store

from .conftest import fake_embedding, make_instance, token_for

pytestmark = pytest.mark.django_db
URL = "/api/v1/similar"


def _post(client: Client, user, data: dict, as_json: bool = True):
    headers = {"HTTP_AUTHORIZATION": f"Token {token_for(user)}"} if user is not None else {}
    if as_json:
        return client.post(URL, data=json.dumps(data), content_type="application/json", **headers)
    return client.post(URL, data=data, **headers)


def _png(array: np.ndarray) -> io.BytesIO:
    buf = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buf, format="PNG")
    buf.seek(0)
    buf.name = "query.png"
    return buf


def test_unauthenticated_gets_401(world) -> None:
    res = Client().post(URL, data=json.dumps({"sop_instance_uid": world["query"].sop_instance_uid}),
                        content_type="application/json")
    assert res.status_code == 401
    assert "WWW-Authenticate" in res
    assert "error" in res.json()


def test_bad_token_gets_401(world) -> None:
    res = Client().post(URL, data="{}", content_type="application/json",
                        HTTP_AUTHORIZATION="Token not-a-real-token")
    assert res.status_code == 401


def test_similar_by_uid_returns_only_the_users_groups(world) -> None:
    alice = world["users"]["alice"]
    res = _post(Client(), alice, {"sop_instance_uid": world["query"].sop_instance_uid, "k": 12})
    assert res.status_code == 200, res.content
    body = res.json()
    assert body["model"] == "lung-ct" and body["query"]["embedding"] == "stored"
    uids = [m["sop_instance_uid"] for m in body["matches"]]
    assert len(uids) == 12
    b_uids = {i.sop_instance_uid for i in world["b"]}
    assert not b_uids & set(uids), "group B's images must never reach a group A user"
    a_uids = {i.sop_instance_uid for i in world["a"]} | {world["query"].sop_instance_uid,
                                                          world["sibling"].sop_instance_uid}
    assert set(uids) <= a_uids
    scores = [m["score"] for m in body["matches"]]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] == pytest.approx(1.0, abs=1e-3)  # the query itself (or its twin)
    first = body["matches"][0]
    for key in ("series_instance_uid", "study_instance_uid", "label", "study_date", "thumbnail_url"):
        assert key in first
    assert first["study_date"] == "2024-03-01"


def test_group_b_sees_its_own_nearest_images(world) -> None:
    bob = world["users"]["bob"]
    # bob cannot use A's instance as a query at all ...
    res = _post(Client(), bob, {"sop_instance_uid": world["query"].sop_instance_uid})
    assert res.status_code == 404
    # ... but querying with one of his own finds his group's images only
    res = _post(Client(), bob, {"sop_instance_uid": world["b"][0].sop_instance_uid, "k": 40})
    uids = {m["sop_instance_uid"] for m in res.json()["matches"]}
    assert uids == {i.sop_instance_uid for i in world["b"]}


def test_administrator_sees_every_group(world) -> None:
    res = _post(Client(), world["users"]["admin"], {"sop_instance_uid": world["query"].sop_instance_uid, "k": 10})
    uids = {m["sop_instance_uid"] for m in res.json()["matches"]}
    # B's vectors lie nearest to the query, so an admin's top 10 is mostly B.
    assert uids & {i.sop_instance_uid for i in world["b"]}


def test_user_without_groups_sees_nothing(world) -> None:
    nobody = world["users"]["nobody"]
    res = _post(Client(), nobody, {"sop_instance_uid": world["query"].sop_instance_uid})
    assert res.status_code == 404


def test_unknown_uid_is_404(world) -> None:
    res = _post(Client(), world["users"]["alice"], {"sop_instance_uid": "1.2.3.4.5"})
    assert res.status_code == 404 and res.json()["error"]


def test_exclude_own_study(world) -> None:
    alice = world["users"]["alice"]
    q = world["query"]
    res = _post(Client(), alice, {"sop_instance_uid": q.sop_instance_uid, "k": 50,
                                  "exclude_own_study": True})
    studies = {m["study_instance_uid"] for m in res.json()["matches"]}
    assert q.series.study.study_instance_uid not in studies
    res = _post(Client(), alice, {"sop_instance_uid": q.sop_instance_uid, "k": 50})
    assert q.series.study.study_instance_uid in {m["study_instance_uid"] for m in res.json()["matches"]}


def test_label_and_modality_filters(world) -> None:
    alice = world["users"]["alice"]
    q = world["query"].sop_instance_uid
    res = _post(Client(), alice, {"sop_instance_uid": q, "k": 50, "label": "normal"})
    matches = res.json()["matches"]
    assert matches and all(m["label"] == "normal" for m in matches)
    assert len(matches) == 15
    res = _post(Client(), alice, {"sop_instance_uid": q, "k": 50, "modality": "MR"}, as_json=False)
    matches = res.json()["matches"]
    assert len(matches) == 10 and all(m["modality"] == "MR" for m in matches)


@pytest.mark.parametrize("payload", [
    {},
    {"sop_instance_uid": "1.2", "k": 0},
    {"sop_instance_uid": "1.2", "k": "many"},
    {"sop_instance_uid": "1.2", "k": 100000},
    {"sop_instance_uid": "9" * 65},
])
def test_bad_requests_are_400_with_a_message(world, payload) -> None:
    res = _post(Client(), world["users"]["alice"], payload)
    assert res.status_code == 400
    assert res.json()["error"]


def test_malformed_json_is_400(world) -> None:
    res = Client().post(URL, data="{nope", content_type="application/json",
                        HTTP_AUTHORIZATION=f"Token {token_for(world['users']['alice'])}")
    assert res.status_code == 400


def test_get_is_not_allowed(world) -> None:
    res = Client().get(URL, HTTP_AUTHORIZATION=f"Token {token_for(world['users']['alice'])}")
    assert res.status_code == 405


def test_search_is_audited(world) -> None:
    alice = world["users"]["alice"]
    _post(Client(), alice, {"sop_instance_uid": world["query"].sop_instance_uid})
    rec = AuditRecord.objects.filter(action="search", user=alice).first()
    assert rec is not None and rec.outcome == "ok"
    assert rec.sop_uid == world["query"].sop_instance_uid
    _post(Client(), world["users"]["bob"], {"sop_instance_uid": world["query"].sop_instance_uid})
    assert AuditRecord.objects.filter(action="search", user=world["users"]["bob"], outcome="denied").exists()


def test_researcher_sees_no_identifying_data(world) -> None:
    from medvault.web.uid_middleware import pseudonym_issue

    original = world["query"].sop_instance_uid
    res = _post(Client(), world["users"]["rita"], {"sop_instance_uid": pseudonym_issue(original)})
    assert res.status_code == 200
    text = res.content.decode()
    assert "Secret^Name" not in text and "PID" not in text and original not in text


def test_session_post_needs_csrf(world) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(world["users"]["alice"])
    res = client.post(URL, data=json.dumps({"sop_instance_uid": world["query"].sop_instance_uid}),
                      content_type="application/json")
    assert res.status_code == 403


# --- upload path (fake models) ---------------------------------------------------------------

def _pattern(top: int, bottom: int) -> np.ndarray:
    img = np.zeros((64, 64), dtype=np.uint8)
    img[:32] = top
    img[32:] = bottom
    img[:, :16] += 20
    return img


def test_uploaded_image_finds_its_twin(world, fake_models) -> None:
    alice = world["users"]["alice"]
    ga = world["groups"][0]
    target = make_instance(ga)
    image = _pattern(200, 30)
    embedding_store(instance=target, model_name="lung-ct", model_version="fake-1",
                    vector=np.resize(fake_embedding(image), 16), label="bright-top")
    res = _post(Client(), alice, {"file": _png(image), "k": "3", "model": "lung-ct"}, as_json=False)
    assert res.status_code == 200, res.content
    body = res.json()
    assert body["query"]["embedding"] == "computed" and body["query"]["file"] == "query.png"
    assert body["matches"][0]["sop_instance_uid"] == target.sop_instance_uid
    assert body["matches"][0]["score"] == pytest.approx(1.0, abs=1e-3)


def test_upload_refused_by_every_model_is_422(world, fake_models) -> None:
    res = _post(Client(), world["users"]["alice"], {"file": _png(np.zeros((32, 32)))}, as_json=False)
    assert res.status_code == 422 and "blank" in res.json()["error"]


def test_upload_that_is_not_an_image_is_400(world, fake_models) -> None:
    junk = io.BytesIO(b"this is not an image at all")
    junk.name = "x.png"
    res = _post(Client(), world["users"]["alice"], {"file": junk}, as_json=False)
    assert res.status_code == 400


def test_upload_without_installed_models_is_503(world, settings, tmp_path) -> None:
    settings.MEDVAULT_MODELS_DIR = tmp_path / "empty"
    res = _post(Client(), world["users"]["alice"], {"file": _png(_pattern(1, 2))}, as_json=False)
    assert res.status_code == 503 and res.json()["error"]


def test_unknown_model_is_400(world, fake_models) -> None:
    res = _post(Client(), world["users"]["alice"], {"file": _png(_pattern(9, 1)), "model": "../../etc"},
                as_json=False)
    assert res.status_code == 400


# --- pages --------------------------------------------------------------------------------

def test_page_requires_login(world) -> None:
    res = Client().get(f"/similar/{world['query'].sop_instance_uid}/")
    assert res.status_code == 302 and "/accounts/login/" in res["Location"]


def test_page_shows_grid_of_visible_matches(world) -> None:
    client = Client()
    client.force_login(world["users"]["alice"])
    q = world["query"].sop_instance_uid
    res = client.get(f"/similar/{q}/")
    assert res.status_code == 200
    html = res.content.decode()
    assert html.count('class="sim-card"') == 12
    assert f"/similar/{q}/compare/" in html
    assert "/thumbnail.png" in html
    for inst in world["b"]:
        assert inst.sop_instance_uid not in html


def test_page_of_another_groups_image_is_404(world) -> None:
    client = Client()
    client.force_login(world["users"]["bob"])
    assert client.get(f"/similar/{world['query'].sop_instance_uid}/").status_code == 404


def test_compare_page_shows_both_images(world) -> None:
    client = Client()
    client.force_login(world["users"]["alice"])
    q, other = world["query"].sop_instance_uid, world["a"][0].sop_instance_uid
    res = client.get(f"/similar/{q}/compare/{other}/")
    assert res.status_code == 200
    html = res.content.decode()
    assert f"/api/v1/similar/{q}/thumbnail.png" in html
    assert f"/api/v1/similar/{other}/thumbnail.png" in html
    # comparing with an image of another group is refused
    res = client.get(f"/similar/{q}/compare/{world['b'][0].sop_instance_uid}/")
    assert res.status_code == 404


def test_thumbnail_of_invisible_image_is_404_and_anonymous_401(world) -> None:
    client = Client()
    client.force_login(world["users"]["bob"])
    assert client.get(f"/api/v1/similar/{world['query'].sop_instance_uid}/thumbnail.png").status_code == 404
    assert Client().get(f"/api/v1/similar/{world['query'].sop_instance_uid}/thumbnail.png").status_code == 401


def test_thumbnail_of_a_real_stored_ct(world, blob_dir, settings, shared_data) -> None:
    from medvault.archive.ingest import instance_store

    settings.MEDVAULT_AUTO_ANALYSE = False
    data = (shared_data / "dicom" / "single_ct" / "CT_small.dcm").read_bytes()
    res = instance_store(data=data, source="test", group=world["groups"][0])
    assert res.status == "stored", res.reason
    client = Client()
    client.force_login(world["users"]["alice"])
    r = client.get(f"/api/v1/similar/{res.sop_instance_uid}/thumbnail.png")
    assert r.status_code == 200 and r["Content-Type"] == "image/png"
    img = Image.open(io.BytesIO(r.content))
    assert max(img.size) <= 256
    arr = np.asarray(img)
    assert arr.std() > 10  # a picture, not a blank frame
    client.force_login(world["users"]["bob"])
    assert client.get(f"/api/v1/similar/{res.sop_instance_uid}/thumbnail.png").status_code == 404


def test_query_of_another_dimension_is_a_clear_error(world) -> None:
    # An instance embedded by the same model version with a different dimension (corrupt or
    # mixed deployment) must give a JSON error, not a server error.
    odd = make_instance(world["groups"][0])
    embedding_store(instance=odd, model_name="lung-ct", model_version="fake-1",
                    vector=np.ones(8, dtype=np.float32), label="")
    res = _post(Client(), world["users"]["alice"], {"sop_instance_uid": odd.sop_instance_uid})
    assert res.status_code == 422 and "dimension" in res.json()["error"]


def test_shared_study_appears_until_the_share_is_revoked(world) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from medvault.accounts.services import share_create, share_revoke

    alice, bob = world["users"]["alice"], world["users"]["bob"]
    shared = world["a"][0]
    share = share_create(study=shared.series.study, by=alice, user=bob,
                         expires_at=timezone.now() + timedelta(days=1))
    query = {"sop_instance_uid": world["b"][0].sop_instance_uid, "k": 100}
    uids = {m["sop_instance_uid"] for m in _post(Client(), bob, query).json()["matches"]}
    assert shared.sop_instance_uid in uids
    assert world["a"][1].sop_instance_uid not in uids  # only the shared study
    share_revoke(share=share, by=alice)
    uids = {m["sop_instance_uid"] for m in _post(Client(), bob, query).json()["matches"]}
    assert shared.sop_instance_uid not in uids


def test_technician_sees_only_own_uploads(world) -> None:
    from .conftest import make_user

    tech = make_user("tess", role="technician", groups=(world["groups"][0],))
    own = make_instance(world["groups"][0])
    own.uploaded_by = tech
    own.save()
    embedding_store(instance=own, model_name="lung-ct", model_version="fake-1",
                    vector=world["base"], label="")
    res = _post(Client(), tech, {"sop_instance_uid": own.sop_instance_uid, "k": 50})
    assert res.status_code == 200
    assert {m["sop_instance_uid"] for m in res.json()["matches"]} == {own.sop_instance_uid}


def test_instance_without_embedding_and_without_blob_is_a_clear_error(world, fake_models, blob_dir) -> None:
    # index rows only, no blob behind them: computing an embedding must fail politely
    bare = make_instance(world["groups"][0])
    res = _post(Client(), world["users"]["alice"], {"sop_instance_uid": bare.sop_instance_uid})
    assert res.status_code == 422 and res.json()["error"]
