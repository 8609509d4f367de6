"""Product search on cluttered photos, through the Tencent wire (issue 17).

A shopper's photo shows the product somewhere in a scene. bench/clutter_set.py pastes each
UKBench object (its first view) into a Holidays scene at 30-50% of the width, a random place and
a slight rotation, re-encoded; the gallery is the other three views of every object. A real
``lookalike serve`` is driven by Tencent's own SDK (tencentcloud-sdk-python-tiia):

* general group (GroupType 4): the cluttered queries and the clean views (today's behaviour);
* product group (GroupType 5, EnableDetect on at both ends), each subject finder: ``detector``
  (the detector's boxes only, LOOKALIKE_SUBJECT_WINDOWS=false) and ``detector+windows`` (the
  default: the detector's boxes and the windows of the query's region map, refined and grown);
  the answer's Object.Box is compared with the pasted box (IoU);
* the oracle: the product group searched with ImageRect = the pasted box;
* latency: the mean SearchImage time with EnableDetect against the same query without it.

    .venv/bin/python bench/clutter.py                 # all 250 objects (about an hour on 2 busy cores)
    .venv/bin/python bench/clutter.py --objects 40
    LOOKALIKE_SUBJECT_SIDE=384 .venv/bin/python bench/clutter.py --objects 20   # the server takes the environment

Needs the detector (``lookalike models install detector``). Writes bench/results/clutter.json
(or --out). Skips cleanly (exit 0) when ../shared/eval is absent.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

import clutter_set
import common

GENERAL, PRODUCT = "clutter_general", "clutter_product"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_flags() -> str:
    """The vector extensions onnxruntime can use (what the figures depend on)."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = {f for line in text.splitlines() if line.startswith("flags") for f in line.split(":", 1)[1].split()}
    return " ".join(sorted(f for f in flags if f.startswith("avx512") or f in ("avx2", "avx_vnni")))


