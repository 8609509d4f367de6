"""Fetch ``s3://bucket/key`` objects from AWS S3 or an S3-compatible store (MinIO, Ceph, R2, ...).

Credentials, region, profile and endpoint come from the usual AWS sources (``AWS_ACCESS_KEY_ID``,
``AWS_PROFILE``, ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``, ``~/.aws/config``), which boto3
reads itself; ``LOOKALIKE_S3_ENDPOINT_URL`` overrides the endpoint. The endpoint is the operator's
choice, not the user's, so unlike http(s) URLs it is not held to the public-address rule.

Instance and container roles are off unless ``LOOKALIKE_S3_INSTANCE_CREDENTIALS`` is set: looking
for them means asking the metadata address (169.254.169.254), and an anonymous caller's
``s3://`` URL must not make the server do that.
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any

from lookalike import __version__
from lookalike.config import Settings
from lookalike.errors import ImageDownloadError, ImageSizeExceed, LookalikeError, UrlIllegal

# Lenient on purpose: S3-compatible stores accept names AWS no longer allows (upper case, '_').
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAX_KEY_BYTES = 1024
_READ_CHUNK = 64 * 1024
_MAX_ATTEMPTS = 2  # one retry: enough for a dropped connection, bounded for a dead endpoint

_clients: dict[tuple, Any] = {}
_clients_lock = threading.Lock()


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``(bucket, key)``; the key is taken literally (no %-decoding), as the AWS CLI does."""
    url = url.strip() if isinstance(url, str) else ""
    if url[:5].lower() != "s3://":
        raise UrlIllegal("an s3 URL looks like s3://bucket/key")
    bucket, _, key = url[5:].partition("/")
    if not bucket:
        raise UrlIllegal("the s3 URL has no bucket: use s3://bucket/key")
    if not _BUCKET.fullmatch(bucket):
        raise UrlIllegal(f"{bucket!r} is not a valid bucket name (no user, port or odd characters)")
    if not key:
        raise UrlIllegal("the s3 URL has no object key: use s3://bucket/key")
    if _CONTROL.search(key) or len(key.encode("utf-8")) > _MAX_KEY_BYTES:
        raise UrlIllegal("the s3 object key has control characters or is longer than 1024 bytes")
    return bucket, key


def clear_client_cache() -> None:
    """Forget the cached clients, e.g. after credentials or AWS settings changed in the environment."""
    with _clients_lock:
        _clients.clear()


def _client(settings: Settings) -> Any:
    """One boto3 client per endpoint (and time-out); clients are thread-safe, and slow to build."""
    endpoint = settings.s3_endpoint_url or None
    key = (
        endpoint,
        settings.fetch_timeout_s,
        settings.s3_instance_credentials,
        # boto3 reads these itself; keyed so that changing them yields a fresh client.
        os.environ.get("AWS_ENDPOINT_URL_S3"),
        os.environ.get("AWS_ENDPOINT_URL"),
        os.environ.get("AWS_PROFILE"),
    )
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = _new_client(endpoint, settings.fetch_timeout_s, settings.s3_instance_credentials)
        return client


def _new_client(endpoint: str | None, timeout: float, instance_credentials: bool = False) -> Any:
    import boto3
    import botocore.session
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    config = Config(
        connect_timeout=timeout,
        read_timeout=timeout,
        retries={"max_attempts": _MAX_ATTEMPTS, "mode": "standard"},
        user_agent_extra=f"lookalike/{__version__}",
    )
    try:
        # A session of its own: boto3's default session is not safe to share between threads.
        core = botocore.session.Session()
        if not instance_credentials:
            resolver = core.get_component("credential_provider")
            for metadata_service in ("iam-role", "container-role"):
                resolver.remove(metadata_service)
        return boto3.session.Session(botocore_session=core).client("s3", endpoint_url=endpoint, config=config)
    except ValueError as exc:
        raise LookalikeError(f"LOOKALIKE_S3_ENDPOINT_URL {endpoint!r} is not usable: {exc}") from None
    except BotoCoreError as exc:
        raise ImageDownloadError(f"cannot set up the S3 client: {exc}") from None


def fetch_s3(url: str, settings: Settings) -> bytes:
    """The bytes of ``s3://bucket/key``: refused above ``max_image_bytes`` before the body is read."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ParamValidationError,
        PartialCredentialsError,
        ReadTimeoutError,
    )

    bucket, key = parse_s3_url(url)
    where = f"s3://{bucket}/{key}"
    limit = settings.max_image_bytes
    try:
        client = _client(settings)
        response = client.get_object(Bucket=bucket, Key=key)
        body = response["Body"]
        try:
            # The GET's Content-Length arrives before the body: no separate HEAD round trip needed.
            length = response.get("ContentLength")
            if length is not None and length > limit:
                raise ImageSizeExceed(f"{where} is {length} bytes; the limit is {limit}")
            return _read_bounded(body, limit, where)
        finally:
            body.close()
    except ClientError as exc:
        raise _client_error(exc, bucket, key) from None
    except (NoCredentialsError, PartialCredentialsError):
        raise ImageDownloadError(
            f"no usable AWS credentials to read {where}: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or give the host an IAM role"
        ) from None
    except (ConnectTimeoutError, ReadTimeoutError):
        raise ImageDownloadError(f"time-out reading {where} (limit {settings.fetch_timeout_s:g} s)") from None
    except EndpointConnectionError as exc:
        endpoint = exc.kwargs.get("endpoint_url", "")
        raise ImageDownloadError(f"cannot reach the S3 endpoint {endpoint}".rstrip()) from None
    except ParamValidationError as exc:
        raise UrlIllegal(f"invalid s3 URL {where}: {exc}") from None
    except BotoCoreError as exc:
        raise ImageDownloadError(f"cannot read {where}: {exc}") from None


def _read_bounded(body: Any, limit: int, where: str) -> bytes:
    """At most ``limit + 1`` bytes: enough to know the object is too big, whatever the header said."""
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = body.read(min(_READ_CHUNK, limit + 1 - total))
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > limit:
            raise ImageSizeExceed(f"{where} is larger than {limit} bytes")
        chunks.append(chunk)


def _client_error(exc: Any, bucket: str, key: str) -> ImageDownloadError:
    """A botocore ``ClientError`` -> a message that says what to fix."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    where = f"s3://{bucket}/{key}"
    if code == "NoSuchBucket":
        return ImageDownloadError(f"bucket {bucket!r} does not exist")
    if code in ("NoSuchKey", "404", "NotFound") or status == 404:
        return ImageDownloadError(f"{where} does not exist")
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"):
        return ImageDownloadError(f"S3 rejected the credentials reading {where} ({code})")
    if code in ("AccessDenied", "403", "Forbidden") or status == 403:
        return ImageDownloadError(f"access denied to {where}: check the credentials and the bucket policy")
    message = error.get("Message") or str(exc)
    return ImageDownloadError(f"S3 error reading {where}: {code or status} {message}".rstrip())
