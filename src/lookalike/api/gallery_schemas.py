"""Pydantic models of the native gallery API (/v1/groups): the contract in /openapi.json.

Lengths, tag rules and limits are checked by :mod:`lookalike.gallery.validation`, not here, so
the native API refuses exactly what the Tencent dialect refuses, with the same error codes.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from lookalike.api.schemas import ErrorBody, ImageRef, Strict


class GroupCreate(Strict):
    group_id: str = Field(description="letters, digits and _; at most 64 characters; unique")
    group_name: str | None = Field(None, description="defaults to group_id")
    brief: str | None = None
    max_capacity: int | None = Field(None, description="most pictures the group holds; 0 = unlimited")
    max_qps: int | None = Field(None, description="stored and reported (Tencent's MaxQps); not enforced")
    model: str | None = Field(None, description="sscd (default) or sscd-small; fixed once the group exists")
    group_type: int | None = Field(
        None, description="Tencent's GroupType instead of model: 1-8 and 100 = sscd, 101 = sscd-small"
    )


class GroupInfo(BaseModel):
    group_id: str
    group_name: str
    brief: str
    max_capacity: int
    max_qps: int
    group_type: int
    model: str
    pic_count: int
    create_time: str = Field(description="ISO 8601, UTC")
    update_time: str


class GroupResponse(GroupInfo):
    request_id: str


class GroupList(BaseModel):
    groups: list[GroupInfo]
    total: int
    request_id: str


class RectIn(Strict):
    """A crop box in the original (EXIF-oriented) image's pixels, applied before embedding."""

    x: int
    y: int
    width: int
    height: int


class ImageCreate(Strict):
    entity_id: str = Field(description="at most 64 characters; an entity holds at most 10 pictures")
    pic_name: str = Field(description="at most 64 characters; unique in the group")
    image: ImageRef
    custom_content: str | None = Field(None, description="at most 4096 characters, returned by search")
    tags: dict[str, Any] | None = Field(None, description="at most 10 keys; values strings or numbers")
    rect: RectIn | None = None
    detect: bool = Field(
        True, description="product groups (GroupType 5, 7, 8): store the subject's region (Tencent's EnableDetect)"
    )
    category_id: int | None = Field(
        None, description="product groups: the subject's category, 0..5 (Tencent's CategoryId)"
    )


class ImageInfo(BaseModel):
    group_id: str
    entity_id: str
    pic_name: str
    custom_content: str
    tags: dict[str, Any]
    rect: RectIn | None = None
    create_time: str
    update_time: str
    thumbnail_url: str


class ImageResponse(ImageInfo):
    request_id: str


class ImageList(BaseModel):
    images: list[ImageInfo]
    total: int
    request_id: str


class BatchItem(BaseModel):
    pic_name: str | None
    ok: bool
    image: ImageInfo | None = None
    error: ErrorBody | None = None


class BatchResponse(BaseModel):
    results: list[BatchItem] = Field(description="one per submitted picture, in order")
    created: int
    failed: int
    request_id: str


class ImagePatch(Strict):
    tags: dict[str, Any] | None = Field(None, description="replaces the tags")
    custom_content: str | None = None


class SearchRequest(Strict):
    image: ImageRef
    rect: RectIn | None = None
    detect: bool = Field(True, description="product groups (GroupType 5, 7, 8): search with the subject's region")
    category_id: int | None = Field(
        None, description="product groups: the subject's category, 0..5 (Tencent's CategoryId)"
    )
    limit: int | None = Field(None, description="1..100, default 10")
    offset: int | None = Field(None, description="default 0")
    match_threshold: float | None = Field(None, description="0..100 score; 0 = the default (60)")
    filter: str | None = Field(None, description="over tags, e.g. colour = \"red\" AND (size >= 3 OR size < 1)")


class SearchResult(BaseModel):
    entity_id: str
    pic_name: str
    custom_content: str
    tags: dict[str, Any]
    score: int = Field(description="calibrated 0..100 (Tencent's Score)")
    cosine: float
    inliers: int | None = Field(
        None, description="keypoints matching the query under one geometric transform (null: not verified)"
    )
    thumbnail_url: str


class SubjectBox(BaseModel):
    box: RectIn
    score: float = Field(
        description="the detector's confidence 0..1; a window's cosine with its closest picture; 1 for rect"
    )
    category: int = Field(description="Tencent's CategoryId of the box; -1: none of the six")
    label: str = Field(description="the detector's class, or region (a window), image (the whole picture), ImageRect")


class SubjectOut(SubjectBox):
    requested: int | None = Field(None, description="the category_id asked for")
    honoured: bool = Field(
        description="false when the box is not of the category asked for (the detector cannot tell it)"
    )
    boxes: list[SubjectBox] = Field(description="every subject the detector found (Tencent's AllBox)")


class SearchResponse(BaseModel):
    results: list[SearchResult] = Field(description="best first")
    count: int
    object: SubjectOut | None = Field(None, description="product groups: the query's region that was searched")
    request_id: str


class DuplicatesRequest(Strict):
    level: Literal["near", "scene"] = Field(
        "near", description="near: copies, crops, edits; scene: other photos of the same scene or object"
    )
    match_threshold: float | None = Field(None, description="0..100 score instead of the level's; 0 = the level's")
    limit: int | None = Field(None, description="sets per page, 1..100, default 10")
    offset: int | None = Field(None, description="default 0")


class DuplicateOut(SearchResult):
    match: Literal["near", "scene"] = Field(
        description="as lookalike dedup labels it: near (a copy of the one kept) or scene"
    )


class DuplicateSetOut(BaseModel):
    key: str = Field(description="the set's identity (a digest of its members' PicNames), for a review mark")
    keep: ImageInfo = Field(description="the picture added first (same time: the first PicName)")
    duplicates: list[DuplicateOut] = Field(description="scored against the one kept, most alike first")


class DuplicatesResponse(BaseModel):
    sets: list[DuplicateSetOut] = Field(description="largest first")
    total: int = Field(description="sets found")
    duplicates: int = Field(description="pictures that duplicate another, over all sets")
    pictures: int = Field(description="pictures in the group")
    min_cosine: float
    reviewed: int = Field(0, description="sets left out: marked reviewed, and unchanged since")
    request_id: str


class DuplicatesJobRequest(Strict):
    level: Literal["near", "scene"] = Field("near", description="as in DuplicatesRequest")
    match_threshold: float | None = Field(None, description="0..100 score instead of the level's; 0 = the level's")


class DuplicatesJob(BaseModel):
    job_id: str
    status: Literal["queued", "running", "done", "failed"]
    stage: str = Field(description="what it is doing: 'reading vectors', 'matching' (empty while queued)")
    done: int = Field(description="pictures read so far (of total)")
    total: int
    level: str
    match_threshold: float | None
    elapsed_ms: float = Field(description="since it started running (0 while queued)")
    error: ErrorBody | None = Field(None, description="why it failed (status failed)")
    result: DuplicatesResponse | None = Field(
        None, description="status done: a page of the sets (offset and limit of the query), reviewed ones left out"
    )
    request_id: str


class ReviewRequest(Strict):
    pic_names: list[str] = Field(description="the set's members, the kept picture included (at least two)")


class ReviewResponse(BaseModel):
    key: str = Field(description="the set's key; a set with these members is left out from now on")
    request_id: str


class Deleted(BaseModel):
    deleted: int
    request_id: str


def inline_schema(model: type[BaseModel]) -> dict:
    """The model's JSON schema with its ``$defs`` inlined, for an operation's request body."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.split("/")[-1]])
            return {k: resolve(item) for k, item in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return resolve(schema)
