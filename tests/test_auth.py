"""Access control end to end: the vendors' own clients sign against a real server in keys mode.

Credentials are made with ``lookalike keys`` in the server's data dir. Tencent's SDK (TC3 and
v1 signatures) and ``eas-prediction`` must get in with good keys and be refused, with the
vendors' codes, for a wrong key, a tampered body, an old request or a revoked key. Tenants
never see each other's groups; rate limits and the model queue answer with clear errors.
"""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import httpx
import pytest
import requests
from eas_prediction import PredictClient, StringRequest
from eas_prediction.exception import PredictException
from tencentcloud.common import abstract_client, credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.tiia.v20190529 import models, tiia_client

from lookalike import errors
from lookalike.api.security import Access
from lookalike.auth import KeyStore
from lookalike.config import Settings
from lookalike.limits import ModelGate, RateLimiter
from support import b64

pytestmark = pytest.mark.filterwarnings("ignore:datetime.datetime.utcfromtimestamp:DeprecationWarning")


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lookalike.cli", "keys", *args, "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def create(data_dir: Path, tenant: str, kind: str = "api", *extra: str) -> dict:
    done = cli(data_dir, "create", "--tenant", tenant, "--kind", kind, *extra)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def keyed(server_factory, tmp_path_factory):
    """A keys-mode server, and credentials of two tenants made with the CLI before it starts."""
    data_dir = tmp_path_factory.mktemp("keyed") / "data"
    creds = {
        "acme_api": create(data_dir, "acme"),
        "acme_tc": create(data_dir, "acme", "tencent"),
        "acme_eas": create(data_dir, "acme", "eas"),
        "beta_api": create(data_dir, "beta"),
        "beta_tc": create(data_dir, "beta", "tencent"),
        "slow_api": create(data_dir, "slow", "api", "--qps", "1"),
        "slow_tc": create(data_dir, "slow", "tencent", "--qps", "1"),
    }
    server = server_factory({"LOOKALIKE_AUTH": "keys"}, data_dir)
    return types.SimpleNamespace(url=server.base_url, data_dir=data_dir, **creds)


def tencent(url: str, secret_id: str, secret_key: str, *, sign_method: str | None = None, unsigned: bool = False):
    http = HttpProfile(endpoint=url.removeprefix("http://"), protocol="http", reqTimeout=60)
    profile = ClientProfile(signMethod=sign_method, httpProfile=http)
    profile.unsignedPayload = unsigned
    return tiia_client.TiiaClient(credential.Credential(secret_id, secret_key), "ap-guangzhou", profile)


def tc(cred: dict, url: str, **kw):
    return tencent(url, cred["secret_id"], cred["secret_key"], **kw)


def code_of(call) -> str:
    with pytest.raises(TencentCloudSDKException) as info:
        call()
    return info.value.code


def create_group(client, group_id: str, max_qps: int = 100) -> None:
    req = models.CreateGroupRequest()
    req.GroupId, req.GroupName, req.MaxQps, req.GroupType = group_id, "auth test", max_qps, 101
    client.CreateGroup(req)


def create_image(client, group_id: str, pic: str, data: bytes) -> None:
    req = models.CreateImageRequest()
    req.GroupId, req.EntityId, req.PicName = group_id, "e1", pic
    req.ImageBase64 = base64.b64encode(data).decode()
    client.CreateImage(req)


def search(client, group_id: str, data: bytes):
    req = models.SearchImageRequest()
    req.GroupId, req.ImageBase64 = group_id, base64.b64encode(data).decode()
    return client.SearchImage(req)


def group_ids(client) -> list[str]:
    req = models.DescribeGroupsRequest()
    req.Limit = 100
    return [g.GroupId for g in client.DescribeGroups(req).Groups]



# ---------------------------------------------------------------------------- Tencent


