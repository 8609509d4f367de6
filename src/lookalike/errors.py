"""Domain errors. Each carries a stable code; every API dialect maps codes to its own wire format."""

from __future__ import annotations


class LookalikeError(Exception):
    """Base of every error a caller can cause. ``code`` is stable and documented in README.md."""

    code = "InternalError"
    status = 500

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status


class InvalidParameter(LookalikeError):
    code = "InvalidParameter"
    status = 400


class InvalidParameterValue(LookalikeError):
    code = "InvalidParameterValue"
    status = 400


class ImageDecodeFailed(LookalikeError):
    """The bytes are not a readable image (corrupt, truncated, or not base64)."""

    code = "ImageDecodeFailed"
    status = 400


class ImageNotSupported(LookalikeError):
    """A real image, in a format we refuse (gif, tiff, ...)."""

    code = "ImageNotSupported"
    status = 400


class ImageSizeExceed(LookalikeError):
    """Too many bytes."""

    code = "ImageSizeExceed"
    status = 413


class ImageResolutionExceed(LookalikeError):
    """Too many pixels along a side, or in total (decompression-bomb guard)."""

    code = "ImageResolutionExceed"
    status = 400


class ImageEmpty(LookalikeError):
    code = "ImageEmpty"
    status = 400


class ImageDownloadError(LookalikeError):
    """The URL could not be fetched (network, HTTP status, time-out, too many redirects)."""

    code = "ImageDownloadError"
    status = 400


class UrlIllegal(LookalikeError):
    """The URL is malformed, of a refused scheme, or points at a refused address."""

    code = "UrlIllegal"
    status = 400


class ModelNotFound(LookalikeError):
    code = "ModelNotFound"
    status = 400


class ModelUnavailable(LookalikeError):
    """The model's package is not installed; the message names the install command."""

    code = "ModelUnavailable"
    status = 503


class ImageUnqualified(LookalikeError):
    """The picture does not meet subject detection's requirements (an aspect ratio of 10 or more)."""

    code = "FailedOperation.ImageUnQualified"
    status = 400


# Galleries (Tencent image search codes; the Tencent dialect sends them as-is).
class ResourceNotFound(LookalikeError):
    code = "ResourceNotFound"
    status = 404


class ImageGroupIdNotExist(LookalikeError):
    code = "InvalidParameterValue.ImageGroupIdNotExist"
    status = 404


class ImageGroupIdAlreadyExist(LookalikeError):
    code = "InvalidParameterValue.ImageGroupIdAlreadyExist"
    status = 409


class PicNameAlreadyExist(LookalikeError):
    code = "InvalidParameterValue.PicNameAlreadyExist"
    status = 409


class ImageEntityCountExceed(LookalikeError):
    code = "FailedOperation.ImageEntityCountExceed"
    status = 409


class ImageNumExceed(LookalikeError):
    """The group is at MaxCapacity."""

    code = "FailedOperation.ImageNumExceed"
    status = 409


class PictureSolidColorError(LookalikeError):
    code = "InvalidParameter.PictureSolidColorError"
    status = 400


class ImageNotFound(LookalikeError):
    code = "FailedOperation.ImageNotFoundInfo"
    status = 404


# Gallery request validation (Tencent image search codes, from the SDK's errorcodes.py).
class MissingParameter(LookalikeError):
    """A required parameter is absent (Tencent's common code)."""

    code = "MissingParameter"
    status = 400


class UnknownParameter(LookalikeError):
    """A parameter the action does not define (Tencent's common code): catches typos."""

    code = "UnknownParameter"
    status = 400


class InvalidAction(LookalikeError):
    """The Tencent dialect got an X-TC-Action it does not implement."""

    code = "InvalidAction"
    status = 400


class NoSuchVersion(LookalikeError):
    """The Tencent dialect got an X-TC-Version other than 2019-05-29."""

    code = "NoSuchVersion"
    status = 400


