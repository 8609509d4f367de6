"""The subject detector of product groups: SSD-MobileNetV2 trained on Open Images v4 (23 classes).

The weights are the ones mediapipe's Objectron ships in its npm package (Apache-2.0), converted
once to ONNX by ``lookalike models install detector`` (:mod:`lookalike.models.detector_install`);
here they only run, on onnxruntime. The model takes a 300x300 RGB image scaled to [-1, 1] (the
whole picture stretched, as mediapipe feeds it) and answers, for each of 1917 SSD anchors, a box
encoding and 24 class logits (0 is the background). The anchors and the box decoding follow
mediapipe's ``object_detection_oid_v4`` graph: six feature maps (strides 16..512), scales 0.2 to
0.95, aspect ratios 1, 2, 1/2, 3, 1/3 plus an interpolated scale, three anchors in the lowest
layer; centres scaled by 10, sizes by 5 and exponentiated; sigmoid scores. About 20 ms a picture
on one core.

None of the 23 classes is a garment or a bag: only footwear (Footwear, Boot, High heels) maps to
one of Tencent's product categories (4, shoes). Every other class is a subject of category -1.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from lookalike.errors import ModelUnavailable

INPUT_SIDE = 300
INSTALL_COMMAND = "lookalike models install detector"
MODEL_FILE = "ssd_mobilenetv2_oidv4.onnx"
LABELS_FILE = "oidv4_labels.txt"

CATEGORY_NONE = -1
"""Box.CategoryId of a subject outside Tencent's six product categories."""
TENCENT_CATEGORIES = {0: "tops", 1: "skirts and dresses", 2: "bottoms", 3: "bags", 4: "shoes", 5: "accessories"}
LABEL_CATEGORIES = {"Footwear": 4, "Boot": 4, "High heels": 4}
"""The detector's classes that are one of Tencent's categories; the detector knows no garment,
bag or accessory, so CategoryId 0, 1, 2, 3 and 5 cannot be honoured (the answer says so by the
CategoryId of the box it used)."""

MIN_SCORE = 0.4
"""Detections kept: mediapipe's own filter for this model is 0.4 (after a 0.6 pre-filter for
its single-box use; we keep every box above 0.4 for AllBox)."""
NMS_IOU = 0.4
MAX_BOXES = 10


@dataclass(frozen=True)
class Detection:
    """A box in the pixels of the image that was given, its confidence and class."""

    x: int
    y: int
    width: int
    height: int
    score: float
    label: str

    @property
    def category(self) -> int:
        return LABEL_CATEGORIES.get(self.label, CATEGORY_NONE)

    @property
    def area(self) -> int:
        return self.width * self.height


def ssd_anchors() -> np.ndarray:
    """(1917, 4) anchors as (y_centre, x_centre, height, width), normalised: mediapipe's
    SsdAnchorsCalculator with the options of the oid_v4 graph."""
    strides = (16, 32, 64, 128, 256, 512)
    ratios = (1.0, 2.0, 0.5, 3.0, 0.3333)
    min_scale, max_scale, layers = 0.2, 0.95, len(strides)

    def scale(i: int) -> float:
        return min_scale + (max_scale - min_scale) * i / (layers - 1)

    anchors = []
    for layer, stride in enumerate(strides):
        if layer == 0:  # reduce_boxes_in_lowest_layer
            shapes = [(1.0, 0.1), (2.0, scale(0)), (0.5, scale(0))]
        else:
            shapes = [(r, scale(layer)) for r in ratios]
            upper = 1.0 if layer == layers - 1 else scale(layer + 1)
            shapes.append((1.0, math.sqrt(scale(layer) * upper)))
        sizes = [(s / math.sqrt(r), s * math.sqrt(r)) for r, s in shapes]  # (height, width)
        side = math.ceil(INPUT_SIDE / stride)
        for y in range(side):
            for x in range(side):
                for h, w in sizes:
                    anchors.append(((y + 0.5) / side, (x + 0.5) / side, h, w))
    return np.asarray(anchors, dtype=np.float32)


def _decode_boxes(raw: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Raw encodings (n, 4: y, x, h, w) -> normalised corners (n, 4: x0, y0, x1, y1)."""
    yc = raw[:, 0] / 10.0 * anchors[:, 2] + anchors[:, 0]
    xc = raw[:, 1] / 10.0 * anchors[:, 3] + anchors[:, 1]
    h = np.exp(raw[:, 2] / 5.0) * anchors[:, 2]
    w = np.exp(raw[:, 3] / 5.0) * anchors[:, 3]
    return np.stack([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2], axis=1)


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], others[:, 0])
    y0 = np.maximum(box[1], others[:, 1])
    x1 = np.minimum(box[2], others[:, 2])
    y1 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def _nms(boxes: np.ndarray, scores: np.ndarray) -> list[int]:
    order = list(np.argsort(-scores))
    keep: list[int] = []
    while order and len(keep) < MAX_BOXES:
        best = order.pop(0)
        keep.append(best)
        if order:
            overlap = _iou(boxes[best], boxes[order])
            order = [i for i, o in zip(order, overlap, strict=True) if o < NMS_IOU]
    return keep


class SubjectDetector:
    """Finds the subjects of a picture. Thread-safe (one run at a time)."""

    def __init__(self, directory: Path, *, threads: int = 1) -> None:
        model, labels = directory / MODEL_FILE, directory / LABELS_FILE
        if not model.is_file() or not labels.is_file():
            raise ModelUnavailable(
                f"the subject detector of product groups is not installed in {directory}: run `{INSTALL_COMMAND}`"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        self.channels_first = first.shape[1] == 3  # tflite2onnx answers NCHW
        self.labels = labels.read_text().splitlines()
        self.anchors = ssd_anchors()
        self._lock = threading.Lock()

    def _run(self, tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            outputs = self.session.run(None, {self.input_name: tensor})
        by_last = {o.shape[-1]: o[0] for o in outputs}
        return by_last[4], by_last[len(self.labels)]

    def detect(self, image: Image.Image) -> list[Detection]:
        """Boxes scoring at least MIN_SCORE after non-maximum suppression, best first."""
        width, height = image.size
        small = image.convert("RGB").resize((INPUT_SIDE, INPUT_SIDE), Image.Resampling.BILINEAR)
        tensor = (np.asarray(small, dtype=np.float32)[None] / 127.5) - 1.0
        if self.channels_first:
            tensor = np.ascontiguousarray(tensor.transpose(0, 3, 1, 2))
        raw, logits = self._run(tensor)
        scores = 1.0 / (1.0 + np.exp(-logits[:, 1:]))  # column 0 is the background
        best_class = scores.argmax(axis=1)
        best_score = scores[np.arange(len(scores)), best_class]
        candidates = np.flatnonzero(best_score >= MIN_SCORE)
        if not len(candidates):
            return []
        corners = np.clip(_decode_boxes(raw[candidates], self.anchors[candidates]), 0.0, 1.0)
        found = []
        for i in _nms(corners, best_score[candidates]):
            x0, y0, x1, y1 = corners[i]
            box = (round(x0 * width), round(y0 * height), round((x1 - x0) * width), round((y1 - y0) * height))
            if box[2] >= 8 and box[3] >= 8:
                label = self.labels[best_class[candidates[i]] + 1]
                found.append(Detection(*box, score=float(best_score[candidates[i]]), label=label))
        return found
