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