def test_tencent_sdk_signs_in_and_each_tenant_sees_only_its_own_groups(keyed, photos):
    acme, beta = tc(keyed.acme_tc, keyed.url), tc(keyed.beta_tc, keyed.url)
    photo = photos.jpeg(501)
    create_group(acme, "shared")
    create_image(acme, "shared", "a.jpg", photo)
    assert [i.PicName for i in search(acme, "shared", photo).ImageInfos] == ["a.jpg"]

    assert "shared" in group_ids(acme) and "shared" not in group_ids(beta)
    assert code_of(lambda: search(beta, "shared", photo)) == "InvalidParameterValue.ImageGroupIdNotExist"
    req = models.DeleteImagesRequest()
    req.GroupId, req.EntityId = "shared", "e1"
    assert code_of(lambda: beta.DeleteImages(req)) == "InvalidParameterValue.ImageGroupIdNotExist"

    create_group(beta, "shared")  # the same GroupId is free in another tenant
    assert search(beta, "shared", photo).ImageInfos in (None, [])
    # A tenant is one across credential kinds: acme's API key sees acme's pictures.
    native = httpx.get(f"{keyed.url}/v1/groups/shared", headers={"x-api-key": keyed.acme_api["api_key"]}).json()
    assert native["pic_count"] == 1
    native = httpx.get(f"{keyed.url}/v1/groups/shared", headers={"x-api-key": keyed.beta_api["api_key"]}).json()
    assert native["pic_count"] == 0
    assert [i.PicName for i in search(acme, "shared", photo).ImageInfos] == ["a.jpg"]  # beta changed nothing


@pytest.mark.parametrize("sign_method", ["HmacSHA1", "HmacSHA256"])
def test_tencent_v1_form_signatures_are_verified(keyed, sign_method):
    good = tc(keyed.acme_tc, keyed.url, sign_method=sign_method)
    assert isinstance(group_ids(good), list)
    bad = tencent(keyed.url, keyed.acme_tc["secret_id"], "wrong-key", sign_method=sign_method)
    assert code_of(lambda: group_ids(bad)) == "AuthFailure.SignatureFailure"


def test_wrong_unknown_or_missing_tencent_credentials_are_refused(keyed):
    wrong_key = tencent(keyed.url, keyed.acme_tc["secret_id"], keyed.beta_tc["secret_key"])
    assert code_of(lambda: group_ids(wrong_key)) == "AuthFailure.SignatureFailure"
    unknown = tencent(keyed.url, "AKID" + "0" * 32, keyed.acme_tc["secret_key"])
    assert code_of(lambda: group_ids(unknown)) == "AuthFailure.SecretIdNotFound"
    headers = {"X-TC-Action": "DescribeGroups", "X-TC-Version": "2019-05-29", "Content-Type": "application/json"}
    answer = httpx.post(keyed.url + "/", content=b"{}", headers=headers)
    assert answer.status_code == 200  # Tencent's errors ride on HTTP 200
    assert answer.json()["Response"]["Error"]["Code"] == "AuthFailure.InvalidAuthorization"
    assert answer.json()["Response"]["RequestId"]


def test_a_tampered_body_is_refused(keyed, monkeypatch):
    client = tc(keyed.acme_tc, keyed.url)
    create_group(client, "tamper")
    original = requests.Session.request

    def man_in_the_middle(self, method, url, data=None, **kwargs):
        if isinstance(data, str):
            data = data.replace('"GroupName": "honest"', '"GroupName": "forged"')
        return original(self, method, url, data=data, **kwargs)

    monkeypatch.setattr(requests.Session, "request", man_in_the_middle)
    req = models.CreateGroupRequest()
    req.GroupId, req.GroupName = "tampered", "honest"
    assert code_of(lambda: client.CreateGroup(req)) == "AuthFailure.SignatureFailure"
    monkeypatch.setattr(requests.Session, "request", original)
    assert "tampered" not in group_ids(client)


def test_an_unsigned_payload_is_refused(keyed):
    client = tc(keyed.acme_tc, keyed.url, unsigned=True)
    assert code_of(lambda: group_ids(client)) == "AuthFailure.SignatureFailure"


