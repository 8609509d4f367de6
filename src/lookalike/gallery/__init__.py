"""Galleries (Tencent-style image search): groups of pictures, searched by image, filtered by tags."""

from lookalike.gallery.filters import parse_filter
from lookalike.gallery.models import GROUP_TYPE_MODELS, MODEL_GROUP_TYPES, NewImage, SearchHit
from lookalike.gallery.service import GalleryService

__all__ = ["GROUP_TYPE_MODELS", "MODEL_GROUP_TYPES", "GalleryService", "NewImage", "SearchHit", "parse_filter"]
