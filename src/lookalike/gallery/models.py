"""Gallery vocabulary: group types and the models they fix, limits, and the values passed around.

A group's type decides, once and for all, which model embeds its images and its queries, so
vectors of different models never meet in one group. Tencent's GroupType values all map to the
full SSCD model (each of Tencent's services is some flavour of "find this picture again", which is
what SSCD is trained for); lookalike adds its own values from 100 up:

=========  =============  ==========================================================
GroupType  model          meaning
=========  =============  ==========================================================
1-8        ``sscd``       Tencent's types (4, general image search, is the default; 5, 7, 8,
                         product search, embed the picture's subject: gallery/subject.py)
100        ``sscd``       lookalike: SSCD ResNet-50, the most accurate
101        ``sscd-small`` lookalike: the distilled MobileNetV4 student, ~5x faster
=========  =============  ==========================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image

from lookalike import scores
from lookalike.images.decode import Rect
from lookalike.storage.base import ImageRecord

DEFAULT_GROUP_TYPE = 4
GROUP_TYPE_MODELS: dict[int, str] = {**{t: "sscd" for t in range(1, 9)}, 100: "sscd", 101: "sscd-small"}
MODEL_GROUP_TYPES: dict[str, int] = {"sscd": DEFAULT_GROUP_TYPE, "sscd-small": 101}
"""The GroupType a group gets when it is created by model name (native API, CLI)."""

# Tencent's limits (API documentation of tiia 2019-05-29), kept so that what works here works there.
GROUP_ID_MAX = 64
GROUP_NAME_MAX = 64
BRIEF_MAX = 512
ENTITY_ID_MAX = 64
PIC_NAME_MAX = 64
CUSTOM_CONTENT_MAX = 4096
TAGS_MAX_KEYS = 10
TAG_KEY_MAX = 64
TAG_VALUE_MAX = 256
"""Characters in one string tag value (Tencent names the error, not the number)."""
FILTER_MAX = 1024
"""Characters in a Filter; Tencent allows 64, lookalike more (a longer one only ever works here)."""
PICTURES_PER_ENTITY = 10
DEFAULT_LIMIT = 10
MAX_LIMIT = 100
DEFAULT_MAX_QPS = 10

SOLID_COLOUR_STD = 2.0
"""Pixel standard deviation (0..255 scale, at the model's input size) below which an image is
one flat colour: nothing in it to recognise, and every such image would match every other."""
THUMBNAIL_SIDE = 256
THUMBNAIL_MAX_BYTES = 48 * 1024


@dataclass
class NewImage:
    """One picture to add: already-fetched bytes (or an in-memory image) plus its record fields."""

    entity_id: str
    pic_name: str
    image: bytes | Image.Image
    custom_content: str = ""
    tags: dict[str, object] = field(default_factory=dict)
    rect: Rect | None = None
    detect: bool = True
    """Product groups: find the subject and store that region (Tencent's EnableDetect)."""
    category_id: int | None = None
    """Product groups: the subject's category (Tencent's CategoryId, 0..5)."""


@dataclass(frozen=True)
class SearchHit:
    image: ImageRecord
    cosine: float
    score: int
    """Tencent's Score: the calibrated 0..100 scale (:func:`lookalike.scores.calibrated_score`) of
    the similarity (the cosine raised by geometric verification), rounded."""
    inliers: int | None = None
    """Keypoint matches with the query that agree on one transform (None: not verified)."""

    @classmethod
    def scored(
        cls, record: ImageRecord, cosine: float, similarity: float | None = None, inliers: int | None = None
    ) -> SearchHit:
        """A picture with its cosine and its Score: the calibrated scale of the similarity (the
        cosine, raised by geometric verification where it ran), rounded."""
        sim = float(cosine if similarity is None else similarity)
        return cls(record, float(cosine), round(float(scores.calibrated_score(sim))), inliers)


@dataclass(frozen=True)
class DuplicateSet:
    """Pictures of a group that are duplicates of one another: the one kept (the first added)
    and the others, each scored against it, most alike first."""

    keep: ImageRecord
    duplicates: list[SearchHit]
    matches: list[str] = field(default_factory=list)
    """Each duplicate's label, as ``lookalike dedup`` gives it: near (a copy) or scene."""

    @property
    def key(self) -> str:
        """Its identity for a review mark: its members' PicNames (:func:`lookalike.gallery.reviews.set_key`)."""
        from lookalike.gallery.reviews import set_key

        return set_key([self.keep.pic_name, *(h.image.pic_name for h in self.duplicates)])


@dataclass(frozen=True)
class Duplicates:
    sets: list[DuplicateSet]
    """Largest first."""
    pictures: int
    """Pictures in the group."""
    min_cosine: float
    """The threshold the level (or MatchThreshold) came to."""
    reviewed: int = 0
    """Sets found but left out: marked reviewed (and unchanged since)."""