@pytest.mark.parametrize("offset", [-400, 400])
def test_a_request_more_than_five_minutes_off_is_refused(keyed, monkeypatch, offset):
    skewed = types.SimpleNamespace(time=lambda: time.time() + offset)
    monkeypatch.setattr(abstract_client, "time", skewed)
    client = tc(keyed.acme_tc, keyed.url)
    assert code_of(lambda: group_ids(client)) == "AuthFailure.SignatureExpire"
    monkeypatch.setattr(abstract_client, "time", types.SimpleNamespace(time=lambda: time.time() - 200))
    assert isinstance(group_ids(client), list)  # inside the window: accepted


def test_a_revoked_key_is_refused_at_once(keyed):
    fresh = create(keyed.data_dir, "acme", "tencent")
    client = tc(fresh, keyed.url)
    assert "shared" in group_ids(client)
    done = cli(keyed.data_dir, "revoke", fresh["id"])
    assert done.returncode == 0, done.stderr
    assert code_of(lambda: group_ids(client)) == "AuthFailure.SecretIdNotFound"
    listed = cli(keyed.data_dir, "list", "--all").stdout
    assert any(line.startswith(fresh["id"]) and "revoked" in line for line in listed.splitlines())
    assert fresh["id"] not in cli(keyed.data_dir, "list").stdout


# ---------------------------------------------------------------------------- PAI EAS


def eas(url: str, token: str) -> PredictClient:
    client = PredictClient(url, "image_similarity")
    client.set_token(token)
    client.set_retry_count(1)
    client.init()
    return client


def message(exc: PredictException) -> str:
    return exc.message.decode() if isinstance(exc.message, bytes) else str(exc.message)


def pair(photos) -> str:
    return json.dumps({"imagea": b64(photos.jpeg(601)), "imageb": b64(photos.jpeg(601, quality=60))})


def test_eas_client_with_its_token_gets_in(keyed, photos):
    answer = json.loads(eas(keyed.url, keyed.acme_eas["token"]).predict(StringRequest(pair(photos))).response_data)
    assert answer["success"] is True and answer["similarity"][0] > 80


def test_eas_wrong_token_tampered_body_and_old_date_are_refused(keyed, photos, monkeypatch):
    with pytest.raises(PredictException) as info:
        eas(keyed.url, "not-the-token").predict(StringRequest(pair(photos)))
    assert info.value.code == 401 and "AuthFailure.SignatureFailure" in message(info.value)

    client = eas(keyed.url, keyed.acme_eas["token"])
    send = client.connection_pool.request
    client.connection_pool.request = lambda method, url, body=None, **kw: send(
        method, url, body=body[:-2] + b" }", **kw
    )
    with pytest.raises(PredictException) as info:
        client.predict(StringRequest(pair(photos)))
    assert info.value.code == 401 and "altered" in message(info.value)

    import datetime as real

    import eas_prediction.predict_client as pc

    def ten_minutes_ago():
        return real.datetime.now() - real.timedelta(minutes=10)

    monkeypatch.setattr(pc, "datetime", types.SimpleNamespace(datetime=types.SimpleNamespace(now=ten_minutes_ago)))
    with pytest.raises(PredictException) as info:
        eas(keyed.url, keyed.acme_eas["token"]).predict(StringRequest(pair(photos)))
    assert info.value.code == 401 and "AuthFailure.SignatureExpire" in message(info.value)


def test_eas_bare_token_as_curl_sends_it(keyed, photos):
    url = f"{keyed.url}/api/predict/image_similarity"
    ok = httpx.post(url, content=pair(photos), headers={"Authorization": keyed.acme_eas["token"]})
    assert ok.status_code == 200 and ok.json()["success"] is True
    bad = httpx.post(url, content=pair(photos), headers={"Authorization": keyed.acme_eas["token"] + "x"})
    assert bad.status_code == 401 and bad.json()["error_code"] == "AuthFailure.SecretIdNotFound"
    assert bad.json()["success"] is False and bad.json()["request_id"]


# ---------------------------------------------------------------------------- API keys