@contextmanager
def serving(data_dir: Path, env: dict[str, str]):
    """A ``lookalike serve`` subprocess on a free loopback port; yields the SDK client."""
    import httpx
    from tencentcloud.common import credential
    from tencentcloud.common.profile.client_profile import ClientProfile
    from tencentcloud.common.profile.http_profile import HttpProfile
    from tencentcloud.tiia.v20190529 import tiia_client

    port = _free_port()
    cmd = [sys.executable, "-m", "lookalike.cli", "serve", "--port", str(port), "--data-dir", str(data_dir)]
    proc = subprocess.Popen(cmd, env={**os.environ, "LOOKALIKE_GROUP_QPS": "false", **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        http = HttpProfile(endpoint=f"127.0.0.1:{port}", protocol="http", reqTimeout=300)
        cred = credential.Credential("AKIDclutterBench", "not-a-secret")
        yield tiia_client.TiiaClient(cred, "ap-guangzhou", ClientProfile(httpProfile=http))
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def _request(cls_name: str, **fields):
    from tencentcloud.tiia.v20190529 import models

    req = getattr(models, cls_name)()
    for key, value in fields.items():
        setattr(req, key, value)
    return req


def ingest(client, group: str, group_type: int, gallery) -> None:
    client.CreateGroup(_request("CreateGroupRequest", GroupId=group, GroupName=group, GroupType=group_type,
                                MaxCapacity=100000))
    for entity, name, data in gallery:
        client.CreateImage(_request("CreateImageRequest", GroupId=group, EntityId=entity, PicName=name,
                                    ImageBase64=base64.b64encode(data).decode()))


def search(client, group: str, data: bytes, **extra) -> tuple[list[str], object, float]:
    """(entities best first, Object, seconds)."""
    start = time.perf_counter()
    resp = client.SearchImage(_request("SearchImageRequest", GroupId=group, ImageBase64=base64.b64encode(data).decode(),
                                       Limit=10, MatchThreshold=1, **extra))
    seconds = time.perf_counter() - start
    return [i.EntityId for i in resp.ImageInfos or []], resp.Object, seconds


class Tally:
    """R@1, R@10, IoU of the answered box, seconds per search."""

    def __init__(self) -> None:
        self.top1: list[bool] = []
        self.top10: list[bool] = []
        self.ious: list[float] = []
        self.seconds: list[float] = []

    def add(self, entity: str, found: list[str], seconds: float, iou: float | None = None) -> None:
        self.top1.append(bool(found) and found[0] == entity)
        self.top10.append(entity in found[:10])
        self.seconds.append(seconds)
        if iou is not None:
            self.ious.append(iou)

    def row(self) -> dict:
        out = {"queries": len(self.top1), "r1": round(float(np.mean(self.top1)), 4),
               "r10": round(float(np.mean(self.top10)), 4), "search_ms": round(1000 * float(np.mean(self.seconds)), 1)}
        if self.ious:
            out["iou_mean"] = round(float(np.mean(self.ious)), 4)
            out["iou_ge_0_5"] = round(float(np.mean(np.array(self.ious) >= 0.5)), 4)
        return out


def box_iou(obj, truth: tuple[int, int, int, int]) -> float:
    if obj is None or obj.Box is None:
        return 0.0
    r = obj.Box.Rect
    return clutter_set.iou((r.X, r.Y, r.Width, r.Height), truth)


def run_queries(client, data, rows: dict, finder: str) -> None:
    """Every measurement one server (one finder setting) can make."""
    from tencentcloud.tiia.v20190529 import models

    t: dict[str, Tally] = {}
    for q in data.queries:
        def tally(name: str) -> Tally:
            return t.setdefault(name, Tally())

        found, obj, s = search(client, PRODUCT, q.jpeg)
        tally(f"product {finder}: cluttered").add(q.entity, found, s, box_iou(obj, q.box))
        found, _, s_off = search(client, PRODUCT, q.jpeg, EnableDetect=False)
        tally(f"product {finder}: cluttered, EnableDetect off").add(q.entity, found, s_off)
        if finder == "detector+windows":
            found, _, s = search(client, GENERAL, q.jpeg)
            tally("general: cluttered").add(q.entity, found, s)
            found, _, s = search(client, GENERAL, q.clean)
            tally("general: clean").add(q.entity, found, s)
            found, _, s = search(client, PRODUCT, q.clean)
            tally("product detector+windows: clean").add(q.entity, found, s)
            rect = models.ImageRect()
            rect.X, rect.Y, rect.Width, rect.Height = q.box
            found, obj, s = search(client, PRODUCT, q.jpeg, ImageRect=rect)
            tally("product: oracle crop (ImageRect = pasted box)").add(q.entity, found, s)
    for name, tl in t.items():
        rows[name] = tl.row()
        print(f"{name:50s} {rows[name]}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=250)
    parser.add_argument("--out", type=Path, default=common.RESULTS_DIR / "clutter.json")
    args = parser.parse_args()
    root = common.require_eval_sets(["ukbench1000", "holidays811"])
    data = clutter_set.build(root, objects=args.objects)
    rows: dict[str, dict] = {}
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="lookalike-clutter-") as tmp:
        data_dir = Path(tmp) / "data"
        with serving(data_dir, {}) as client:
            ingest(client, GENERAL, 4, data.gallery)
            ingest(client, PRODUCT, 5, data.gallery)
            run_queries(client, data, rows, "detector+windows")
        with serving(data_dir, {"LOOKALIKE_SUBJECT_WINDOWS": "false"}) as client:
            run_queries(client, data, rows, "detector")
    on = rows["product detector+windows: cluttered"]["search_ms"]
    off = rows["product detector+windows: cluttered, EnableDetect off"]["search_ms"]
    result = {
        "objects": args.objects,
        "queries": len(data.queries),
        "gallery": len(data.gallery),
        "rows": rows,
        "detection_adds": round(on / off - 1, 4),
        "cpu": common.cpu_model(),
        "cpu_flags": cpu_flags(),
        "machine": common.machine(),
        "seconds": round(time.time() - started, 1),
        "command": "bench/clutter.py " + " ".join(sys.argv[1:]),
    }
    print(f"detection adds {100 * result['detection_adds']:.0f}% to a product search ({on} ms against {off} ms)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
