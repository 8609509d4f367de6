"""``lookalike models install detector``: the subject detector, from its package to ONNX, once.

The weights come from the npm registry through npm itself (``npm pack``, which checks the
package's integrity): mediapipe's Objectron package packs its assets into one file,
``objectron_solution_packed_assets.data``, whose byte ranges ``..._loader.js`` lists; one of
them is the SSD-MobileNetV2 Open Images v4 detector (TFLite, fp16), another its label map.
``tflite2onnx`` (PyPI, pure Python, the ``detector`` extra) converts it to ONNX in a few seconds.
Nothing is fetched at run time: the server only reads what this wrote.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from lookalike.errors import ModelUnavailable
from lookalike.models.detector import INPUT_SIDE, LABELS_FILE, MODEL_FILE
from lookalike.models.regions import install_regions

NPM_PACKAGE = "@mediapipe/objectron@0.4.1675468480"
ASSETS = "package/objectron_solution_packed_assets.data"
LOADER = "package/objectron_solution_packed_assets_loader.js"
MODEL_ASSET = "object_detection_ssd_mobilenetv2_oidv4_fp16.tflite"
LABELS_ASSET = "object_detection_oidv4_labelmap.txt"
_RANGE = re.compile(r'"filename":\s*"([^"]+)",\s*"start":\s*(\d+),\s*"end":\s*(\d+)')


def _npm_pack(into: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise ModelUnavailable("installing the detector needs npm (Debian: `apt-get install npm`)")
    done = subprocess.run(
        [npm, "pack", NPM_PACKAGE, "--pack-destination", str(into), "--json"],
        capture_output=True, text=True, timeout=600,
    )
    if done.returncode != 0:
        raise ModelUnavailable(f"`npm pack {NPM_PACKAGE}` failed: {done.stderr.strip()[-500:]}")
    return into / json.loads(done.stdout)[0]["filename"]


def _unpack_assets(tarball: Path) -> dict[str, bytes]:
    """The detector and its labels, cut out of the packed assets by the loader's byte ranges."""
    with tarfile.open(tarball) as tar:
        loader = tar.extractfile(LOADER).read().decode()  # type: ignore[union-attr]
        assets = tar.extractfile(ASSETS).read()  # type: ignore[union-attr]
    out = {}
    for name, start, end in _RANGE.findall(loader):
        base = name.rsplit("/", 1)[-1]
        if base in (MODEL_ASSET, LABELS_ASSET):
            out[base] = assets[int(start) : int(end)]
    if set(out) != {MODEL_ASSET, LABELS_ASSET}:
        raise ModelUnavailable(f"{NPM_PACKAGE} does not hold {MODEL_ASSET} and {LABELS_ASSET} where expected")
    return out


def _convert(tflite: Path, onnx_path: Path) -> None:
    try:
        import tflite2onnx
    except ImportError:
        raise ModelUnavailable(
            "installing the detector needs tflite2onnx: "
            "`pip install 'lookalike[detector]'` (or `pip install tflite2onnx`)"
        ) from None
    tflite2onnx.convert(str(tflite), str(onnx_path))


def _check(onnx_path: Path, classes: int) -> None:
    """The converted model runs and answers 1917 boxes and classes + 1 scores."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    first = session.get_inputs()[0]
    shape = (1, 3, INPUT_SIDE, INPUT_SIDE) if first.shape[1] == 3 else (1, INPUT_SIDE, INPUT_SIDE, 3)
    outputs = session.run(None, {first.name: np.zeros(shape, np.float32)})
    shapes = sorted(tuple(o.shape) for o in outputs)
    if shapes != sorted([(1, 1917, 4), (1, 1917, classes + 1)]):
        raise ModelUnavailable(f"the converted detector answers {shapes}, not boxes and scores for 1917 anchors")


def install_detector(directory: Path) -> Path:
    """Writes the detector (ONNX) and its labels, and the region model of product queries
    (:func:`lookalike.models.regions.install_regions`), into ``directory``; returns the
    detector's path. Idempotent: what is installed is left as it is."""
    install_regions(directory)
    model_path = directory / MODEL_FILE
    if model_path.is_file() and (directory / LABELS_FILE).is_file():
        return model_path
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lookalike-detector-") as tmp:
        work = Path(tmp)
        assets = _unpack_assets(_npm_pack(work))
        tflite = work / MODEL_ASSET
        tflite.write_bytes(assets[MODEL_ASSET])
        labels = [line.strip() for line in assets[LABELS_ASSET].decode().splitlines() if line.strip()]
        converted = work / MODEL_FILE
        _convert(tflite, converted)
        _check(converted, len(labels) - 1)
        (directory / LABELS_FILE).write_text("\n".join(labels) + "\n")
        shutil.move(str(converted), model_path)  # last: its presence means the install finished
    return model_path
