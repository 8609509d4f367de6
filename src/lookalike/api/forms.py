"""The one multipart reader of every route that takes uploaded files (native and gallery dialects).

A form is read once into :class:`Form`: the files of the named file fields (each bounded by
``max_image_bytes`` while it is read, so a large upload costs at most the limit plus one byte),
and the text fields, each checked to be text. Unknown fields are refused rather than ignored, so a
misspelt ``match_treshold`` is an error instead of a silent default. The typed getters turn a text
field into the value its JSON twin would carry, with the same InvalidParameter wording for both
wires.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from lookalike.errors import ImageSizeExceed, InvalidParameter, LookalikeError


def is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


@dataclass(frozen=True)
class Upload:
    filename: str
    data: bytes


@dataclass
class Form:
    """A read multipart form: uploads by file field, text by field name."""

    files: dict[str, list[Upload]] = field(default_factory=dict)
    text: dict[str, str] = field(default_factory=dict)

    def uploads(self, name: str) -> list[Upload]:
        return self.files.get(name, [])

    def get(self, name: str) -> str | None:
        """The text of a field; an empty field counts as absent (HTML forms send empty inputs)."""
        value = self.text.get(name)
        return value if value else None

    def integer(self, name: str) -> int | None:
        value = self.get(name)
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:
            raise InvalidParameter(f"{name} must be an integer") from None

    def number(self, name: str) -> float | None:
        value = self.get(name)
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            raise InvalidParameter(f"{name} must be a number") from None

    def boolean(self, name: str, default: bool) -> bool:
        """true/false or 1/0, any case; anything else is refused."""
        value = self.get(name)
        if value is None:
            return default
        if value.lower() not in ("true", "false", "1", "0"):
            raise InvalidParameter(f"form field {name!r} must be true or false")
        return value.lower() in ("true", "1")

    def json(self, name: str) -> Any:
        value = self.get(name)
        if value is None:
            return None
        try:
            return json.loads(value)
        except ValueError as exc:
            raise InvalidParameter(f"{name} is not valid JSON: {exc}") from None


async def read_form(
    request: Request, files: tuple[str, ...], fields: tuple[str, ...], *, max_files: int, max_image_bytes: int
) -> Form:
    """The form of ``request``: ``files`` are file fields, ``fields`` text fields; nothing else."""
    try:
        form = await request.form(max_files=max_files, max_fields=len(fields) + 1)
    except LookalikeError:
        raise  # BodyLimit's ImageSizeExceed while the form is spooled
    except Exception as exc:
        raise InvalidParameter(f"cannot read the multipart form: {exc}") from None
    out = Form(files={name: [] for name in files})
    for key, value in form.multi_items():
        if key in files:
            if isinstance(value, str):
                raise InvalidParameter(f"form field {key!r} must be a file")
            data = await value.read(max_image_bytes + 1)
            if len(data) > max_image_bytes:
                raise ImageSizeExceed(f"{value.filename or key} is larger than {max_image_bytes} bytes")
            out.files[key].append(Upload(value.filename or "", data))
        elif key in fields:
            if not isinstance(value, str):
                raise InvalidParameter(f"form field {key!r} must be text")
            out.text[key] = value
        else:
            raise InvalidParameter(f"unknown form field {key!r}; expected {', '.join((*files, *sorted(fields)))}")
    return out
