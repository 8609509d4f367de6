"""Field rules of groups and images, each refusal with Tencent's own error code.

Every entry point (Tencent dialect, native REST, CLI, Python) goes through these, so a value
refused by one is refused by all, with the same code.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Mapping
from typing import Any

from lookalike import errors
from lookalike.gallery import models as m
from lookalike.images.decode import Rect

_MAX_DOUBLE = sys.float_info.max

_GROUP_ID = re.compile(r"[A-Za-z0-9_]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TENANT = re.compile(r"[A-Za-z0-9_-]{1,64}")


def tenant(value: str) -> str:
    """A tenant name: it prefixes the tenant's GroupIds in the store, so never a "/"."""
    if not isinstance(value, str) or not _TENANT.fullmatch(value):
        raise errors.InvalidParameterValue(f"tenant {value!r}: use 1-64 letters, digits, '-' or '_'")
    return value


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise errors.InvalidParameter(f"{name} must be a string")
    return value


def _bounded(
    value: Any,
    name: str,
    most: int,
    too_long: type[errors.LookalikeError],
    empty: type[errors.LookalikeError] | None = None,
    empty_message: str = "",
) -> str:
    """A string of at most ``most`` characters. ``empty`` set: required; unset: None means ""."""
    if value is None or value == "":
        if empty is not None:
            raise empty(empty_message or f"{name} is empty")
        return ""
    value = _text(value, name)
    if len(value) > most:
        raise too_long(f"{name} has {len(value)} characters; at most {most}")
    return value


def group_id(value: Any) -> str:
    value = _bounded(
        value, "GroupId", m.GROUP_ID_MAX, errors.ImageGroupIdTooLong, errors.ImageGroupIdIllegal,
        "GroupId is empty; use letters, digits and _",
    )
    if not _GROUP_ID.fullmatch(value):
        raise errors.ImageGroupIdIllegal(f"GroupId {value!r} may hold only letters, digits and _")
    return value


def group_name(value: Any) -> str:
    if isinstance(value, str) and not value.strip():
        raise errors.ImageGroupNameEmpty("GroupName is empty")
    return _bounded(value, "GroupName", m.GROUP_NAME_MAX, errors.ImageGroupNameTooLong, errors.ImageGroupNameEmpty)


def brief(value: Any) -> str:
    return _bounded(value, "Brief", m.BRIEF_MAX, errors.BriefTooLong)


INT32_MAX = 2**31 - 1
"""Tencent's Integer: anything larger is the caller's error, never an overflow in the store."""


def non_negative_int(value: Any, name: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.InvalidParameter(f"{name} must be an integer")
    if not 0 <= value <= INT32_MAX:
        raise errors.InvalidParameterValue(f"{name} must be between 0 and {INT32_MAX}")
    return value


def group_type(value: Any) -> int:
    if value is None or value == 0:
        return m.DEFAULT_GROUP_TYPE
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.InvalidParameter("GroupType must be an integer")
    if value not in m.GROUP_TYPE_MODELS:
        known = ", ".join(str(t) for t in m.GROUP_TYPE_MODELS)
        raise errors.InvalidParameterValue(f"GroupType {value} is not supported; use one of {known}")
    return value


def entity_id(value: Any) -> str:
    return _bounded(value, "EntityId", m.ENTITY_ID_MAX, errors.EntityIdTooLong, errors.EntityIdEmpty)


def pic_name(value: Any) -> str:
    value = _bounded(value, "PicName", m.PIC_NAME_MAX, errors.PicNameTooLong, errors.PicNameEmpty)
    if _CONTROL.search(value):
        raise errors.PicNameInvalid("PicName may not contain control characters")
    return value


def custom_content(value: Any) -> str:
    return _bounded(value, "CustomContent", m.CUSTOM_CONTENT_MAX, errors.CustomContentTooLong)


def tags(value: Any) -> dict[str, object]:
    """A JSON object (or its text, as Tencent sends it) of at most 10 keys -> string or number."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value, parse_constant=_no_constant)
        except ValueError as exc:
            raise errors.TagsValueIllegal(f"Tags is not valid JSON: {exc}") from None
    if not isinstance(value, Mapping):
        raise errors.TagsValueIllegal('Tags must be a JSON object such as {"colour": "red", "size": 3}')
    if len(value) > m.TAGS_MAX_KEYS:
        raise errors.TagsKeysExceed(f"Tags has {len(value)} keys; at most {m.TAGS_MAX_KEYS}")
    out: dict[str, object] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key or _CONTROL.search(key):
            raise errors.TagsValueIllegal(f"tag key {key!r} must be a non-empty printable string")
        if len(key) > m.TAG_KEY_MAX:
            raise errors.TagsValueSizeExceed(f"tag key {key[:20]!r}... is longer than {m.TAG_KEY_MAX} characters")
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise errors.TagsValueIllegal(f"tag {key!r}: values must be strings or numbers")
        if isinstance(item, float) and not math.isfinite(item) or isinstance(item, int) and abs(item) > _MAX_DOUBLE:
            # an int no double holds: Milvus' JSON refuses it (a 503 there); refused here on every backend
            raise errors.TagsValueIllegal(f"tag {key!r}: numbers must be finite and fit a double")
        if isinstance(item, str) and len(item) > m.TAG_VALUE_MAX:
            raise errors.TagsValueSizeExceed(f"tag {key!r}: the value is longer than {m.TAG_VALUE_MAX} characters")
        out[key] = item
    return out


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a number JSON allows")


def rect(value: Any, names: tuple[str, str, str, str] = ("X", "Y", "Width", "Height")) -> Rect | None:
    """ImageRect ``{X, Y, Width, Height}`` (pixels of the oriented original) -> Rect."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise errors.InvalidParameter(f"ImageRect must be an object with {', '.join(names)}")
    parts = []
    for key in names:
        item = value.get(key)
        if isinstance(item, bool) or not isinstance(item, int):
            raise errors.InvalidParameterValue(
                f"ImageRect.{key} must be an integer", code="InvalidParameterValue.ImageRectInvalid"
            )
        parts.append(item)
    unknown = set(value) - set(names)
    if unknown:
        raise errors.InvalidParameter(f"ImageRect: unknown keys {', '.join(sorted(map(str, unknown)))}")
    x, y, width, height = parts
    if x < 0 or y < 0 or width <= 0 or height <= 0:
        raise errors.InvalidParameterValue(
            "ImageRect needs X, Y >= 0 and Width, Height > 0", code="InvalidParameterValue.ImageRectInvalid"
        )
    return Rect(x, y, width, height)


def limit(value: Any, *, name: str = "Limit") -> int:
    """Tencent's Limit: 0 or absent is the default (10), above 100 is LimitExceed."""
    if value is None or value == 0:
        return m.DEFAULT_LIMIT
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.InvalidParameter(f"{name} must be an integer")
    if value < 0:
        raise errors.InvalidParameterValue(
            f"{name} must be between 1 and {m.MAX_LIMIT}", code="InvalidParameterValue.InvalidParameterValueLimit"
        )
    if value > m.MAX_LIMIT:
        raise errors.LimitExceed(f"{name} is {value}; at most {m.MAX_LIMIT}")
    return value


def offset(value: Any, *, name: str = "Offset") -> int:
    return non_negative_int(value, name, 0)


def match_threshold(value: Any) -> float:
    """0..100; 0 (or absent) means the group type's default."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise errors.InvalidParameter("MatchThreshold must be an integer")
    if not 0 <= value <= 100:
        raise errors.InvalidParameterValue(f"MatchThreshold is {value}; use 0..100 (0 = the default)")
    return float(value)
