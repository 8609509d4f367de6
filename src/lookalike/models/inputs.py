"""How a decoded image becomes the model's pixels.

SSCD is fully convolutional, so it takes any size. Keeping the aspect ratio with the shorter
side at 288 px beats stretching to 224x224 on both evaluation sets, and averaging the vector
of the image with that of its mirror image pins mirrored copies (docs/benchmarks.md, "Quality").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from PIL import Image

from lookalike.errors import InvalidParameterValue

_SPEC = re.compile(r"^(short|stretch)(\d{2,4})$")


@dataclass(frozen=True)
class InputGeometry:
    """``short288``: shorter side scaled to 288, aspect kept, longer side at most ``max_long``;
    ``stretch224``: stretched to 224x224 (the pre-0.2 input, cheapest, batches at any aspect)."""

    mode: str = "short"
    side: int = 288
    max_long: int = 512

    @classmethod
    def parse(cls, spec: str) -> InputGeometry:
        match = _SPEC.match(spec.strip())
        if not match or not 64 <= int(match.group(2)) <= 1024:
            raise InvalidParameterValue(f"input geometry must be shortN or stretchN (N 64..1024), not {spec!r}")
        side = int(match.group(2))
        return cls(match.group(1), side, max(side, 512) if match.group(1) == "short" else side)

    @property
    def tag(self) -> str:
        return f"{self.mode}{self.side}"

    @property
    def decode_size(self) -> tuple[int, int]:
        """The least (width, height) a JPEG may be draft-decoded to without losing model detail."""
        return (self.side, self.side)

    def size(self, width: int, height: int) -> tuple[int, int]:
        if self.mode == "stretch":
            return (self.side, self.side)
        scale = min(self.side / min(width, height), self.max_long / max(width, height))
        return (max(1, round(width * scale)), max(1, round(height * scale)))

    def pixels(self, image: Image.Image) -> np.ndarray:
        """uint8 (height, width, 3) for the model."""
        if image.mode != "RGB":
            image = image.convert("RGB")
        size = self.size(*image.size)
        if image.size != size:
            image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=None)
        return np.asarray(image, dtype=np.uint8)


def pipeline_tag(geometry: str, flip: bool) -> str:
    """Names the input pipeline behind a vector (``short288+flip``): caches must not mix two."""
    return InputGeometry.parse(geometry).tag + ("+flip" if flip else "")


@dataclass(frozen=True)
class Pipeline:
    """What turns a decoded image into a vector: a model, its input geometry and whether the
    vector averages the mirror view. Each job picks its own (docs/benchmarks.md, "Speed"): the
    gallery's stored side pays for quality, a pair's first opinion for speed."""

    model: str
    geometry: InputGeometry
    flip: bool = False

    @classmethod
    def of(cls, model: str, geometry: str, flip: bool = False) -> Pipeline:
        return cls(model, InputGeometry.parse(geometry), flip)

    @property
    def tag(self) -> str:
        """``sscd@short288+flip``: the key of its calibration and of cached vectors."""
        return f"{self.model}@{self.geometry.tag}" + ("+flip" if self.flip else "")