class ImageGroupIdIllegal(LookalikeError):
    """GroupId is empty or has characters other than letters, digits and ``_``."""

    code = "InvalidParameterValue.ImageGroupIdIllegal"
    status = 400


class ImageGroupIdTooLong(LookalikeError):
    code = "InvalidParameterValue.ImageGroupIdTooLong"
    status = 400


class ImageGroupNameEmpty(LookalikeError):
    code = "InvalidParameterValue.ImageGroupNameEmpty"
    status = 400


class ImageGroupNameTooLong(LookalikeError):
    code = "InvalidParameterValue.ImageGroupNameTooLong"
    status = 400


class BriefTooLong(LookalikeError):
    code = "InvalidParameterValue.BriefTooLong"
    status = 400


class EntityIdEmpty(LookalikeError):
    code = "InvalidParameterValue.EntityIdEmpty"
    status = 400


class EntityIdTooLong(LookalikeError):
    code = "InvalidParameterValue.EntityIdTooLong"
    status = 400


class PicNameEmpty(LookalikeError):
    code = "InvalidParameterValue.PicNameEmpty"
    status = 400


class PicNameTooLong(LookalikeError):
    code = "InvalidParameterValue.PicNameTooLong"
    status = 400


class PicNameInvalid(LookalikeError):
    """Control characters or ``/`` at either end: a PicName must be printable and path-safe."""

    code = "InvalidParameterValue.PicNameInvalid"
    status = 400


class CustomContentTooLong(LookalikeError):
    code = "InvalidParameterValue.CustomContentTooLong"
    status = 400


class TagsKeysExceed(LookalikeError):
    code = "InvalidParameterValue.TagsKeysExceed"
    status = 400


class TagsValueIllegal(LookalikeError):
    """Tags is not a JSON object of string keys to string or number values."""

    code = "InvalidParameterValue.TagsValueIllegal"
    status = 400


class TagsValueSizeExceed(LookalikeError):
    code = "InvalidParameterValue.TagsValueSizeExceed"
    status = 400


class FilterInvalid(LookalikeError):
    code = "InvalidParameterValue.FilterInvalid"
    status = 400


class FilterSizeExceed(LookalikeError):
    code = "InvalidParameterValue.FilterSizeExceed"
    status = 400


class LimitExceed(LookalikeError):
    """Limit above 100 (SearchImage, DescribeGroups)."""

    code = "InvalidParameterValue.LimitExceed"
    status = 400


# Access, limits and capacity (issue 5). Tencent's common codes, sent as-is by its dialect.
class AuthFailure(LookalikeError):
    """No valid credential. The code says which check failed (Tencent's AuthFailure.* codes)."""

    code = "AuthFailure"
    status = 401


class MissingAuthorization(AuthFailure):
    code = "AuthFailure.MissingAuthorization"


class InvalidAuthorization(AuthFailure):
    """The credential header is malformed."""

    code = "AuthFailure.InvalidAuthorization"


class SecretIdNotFound(AuthFailure):
    """Unknown or revoked key."""

    code = "AuthFailure.SecretIdNotFound"


class SignatureFailure(AuthFailure):
    """Wrong key, or the signed request was altered."""

    code = "AuthFailure.SignatureFailure"


class SignatureExpire(AuthFailure):
    """The signed timestamp is outside the allowed clock skew (a replay or a wrong clock)."""

    code = "AuthFailure.SignatureExpire"


class RequestLimitExceeded(LookalikeError):
    """A rate limit (a group's MaxQps or a credential's) was hit; retry later."""

    code = "RequestLimitExceeded"
    status = 429


class ServerBusy(LookalikeError):
    """The model work queue is full; the request was shed instead of queued without bound."""

    code = "ServerBusy"
    status = 503


class StoreUnavailable(LookalikeError):
    """The vector database (Milvus) did not answer or failed; nothing was written by this call."""

    code = "StoreUnavailable"
    status = 503


class StorageFull(LookalikeError):
    """The data directory ran out of space; nothing already stored is affected."""

    code = "StorageFull"
    status = 507