def test_aws_dialect_wants_x_api_key_like_api_gateway(keyed, photos):
    body = {"img": b64(photos.jpeg(701))}
    for headers in ({}, {"x-api-key": "lk000000000000.wrong"}, {"x-api-key": keyed.acme_api["api_key"] + "x"}):
        refused = httpx.post(f"{keyed.url}/image_similarity", json=body, headers=headers)
        assert refused.status_code == 403 and refused.json()["message"] == "Forbidden", headers
        assert refused.json()["Code"].startswith("AuthFailure")
    ok = httpx.post(f"{keyed.url}/image_similarity", json=body, headers={"x-api-key": keyed.acme_api["api_key"]})
    assert ok.status_code == 200 and len(ok.json()["result"]) == 512


def test_native_routes_want_a_key_and_health_docs_and_page_do_not(keyed):
    missing = httpx.get(f"{keyed.url}/v1/groups")
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "AuthFailure.MissingAuthorization"
    bearer = httpx.get(f"{keyed.url}/v1/groups", headers={"Authorization": f"Bearer {keyed.acme_api['api_key']}"})
    assert bearer.status_code == 200 and "shared" in [g["group_id"] for g in bearer.json()["groups"]]
    for path in ("/healthz", "/readyz", "/ui", "/openapi.json", "/docs"):
        assert httpx.get(keyed.url + path).status_code == 200, path


def test_keys_are_stored_hashed_and_signing_secrets_not_at_all(keyed):
    stored = (keyed.data_dir / "auth.db").read_bytes()
    for cred in (keyed.acme_api, keyed.beta_api):
        secret_part = cred["api_key"].split(".", 1)[1]
        assert cred["id"].encode() in stored and secret_part.encode() not in stored
    for secret in (keyed.acme_tc["secret_key"], keyed.acme_eas["token"]):
        assert secret.encode() not in stored
    assert (keyed.data_dir / "auth.key").stat().st_mode & 0o077 == 0


# ---------------------------------------------------------------------------- limits


def test_a_credential_rate_limit_answers_request_limit_exceeded(keyed):
    headers = {"x-api-key": keyed.slow_api["api_key"]}
    answers = [httpx.get(f"{keyed.url}/v1/groups", headers=headers) for _ in range(3)]
    assert answers[0].status_code == 200
    assert [a.status_code for a in answers[1:]] == [429, 429]
    assert answers[1].json()["error"]["code"] == "RequestLimitExceeded"
    time.sleep(1.1)
    assert httpx.get(f"{keyed.url}/v1/groups", headers=headers).status_code == 200

    client = tc(keyed.slow_tc, keyed.url)
    codes = []
    for _ in range(3):
        try:
            group_ids(client)
            codes.append("ok")
        except TencentCloudSDKException as exc:
            codes.append(exc.code)
    assert codes[0] == "ok" and "RequestLimitExceeded" in codes[1:]


def test_group_max_qps_limits_searches_of_that_group_only(keyed, photos):
    client = tc(keyed.acme_tc, keyed.url)
    photo = photos.jpeg(801)
    create_group(client, "slowgroup", max_qps=1)
    create_image(client, "slowgroup", "p.jpg", photo)
    create_group(client, "fastgroup", max_qps=50)
    create_image(client, "fastgroup", "p.jpg", photo)
    time.sleep(1.1)
    assert search(client, "slowgroup", photo).ImageInfos[0].PicName == "p.jpg"
    assert code_of(lambda: search(client, "slowgroup", photo)) == "RequestLimitExceeded"
    assert search(client, "fastgroup", photo).ImageInfos[0].PicName == "p.jpg"


