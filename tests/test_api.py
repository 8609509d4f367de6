"""The HTTP API over a real server on loopback: AWS, PAI and native dialects, health, docs, errors."""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import pytest
from PIL import Image

from support import ImageServer, b64, distinct_photos, encode, running_server
from test_decode import png_header_only


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("api") / "data") as base:
        yield base


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def images():
    photo, other = distinct_photos(2)
    w, h = photo.size
    return {
        "photo": encode(photo, quality=92),
        "copy": encode(photo.resize((w * 2 // 3, h * 2 // 3)), quality=60),
        "other": encode(other, quality=92),
        "png": encode(photo, "PNG"),
    }


@pytest.fixture(scope="module")
def image_server(images):
    srv = ImageServer(
        {
            "/photo.jpg": (200, "image/jpeg", images["photo"]),
            "/copy.jpg": (200, "image/jpeg", images["copy"]),
            "/page.jpg": (200, "image/jpeg", b"<html><body>Sorry, not found</body></html>"),
        }
    )
    yield srv
    srv.close()


# --- AWS AI Solution Kit dialect -------------------------------------------------------------


def test_aws_single_image_returns_512_unit_floats(client, images):
    r = client.post("/image_similarity", json={"img": b64(images["photo"])})
    assert r.status_code == 200, r.text
    vector = np.array(r.json()["result"])
    assert vector.shape == (512,)
    assert abs(np.linalg.norm(vector) - 1) < 1e-4


PAIR_TOLERANCE = 0.07
"""AWS-scale gap allowed between the cascade's pair answer and the full model's vectors (the
fast opinion mapped to the reference scale; bench/cascade.py measures its mean and p99)."""


def test_aws_pair_similarity_is_half_plus_half_cosine(client, images):
    r1 = client.post("/image_similarity", json={"img": b64(images["photo"])}).json()["result"]
    r2 = client.post("/image_similarity", json={"img": b64(images["other"])}).json()["result"]
    expected = 0.5 + 0.5 * float(np.dot(r1, r2))
    r = client.post("/image_similarity", json={"img_1": b64(images["photo"]), "img_2": b64(images["other"])})
    assert r.status_code == 200
    assert r.json()["similarity"] == pytest.approx(expected, abs=PAIR_TOLERANCE)
    same = client.post("/image_similarity", json={"img_1": b64(images["photo"]), "img_2": b64(images["copy"])})
    assert same.json()["similarity"] > r.json()["similarity"] + 0.1


def test_aws_pair_without_the_cascade_is_exactly_the_vectors_cosine(tmp_path, images):
    """LOOKALIKE_FAST_MODEL='' : the pair wire answers the full model's cosine to the digit."""
    with (
        running_server(tmp_path / "data", {"LOOKALIKE_FAST_MODEL": ""}) as base,
        httpx.Client(base_url=base, timeout=60) as c,
    ):
        r1 = c.post("/image_similarity", json={"img": b64(images["photo"])}).json()["result"]
        r2 = c.post("/image_similarity", json={"img": b64(images["other"])}).json()["result"]
        r = c.post("/image_similarity", json={"img_1": b64(images["photo"]), "img_2": b64(images["other"])})
    assert r.json()["similarity"] == pytest.approx(0.5 + 0.5 * float(np.dot(r1, r2)), abs=1e-4)


def test_aws_text_similarity_alias(client, images):
    r = client.post("/text_similarity", json={"img_1": b64(images["photo"]), "img_2": b64(images["photo"])})
    assert r.status_code == 200 and r.json()["similarity"] > 0.999


@pytest.mark.parametrize(
    "body, message",
    [
        ({"img": "x", "url": "http://example.com/a.jpg"}, "either"),
        ({"img": "x", "colour": "red"}, "unknown keys"),
        ({}, "missing"),
        ({"img_1": "abc"}, "img_2"),
        ({"img": 12}, "string"),
        ({"img": "x", "img_1": "y", "img_2": "z"}, "either"),
    ],
)
def test_aws_bad_bodies_are_400_with_a_message(client, body, message):
    r = client.post("/image_similarity", json=body)
    assert r.status_code == 400
    assert message in r.json()["Message"]
    assert r.json()["Code"] == "InvalidParameter"
    assert r.json()["RequestId"] == r.headers["x-request-id"]


# --- Alibaba PAI EAS dialect -----------------------------------------------------------------


def test_pai_with_the_official_eas_client(server, images):
    from eas_prediction import PredictClient, StringRequest

    client = PredictClient(server, "image_similarity")
    client.init()
    request = StringRequest(json.dumps({"imagea": b64(images["photo"]), "imageb": b64(images["copy"])}))
    answer = json.loads(client.predict(request).response_data)
    assert answer["success"] is True and answer["request_id"]
    assert 80 <= answer["similarity"][0] <= 100
    assert 0 <= answer["l2_distance"][0] < 1.0
    different = json.loads(
        client.predict(
            StringRequest(json.dumps({"imagea": b64(images["photo"]), "imageb": b64(images["other"])}))
        ).response_data
    )
    assert different["similarity"][0] < 80
    assert different["l2_distance"][0] > answer["l2_distance"][0]


def test_pai_same_image_is_100(client, images):
    r = client.post("/api/predict/sim", json={"imagea": b64(images["photo"]), "imageb": b64(images["photo"])})
    assert r.json()["similarity"][0] == pytest.approx(100, abs=0.01)


def test_pai_errors_say_success_false(client, images):
    r = client.post("/api/predict/sim", json={"imagea": b64(images["photo"])})
    body = r.json()
    assert r.status_code == 400
    assert body["success"] is False and body["error_code"] == "InvalidParameter" and "imageb" in body["error_msg"]
    assert body["request_id"] == r.headers["x-request-id"]
    r = client.post("/api/predict/sim", json={"imagea": b64(images["photo"]), "imageb": "!!notbase64!!"})
    assert r.json()["error_code"] == "ImageDecodeFailed"


# --- native API ------------------------------------------------------------------------------


def test_native_embed_batch_json_and_multipart_agree(client, images):
    r = client.post("/v1/embed", json={"images": [{"base64": b64(images["photo"])}, {"base64": b64(images["png"])}]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["dim"] == 512 and body["model"] == "sscd" and len(body["vectors"]) == 2
    files = [("images", ("a.jpg", images["photo"], "image/jpeg")), ("images", ("b.png", images["png"], "image/png"))]
    m = client.post("/v1/embed", files=files)
    assert m.status_code == 200, m.text
    np.testing.assert_allclose(np.array(m.json()["vectors"]), np.array(body["vectors"]), atol=1e-5)
    # JPEG and PNG of one picture land on (nearly) the same vector.
    a, b = np.array(body["vectors"])
    assert a @ b > 0.95


def test_native_embed_with_second_model(client, images):
    r = client.post("/v1/embed", json={"images": [{"base64": b64(images["photo"])}], "model": "sscd-small"})
    assert r.status_code == 200 and r.json()["model"] == "sscd-small"
    r = client.post("/v1/embed", json={"images": [{"base64": b64(images["photo"])}], "model": "clip"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "ModelNotFound"


def test_native_compare_json_and_multipart(client, images):
    r = client.post("/v1/compare", json={"a": {"base64": b64(images["photo"])}, "b": {"base64": b64(images["copy"])}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["similarity"] == pytest.approx(0.5 + 0.5 * body["cosine"], abs=1e-6)
    assert body["score"] >= 80 and body["verdict"] in ("same image", "near copy")
    m = client.post("/v1/compare", files={"a": ("a.jpg", images["photo"]), "b": ("b.jpg", images["other"])})
    assert m.status_code == 200 and m.json()["score"] < 80 and m.json()["verdict"] != "same image"


def test_native_models(client):
    models = {m["name"]: m for m in client.get("/v1/models").json()}
    assert set(models) == {"sscd", "sscd-small"} and models["sscd"]["default"]


def test_native_embed_limits_batch(client, images):
    r = client.post("/v1/embed", json={"images": [{"base64": b64(images["photo"])}] * 65})
    assert r.status_code == 400 and "at most" in r.json()["error"]["message"]


# --- URLs ------------------------------------------------------------------------------------


def test_loopback_url_refused_by_default(client, image_server):
    r = client.post("/image_similarity", json={"url": f"{image_server.base}/photo.jpg"})
    assert r.status_code == 400 and r.json()["Code"] == "UrlIllegal"
    r = client.post("/v1/embed", json={"images": [{"url": "http://169.254.169.254/latest/meta-data/"}]})
    assert r.json()["error"]["code"] == "UrlIllegal"
    r = client.post("/v1/embed", json={"images": [{"url": "file:///etc/passwd"}]})
    assert r.json()["error"]["code"] == "UrlIllegal"


def test_loopback_url_allowed_by_the_setting(tmp_path, image_server, images):
    with running_server(tmp_path / "data", {"LOOKALIKE_ALLOW_PRIVATE_URLS": "true"}) as base:
        r = httpx.post(
            f"{base}/image_similarity",
            json={"url_1": f"{image_server.base}/photo.jpg", "url_2": f"{image_server.base}/copy.jpg"},
            timeout=60,
        )
        assert r.status_code == 200, r.text
        assert r.json()["similarity"] > 0.8
        html = httpx.post(f"{base}/image_similarity", json={"url": f"{image_server.base}/page.jpg"}, timeout=60)
        assert html.status_code == 400 and html.json()["Code"] == "ImageDecodeFailed"
        missing = httpx.post(f"{base}/image_similarity", json={"url": f"{image_server.base}/nope.jpg"}, timeout=60)
        assert missing.status_code == 400 and missing.json()["Code"] == "ImageDownloadError"


def test_s3_url_through_a_local_s3_server(tmp_path, images):
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    from support import free_port

    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    moto.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        creds = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
        s3 = boto3.client(
            "s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
        )
        s3.create_bucket(Bucket="photos")
        s3.put_object(Bucket="photos", Key="a/photo.jpg", Body=images["photo"])
        env = {**creds, "LOOKALIKE_S3_ENDPOINT_URL": endpoint}
        with running_server(tmp_path / "data", env) as base:
            r = httpx.post(
                f"{base}/image_similarity",
                json={"url_1": "s3://photos/a/photo.jpg", "img_2": b64(images["photo"])},
                timeout=60,
            )
            assert r.status_code == 200, r.text
            assert r.json()["similarity"] > 0.999
            missing = httpx.post(f"{base}/image_similarity", json={"url": "s3://photos/none.jpg"}, timeout=60)
            assert missing.status_code == 400 and missing.json()["Code"] == "ImageDownloadError"
    finally:
        moto.stop()


# --- bad inputs: documented 4xx, never a 500, and the server keeps serving -------------------


def bad_inputs(images) -> list[tuple[str, dict | bytes, str]]:
    photo = Image.open(__import__("io").BytesIO(images["photo"]))
    jpeg = images["photo"]
    return [
        ("truncated jpeg", {"img": b64(jpeg[: len(jpeg) // 3])}, "ImageDecodeFailed"),
        ("png declaring 50000x50000", {"img": b64(png_header_only(50000, 50000))}, "ImageResolutionExceed"),
        ("gif", {"img": b64(encode(photo.convert("P"), "GIF"))}, "ImageNotSupported"),
        ("html as image", {"img": b64(b"<html><body>hello</body></html>")}, "ImageDecodeFailed"),
        ("invalid base64", {"img": "%%%not-base64%%%"}, "ImageDecodeFailed"),
        ("6 MB payload", {"img": b64(b"\xff\xd8\xff" + bytes(6 * 1024 * 1024))}, "ImageSizeExceed"),
        ("5000 px image", {"img": b64(encode(Image.new("RGB", (5000, 40), "red"), "PNG"))}, "ImageResolutionExceed"),
        ("empty body", b"", "InvalidParameter"),
        ("not json", b"{nope", "InvalidParameter"),
        ("json array", b"[1, 2]", "InvalidParameter"),
        ("wrong type", {"img": ["a", "b"]}, "InvalidParameter"),
        ("null image", {"img": None}, "InvalidParameter"),
        ("empty image", {"img": ""}, "ImageEmpty"),
    ]


def test_bad_inputs_get_their_documented_codes(client, images):
    for name, body, code in bad_inputs(images):
        if isinstance(body, bytes):
            r = client.post("/image_similarity", content=body, headers={"content-type": "application/json"})
        else:
            r = client.post("/image_similarity", json=body)
        assert 400 <= r.status_code < 500, (name, r.status_code, r.text)
        assert r.json()["Code"] == code, (name, r.json())
        # The same input through the PAI and native dialects: same code, their own wire format.
        if isinstance(body, dict) and isinstance(body.get("img"), str):
            p = client.post("/api/predict/s", json={"imagea": body["img"], "imageb": body["img"]})
            assert p.status_code < 500 and p.json()["error_code"] == code, name
            n = client.post("/v1/compare", json={"a": {"base64": body["img"]}, "b": {"base64": b64(images["photo"])}})
            assert n.status_code < 500 and n.json()["error"]["code"] == code, name
    assert client.get("/healthz").status_code == 200
    ok = client.post("/image_similarity", json={"img": b64(images["photo"])})
    assert ok.status_code == 200


def test_oversize_request_body_is_refused(client):
    r = client.post("/v1/embed", content=b"x" * (33 * 1024 * 1024), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "ImageSizeExceed"


def test_native_validation_errors_are_400(client):
    r = client.post("/v1/compare", json={"a": {"base64": "x", "url": "y"}, "b": {"base64": "x"}})
    assert r.status_code == 400 and r.json()["error"]["code"] == "InvalidParameter"
    r = client.post("/v1/embed", json={"images": []})
    assert r.status_code == 400


# --- operations ------------------------------------------------------------------------------


def test_health_ready_metrics(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and "sscd" in ready.json()["models"]
    metrics = client.get("/metrics").text
    assert "lookalike_requests_total" in metrics and 'route="/image_similarity"' in metrics


def test_every_response_has_a_request_id(client):
    for r in (client.get("/healthz"), client.get("/nowhere"), client.post("/image_similarity", json={})):
        assert r.headers.get("x-request-id")
    r = client.get("/healthz", headers={"X-Request-Id": "trace-123"})
    assert r.headers["x-request-id"] == "trace-123"


def test_docs_are_served_without_a_cdn(client):
    html = client.get("/docs").text
    assert "/_docs/swagger-ui-bundle.js" in html and "cdn" not in html.lower()
    assert client.get("/_docs/swagger-ui-bundle.js").status_code == 200
    assert client.get("/_docs/swagger-ui.css").status_code == 200
    spec = client.get("/openapi.json").json()
    assert "/v1/embed" in spec["paths"] and "/image_similarity" in spec["paths"]
    assert "EmbedRequest" in spec["components"]["schemas"]


# --- Python client ---------------------------------------------------------------------------


def test_python_client_against_the_server(server, images, tmp_path):
    from lookalike.client import ApiError, Client

    path = tmp_path / "photo.jpg"
    path.write_bytes(images["photo"])
    with Client(server) as c:
        assert c.ready()
        vector = c.embed(path)
        assert vector.shape == (512,)
        batch = c.embed([path, images["other"]], model="sscd-small")
        assert batch.shape == (2, 512)
        result = c.compare(path, images["copy"])
        assert result["score"] >= 80
        assert {m["name"] for m in c.models()} == {"sscd", "sscd-small"}
        with pytest.raises(ApiError) as info:
            c.embed(b"GIF89a........")
        assert info.value.code == "ImageNotSupported" and info.value.status == 400 and info.value.request_id


def test_a_chunked_body_is_cut_off_at_the_request_limit(server_factory, photos):
    """No Content-Length to check up front: the server still stops reading at the limit."""
    server = server_factory({"LOOKALIKE_MAX_REQUEST_BYTES": "200000"})
    boundary = "lookalikeboundary"

    def chunks():
        yield f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="a.jpg"\r\n\r\n'.encode()
        for _ in range(100):
            yield b"\xff" * 10_000
        yield f"\r\n--{boundary}--\r\n".encode()

    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    for path in ("/v1/embed", "/image_similarity"):
        answer = httpx.post(server.base_url + path, content=chunks(), headers=headers, timeout=60)
        assert answer.status_code == 413, (path, answer.text)
        assert "ImageSizeExceed" in answer.text
    # With a Content-Length past the limit, refused before a byte of the body is read.
    declared = httpx.post(server.base_url + "/v1/embed", content=b"".join(chunks()), headers=headers, timeout=60)
    assert declared.status_code == 413 and "the limit is 200000" in declared.json()["error"]["message"]
    small = {"img": base64.b64encode(photos.jpeg(1)).decode()}
    assert httpx.post(server.base_url + "/image_similarity", json=small, timeout=60).status_code == 200


def test_an_unexpected_error_is_a_counted_500_with_a_request_id(tmp_path):
    """A bug in a route must still answer in the API's format, carry its id, and show in /metrics."""
    import asyncio

    from lookalike.api.app import create_app
    from lookalike.config import Settings

    app = create_app(Settings(data_dir=tmp_path))

    @app.get("/v1/_boom")
    async def boom():
        raise RuntimeError("a bug")

    async def run():
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            answer = await client.get("/v1/_boom", headers={"X-Request-Id": "rid-123"})
            metrics = (await client.get("/metrics")).text
        return answer, metrics

    answer, metrics = asyncio.run(run())
    assert answer.status_code == 500 and answer.headers["x-request-id"] == "rid-123"
    assert answer.json() == {
        "error": {"code": "InternalError", "message": "internal error; see the server log"},
        "request_id": "rid-123",
    }
    assert 'lookalike_errors_total{code="InternalError"} 1.0' in metrics
    assert 'status="500"' in metrics
