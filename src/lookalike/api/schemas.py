"""Pydantic models of the native API: the contract in /openapi.json and the validation of bodies."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, model_validator

from lookalike.errors import InvalidParameter


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImageRef(Strict):
    """One image: exactly one of ``url`` (http, https, s3) or ``base64`` (plain or data: URL)."""

    url: str | None = None
    base64: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ImageRef:
        if (self.url is None) == (self.base64 is None):
            raise ValueError("give exactly one of url or base64")
        return self


class EmbedRequest(Strict):
    images: list[ImageRef] = Field(min_length=1)
    model: str | None = None


class EmbedResponse(BaseModel):
    model: str
    dim: int
    vectors: list[list[float]]
    request_id: str


class CompareRequest(Strict):
    a: ImageRef
    b: ImageRef
    model: str | None = None
    explain: StrictBool = Field(False, description="also return the matched keypoints (`matches`)")


class CompareResponse(BaseModel):
    model: str = Field(description="the model whose opinion decided: the fast one unless a boundary was close")
    pipeline: str = Field(
        "", description="model, input geometry and mirror view that decided, e.g. sscd-small@stretch224"
    )
    cosine: float = Field(
        description="cosine of the two unit vectors on the reference scale (sscd@short288+flip), -1..1"
    )
    similarity: float = Field(description="AWS scale: 0.5 + 0.5 * cosine")
    score: float = Field(description="calibrated 0..100 (PAI scale; Tencent Score)")
    l2_distance: float
    verdict: str = Field(description="same image / near copy / same object or scene / different")
    inliers: int | None = Field(
        None,
        description="keypoint matches that agree on one geometric transform (null: not verified: local features "
        "off, or a cosine where verification cannot change the verdict; explain always verifies)",
    )
    verified: bool | None = Field(
        None, description="enough inliers to be more than chance: the similarity and verdict count them"
    )
    matches: list[list[float]] | None = Field(
        None,
        description="with explain: the inlier matches, each [xa, ya, xb, yb] as fractions of each image's "
        "width and height (EXIF-oriented, after any crop), at most 300",
    )
    elapsed_ms: float
    request_id: str


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody
    request_id: str


class ModelInfo(BaseModel):
    name: str
    dim: int
    input: str = Field(
        description="the input pipeline: shortN (shorter side N) or stretchN, +flip when averaged with the mirror view"
    )
    description: str
    loaded: bool
    default: bool


def parse[Model: BaseModel](model: type[Model], data: Any) -> Model:
    """Validates a body, turning pydantic's errors into our InvalidParameter."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidParameter(f"{where}: {first['msg']}") from None