def test_a_full_model_queue_sheds_load_with_server_busy(server_factory, photos):
    server = server_factory({"LOOKALIKE_MODEL_CONCURRENCY": "1", "LOOKALIKE_MODEL_QUEUE": "0"})
    big = [photos.jpeg(900 + i, size=(1600, 1200)) for i in range(2)]
    body = {"img_1": b64(big[0]), "img_2": b64(big[1])}
    statuses: list[tuple[int, dict]] = []

    def call() -> None:
        r = httpx.post(f"{server.base_url}/image_similarity", json=body, timeout=120)
        statuses.append((r.status_code, r.json()))

    for _ in range(3):  # a handful of rounds: sheds need two requests to meet at the model
        threads = [threading.Thread(target=call) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if any(code == 503 for code, _ in statuses):
            break
    assert {code for code, _ in statuses} <= {200, 503}
    shed = [body for code, body in statuses if code == 503]
    assert shed and all(b["Code"] == "ServerBusy" for b in shed)
    assert any(code == 200 for code, _ in statuses)
    assert httpx.post(f"{server.base_url}/image_similarity", json=body, timeout=120).status_code == 200
    metrics = httpx.get(f"{server.base_url}/metrics").text
    assert f"lookalike_model_shed {float(len(shed))}" in metrics and "lookalike_model_waiting 0.0" in metrics


def test_model_gate_bounds_running_and_waiting_work():
    gate = ModelGate(concurrency=1, queue=1, timeout_s=5)
    release, entered, results = threading.Event(), threading.Event(), []

    def hold() -> None:
        with gate.slot():
            entered.set()
            release.wait(10)

    def wait_then_run() -> None:
        with gate.slot():
            results.append("ran")

    holder = threading.Thread(target=hold)
    holder.start()
    entered.wait(5)
    waiter = threading.Thread(target=wait_then_run)
    waiter.start()
    deadline = time.monotonic() + 5
    while gate.waiting == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(errors.ServerBusy):  # one running, one queued: the third is shed at once
        with gate.slot():
            pass
    release.set()
    holder.join(5)
    waiter.join(5)
    assert results == ["ran"] and gate.running == 0 and gate.shed == 1

    slow = ModelGate(concurrency=1, queue=5, timeout_s=0.2)
    with slow.slot():
        start = time.monotonic()
        with pytest.raises(errors.ServerBusy):
            with slow.slot():
                pass
        assert 0.15 < time.monotonic() - start < 2


def test_rate_limiter_refills_at_its_rate():
    now = [100.0]
    limiter = RateLimiter(clock=lambda: now[0])
    for _ in range(2):
        limiter.acquire("k", 2, "k")
    with pytest.raises(errors.RequestLimitExceeded):
        limiter.acquire("k", 2, "k")
    limiter.acquire("other", 2, "other")  # keys are apart
    now[0] += 0.5
    limiter.acquire("k", 2, "k")
    with pytest.raises(errors.RequestLimitExceeded):
        limiter.acquire("k", 2, "k")
    limiter.acquire("k", 0, "k")  # 0 = no limit


def test_open_mode_on_a_public_address_logs_a_loud_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="lookalike.security"):
        Access(Settings(host="127.0.0.1", data_dir=tmp_path)).warn_if_exposed()
        assert not caplog.records
        Access(Settings(host="0.0.0.0", data_dir=tmp_path)).warn_if_exposed()
    assert any("LOOKALIKE_AUTH=open" in r.getMessage() for r in caplog.records)


def test_key_store_refuses_bad_input(tmp_path):
    store = KeyStore(tmp_path)
    with pytest.raises(errors.InvalidParameterValue):
        store.create("a/b")
    with pytest.raises(errors.InvalidParameterValue):
        store.create("acme", "nope")  # type: ignore[arg-type]  # a wrong kind on purpose: it must be refused
    issued = store.create("acme")
    with pytest.raises(errors.SecretIdNotFound):
        store.check_api_key(issued.secret["api_key"][:-1] + "x")
    assert store.check_api_key(issued.secret["api_key"]).tenant == "acme"
    store.revoke(issued.credential.id)
    with pytest.raises(errors.SecretIdNotFound):
        store.check_api_key(issued.secret["api_key"])
    with pytest.raises(errors.ResourceNotFound):
        store.revoke("lk-nope")


def test_python_client_sends_its_api_key(keyed, photos):
    from lookalike.client import ApiError, Client

    with Client(keyed.url, api_key=keyed.acme_api["api_key"]) as client:
        assert client.compare(photos.jpeg(950), photos.jpeg(950, quality=50))["score"] > 80
    with Client(keyed.url) as client, pytest.raises(ApiError) as info:
        client.compare(photos.jpeg(950), photos.jpeg(951))
    assert info.value.code == "AuthFailure.MissingAuthorization" and info.value.status == 401
