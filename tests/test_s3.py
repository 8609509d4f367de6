"""s3:// fetching against moto's real S3 server on loopback, over HTTP, with dummy credentials."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from PIL import Image

from lookalike.config import Settings
from lookalike.errors import ImageDownloadError, ImageSizeExceed, UrlIllegal
from lookalike.images import s3
from lookalike.images.s3 import fetch_s3, parse_s3_url
from lookalike.images.sources import fetch_url

BUCKET = "lookalike-test"


def make_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 80, 20)).save(buffer, format="JPEG")
    return buffer.getvalue()


JPEG = make_jpeg()
OBJECTS = {
    "cats/cat.jpg": JPEG,
    "odd key/été ?#.jpg": JPEG,  # taken literally: spaces, non-ASCII, '?' and '#'
    "big.bin": b"x" * 50_000,
}


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    client = boto3.client(
        "s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    client.create_bucket(Bucket=BUCKET)
    for key, body in OBJECTS.items():
        client.put_object(Bucket=BUCKET, Key=key, Body=body)
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Dummy credentials, and nothing from the developer's own AWS setup or proxies."""
    for name in (
        "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
        "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy",
        "LOOKALIKE_S3_ENDPOINT_URL",
    ):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    s3.clear_client_cache()
    yield
    s3.clear_client_cache()


def test_fetch_with_settings_endpoint(endpoint: str) -> None:
    assert fetch_s3(f"s3://{BUCKET}/cats/cat.jpg", Settings(s3_endpoint_url=endpoint)) == JPEG


def test_fetch_with_aws_endpoint_url_env(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    assert fetch_s3(f"s3://{BUCKET}/cats/cat.jpg", Settings()) == JPEG


def test_key_is_taken_literally(endpoint: str) -> None:
    assert fetch_s3(f"s3://{BUCKET}/odd key/été ?#.jpg", Settings(s3_endpoint_url=endpoint)) == JPEG


def test_clients_are_cached_per_endpoint(endpoint: str) -> None:
    settings = Settings(s3_endpoint_url=endpoint)
    fetch_s3(f"s3://{BUCKET}/cats/cat.jpg", settings)
    fetch_s3(f"s3://{BUCKET}/cats/cat.jpg", settings)
    assert len(s3._clients) == 1


def test_sources_dispatches_s3(endpoint: str) -> None:
    assert fetch_url(f"s3://{BUCKET}/cats/cat.jpg", Settings(s3_endpoint_url=endpoint)) == JPEG


def test_missing_key(endpoint: str) -> None:
    with pytest.raises(ImageDownloadError, match="does not exist"):
        fetch_s3(f"s3://{BUCKET}/cats/missing.jpg", Settings(s3_endpoint_url=endpoint))


def test_missing_bucket(endpoint: str) -> None:
    with pytest.raises(ImageDownloadError, match="bucket 'no-such-bucket' does not exist"):
        fetch_s3("s3://no-such-bucket/cat.jpg", Settings(s3_endpoint_url=endpoint))


def test_oversize_object_is_refused(endpoint: str) -> None:
    with pytest.raises(ImageSizeExceed):
        fetch_s3(f"s3://{BUCKET}/big.bin", Settings(s3_endpoint_url=endpoint, max_image_bytes=10_000))


def test_size_limit_is_inclusive(endpoint: str) -> None:
    url = f"s3://{BUCKET}/cats/cat.jpg"
    assert fetch_s3(url, Settings(s3_endpoint_url=endpoint, max_image_bytes=len(JPEG))) == JPEG
    with pytest.raises(ImageSizeExceed):
        fetch_s3(url, Settings(s3_endpoint_url=endpoint, max_image_bytes=len(JPEG) - 1))


def test_no_credentials(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(ImageDownloadError, match="credentials"):
        fetch_s3(f"s3://{BUCKET}/cats/cat.jpg", Settings(s3_endpoint_url=endpoint))


def test_unknown_profile(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "nobody")
    with pytest.raises(ImageDownloadError):
        fetch_s3(f"s3://{BUCKET}/cats/cat.jpg", Settings(s3_endpoint_url=endpoint))


def test_unreachable_endpoint_fails_fast() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens once closed
    with pytest.raises(ImageDownloadError, match="cannot reach"):
        fetch_s3(f"s3://{BUCKET}/cats/cat.jpg", Settings(s3_endpoint_url=f"http://127.0.0.1:{port}", fetch_timeout_s=1))


@pytest.mark.parametrize(
    "url",
    [
        "s3://", "s3:///key.jpg", "s3://bucket", "s3://bucket/", "s3://user@bucket/key.jpg",
        "s3://bucket:9000/key.jpg", "s3://ab/key.jpg", "s3://-bucket/key.jpg", "s3://buck et/key.jpg",
        "s3://bucket/a\\x00b".replace("\\x00", "\x00"), "s3://bucket/" + "k" * 1025, "http://bucket/key.jpg", "",
    ],
)  # fmt: skip
def test_malformed_s3_urls(url: str) -> None:
    with pytest.raises(UrlIllegal):
        fetch_s3(url, Settings())


def test_parse_s3_url() -> None:
    assert parse_s3_url("s3://my.bucket/a/b c.jpg") == ("my.bucket", "a/b c.jpg")
    assert parse_s3_url("  S3://Legacy_Bucket/x  ") == ("Legacy_Bucket", "x")


@pytest.mark.parametrize("instance_credentials", [False, True])
def test_no_credentials_never_asks_the_metadata_address_unless_allowed(
    endpoint: str, monkeypatch: pytest.MonkeyPatch, instance_credentials: bool
) -> None:
    """An anonymous s3:// URL must not make the server call 169.254.169.254 (instance roles)."""
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.delenv("AWS_EC2_METADATA_DISABLED")
    attempts: list[object] = []
    real_connect = socket.socket.connect

    def spy(sock: socket.socket, address: object) -> None:
        attempts.append(address)
        if isinstance(address, tuple) and str(address[0]).startswith("169.254."):
            raise ConnectionRefusedError("the metadata address, refused by the test")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", spy)
    monkeypatch.setenv("AWS_METADATA_SERVICE_NUM_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_METADATA_SERVICE_TIMEOUT", "1")
    with pytest.raises(ImageDownloadError, match="credentials"):
        fetch_s3(
            f"s3://{BUCKET}/cats/cat.jpg",
            Settings(s3_endpoint_url=endpoint, s3_instance_credentials=instance_credentials),
        )
    asked = [a for a in attempts if isinstance(a, tuple) and str(a[0]).startswith("169.254.")]
    assert bool(asked) == instance_credentials, attempts
