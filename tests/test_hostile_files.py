"""Every hostile file (tests/hostile_files.py) through every image-taking route of a real server.

No answer may be a 5xx (nor, in the Tencent dialect, an InternalError / InnerError); each
refusal carries a documented code with its documented status; each valid picture is accepted;
afterwards the server still answers and a gallery seeded before the run holds exactly its
pictures, with their vectors intact.

The routes and the checks live here as functions so that bench/fuzz.py runs them at scale.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest

from hostile_files import IMAGE_CODES, Hostile, corpus, good_jpeg
from lookalike.config import Settings
from lookalike.engine import Engine
from lookalike.errors import LookalikeError

GROUP = "fuzz_seeded"
SEEDS = {f"seed-{i}": good_jpeg(100 + i, (320, 240)) for i in range(3)}
SOLID = "InvalidParameter.PictureSolidColorError"
TENCENT = {  # the README's image codes as the Tencent dialect spells them
    "ImageDecodeFailed": "FailedOperation.ImageDecodeFailed",
    "ImageNotSupported": "InvalidParameter.ImageFormatNotSupport",
    "ImageSizeExceed": "FailedOperation.ImageSizeExceed",
    "ImageResolutionExceed": "FailedOperation.ImageResolutionExceed",
    "ImageEmpty": "InvalidParameterValue.ImageEmpty",
}
STATUS = {"ImageSizeExceed": 413}  # every other documented image code is a 400
FORBIDDEN_TENCENT = {"InternalError", "FailedOperation.InnerError"}


# --------------------------------------------------------------------------- outcomes


@dataclass
class Outcome:
    route: str
    item: Hostile
    status: int
    code: str | None  # the error code as the dialect spells it; None on success
    seconds: float
    pic_name: str | None = None  # gallery adds: the name the picture was stored under
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.code is None and self.status < 400


def _native_code(response: httpx.Response) -> str | None:
    if response.status_code < 400 and response.status_code != 207:
        return None
    try:
        return response.json()["error"]["code"]
    except Exception:
        return f"<no code: {response.text[:80]!r}>"


def _aws_code(response: httpx.Response) -> str | None:
    if response.status_code < 400:
        return None
    try:
        return response.json()["Code"]
    except Exception:
        return f"<no code: {response.text[:80]!r}>"


def _pai_code(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except Exception:
        return f"<no code: {response.text[:80]!r}>"
    if response.status_code < 400 and body.get("success") is True:
        return None
    return body.get("error_code") or f"<no code: {response.text[:80]!r}>"


def _tencent_code(response: httpx.Response) -> str | None:
    try:
        body = response.json()["Response"]
    except Exception:
        return f"<no code: {response.text[:80]!r}>"
    if "Error" in body:
        return body["Error"].get("Code") or "<no code>"
    return None


# --------------------------------------------------------------------------- routes

Send = Callable[[httpx.Client, Hostile, int], tuple[httpx.Response, str | None]]


@dataclass(frozen=True)
class Route:
    name: str
    send: Send
    dialect: str  # native | aws | pai | tencent
    multipart: bool = False
    gallery: bool = False  # galleries refuse flat pictures, stored or searched
    gallery_add: bool = False


def _good_b64() -> str:
    return base64.b64encode(good_jpeg()).decode()


def _aws_single(client, item, i):
    return client.post("/image_similarity", json={"img": item.b64()}), None


def _aws_pair(client, item, i):
    return client.post("/image_similarity", json={"img_1": item.b64(), "img_2": _good_b64()}), None


def _aws_pair_second(client, item, i):
    return client.post("/image_similarity", json={"img_1": _good_b64(), "img_2": item.b64()}), None


def _pai(client, item, i):
    return client.post("/api/predict/svc", json={"imagea": item.b64(), "imageb": _good_b64()}), None


def _pai_second(client, item, i):
    return client.post("/api/predict/svc", json={"imagea": _good_b64(), "imageb": item.b64()}), None


def _embed_json(client, item, i):
    return client.post("/v1/embed", json={"images": [{"base64": item.b64()}]}), None


def _embed_json_batch(client, item, i):
    good = {"base64": _good_b64()}
    return client.post("/v1/embed", json={"images": [good, {"base64": item.b64()}, good]}), None


def _embed_multipart(client, item, i):
    return client.post("/v1/embed", files=[("images", (item.upload_name, item.data, "application/octet-stream"))]), None


def _compare_json(client, item, i):
    return client.post("/v1/compare", json={"a": {"base64": item.b64()}, "b": {"base64": _good_b64()}}), None


def _compare_multipart(client, item, i):
    files = {"a": (item.upload_name, item.data, "image/jpeg"), "b": ("good.jpg", good_jpeg(), "image/jpeg")}
    return client.post("/v1/compare", files=files), None


def _gallery_add_json(client, item, i):
    pic = f"nj-{i:04d}"
    body = {"entity_id": f"e-{pic}", "pic_name": pic, "image": {"base64": item.b64()}}
    return client.post(f"/v1/groups/{GROUP}/images", json=body), pic


def _gallery_add_multipart(client, item, i):
    pic = f"nm-{i:04d}"
    files = [("images", (item.upload_name, item.data, "application/octet-stream"))]
    return client.post(f"/v1/groups/{GROUP}/images", files=files, data={"entity_id": f"e-{pic}", "pic_name": pic}), pic


def _gallery_search_json(client, item, i):
    return client.post(f"/v1/groups/{GROUP}/search", json={"image": {"base64": item.b64()}, "limit": 3}), None


def _gallery_search_multipart(client, item, i):
    files = {"image": (item.upload_name, item.data, "application/octet-stream")}
    return client.post(f"/v1/groups/{GROUP}/search", files=files, data={"limit": "3"}), None


def _tencent(client, action: str, body: dict):
    headers = {"X-TC-Action": action, "X-TC-Version": "2019-05-29"}
    return client.post("/", json=body, headers=headers)


def _tencent_create(client, item, i):
    pic = f"tc-{i:04d}"
    body = {"GroupId": GROUP, "EntityId": f"e-{pic}", "PicName": pic, "ImageBase64": item.b64()}
    return _tencent(client, "CreateImage", body), pic


def _tencent_search(client, item, i):
    return _tencent(client, "SearchImage", {"GroupId": GROUP, "ImageBase64": item.b64(), "Limit": 3}), None


ROUTES = [
    Route("aws.img", _aws_single, "aws"),
    Route("aws.img_1", _aws_pair, "aws"),
    Route("pai.imagea", _pai, "pai"),
    Route("v1.embed.json", _embed_json, "native"),
    Route("v1.embed.multipart", _embed_multipart, "native", multipart=True),
    Route("v1.compare.json", _compare_json, "native"),
    Route("v1.compare.multipart", _compare_multipart, "native", multipart=True),
    Route("v1.gallery.add.json", _gallery_add_json, "native", gallery=True, gallery_add=True),
    Route("v1.gallery.add.multipart", _gallery_add_multipart, "native", multipart=True, gallery=True, gallery_add=True),
    Route("v1.gallery.search.json", _gallery_search_json, "native", gallery=True),
    Route("v1.gallery.search.multipart", _gallery_search_multipart, "native", multipart=True, gallery=True),
    Route("tencent.CreateImage", _tencent_create, "tencent", gallery=True, gallery_add=True),
    Route("tencent.SearchImage", _tencent_search, "tencent", gallery=True),
]
"""What the test sends: every image-taking route, the hostile file in the first image slot."""

EXTRA_ROUTES = [
    Route("aws.img_2", _aws_pair_second, "aws"),
    Route("pai.imageb", _pai_second, "pai"),
    Route("v1.embed.json.batch", _embed_json_batch, "native"),
]
"""bench/fuzz.py adds these: the hostile file in the second slot, or inside a batch."""

_CODE_OF = {"native": _native_code, "aws": _aws_code, "pai": _pai_code, "tencent": _tencent_code}


def send(client: httpx.Client, route: Route, item: Hostile, index: int) -> Outcome:
    start = time.perf_counter()
    try:
        response, pic = route.send(client, item, index)
    except httpx.TimeoutException as exc:
        return Outcome(route.name, item, 0, "<timeout>", time.perf_counter() - start, note=repr(exc))
    except httpx.HTTPError as exc:
        return Outcome(route.name, item, 0, "<connection error>", time.perf_counter() - start, note=repr(exc))
    code = _CODE_OF[route.dialect](response)
    return Outcome(
        route.name,
        item,
        response.status_code,
        code,
        time.perf_counter() - start,
        pic if code is None else None,
        note=response.text[:200] if code is not None else "",
    )


def violations(route: Route, outcome: Outcome) -> list[str]:
    """What is wrong with one answer (empty when it is as documented)."""
    item, code, status = outcome.item, outcome.code, outcome.status
    where = f"{route.name} {item.name}: HTTP {status} {code or 'ok'}"
    if status == 0 or status >= 500:
        return [f"{where}: server error or no answer {outcome.note}"]
    if route.dialect == "tencent" and status != 200:
        return [f"{where}: the Tencent dialect answers HTTP 200"]
    if code in FORBIDDEN_TENCENT:
        return [f"{where}: internal error"]
    must_succeed = item.valid is True and not (route.gallery and item.flat)
    if code is None:
        if item.valid is False:
            return [f"{where}: accepted a file that must be refused ({item.category})"]
        return []
    if must_succeed:
        return [f"{where}: refused a valid picture: {outcome.note}"]
    allowed = set(item.codes)
    if route.gallery and item.valid is not False:
        allowed.add(SOLID)
    if item.json_only and not isinstance(item.text, str):
        allowed.add("InvalidParameter")
    if route.dialect == "tencent":
        allowed = {TENCENT.get(c, c) for c in allowed}
    if code not in allowed:
        return [f"{where}: expected one of {sorted(allowed)}: {outcome.note}"]
    if route.dialect != "tencent":
        want = STATUS.get(code, 400)
        if status != want:
            return [f"{where}: {code} is documented as HTTP {want}"]
    return []


@dataclass
class Run:
    outcomes: list[Outcome] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def by_route(self) -> dict[str, Counter]:
        table: dict[str, Counter] = {}
        for o in self.outcomes:
            table.setdefault(o.route, Counter())[f"{o.status} {o.code or 'ok'}"] += 1
        return table

    @property
    def server_errors(self) -> int:
        return sum(1 for o in self.outcomes if o.status == 0 or o.status >= 500 or o.code in FORBIDDEN_TENCENT)

    @property
    def stored(self) -> set[str]:
        return {o.pic_name for o in self.outcomes if o.pic_name}


def run_corpus(base_url: str, items: list[Hostile], routes: list[Route], *, workers: int = 4,
               timeout: float = 60.0, rounds: int = 1) -> Run:
    """Sends every item to every route (multipart routes skip JSON-only items), ``rounds`` times."""
    run = Run()
    lock = threading.Lock()
    jobs = [(route, item, r * len(items) + i) for r in range(rounds) for i, item in enumerate(items)
            for route in routes if not (route.multipart and item.json_only)]
    start = time.perf_counter()
    with httpx.Client(base_url=base_url, timeout=timeout) as client:

        def one(job):
            route, item, index = job
            outcome = send(client, route, item, index)
            problems = violations(route, outcome)
            with lock:
                run.outcomes.append(outcome)
                run.problems.extend(problems)

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, jobs))
    run.seconds = time.perf_counter() - start
    return run


# --------------------------------------------------------------------------- the gallery


def seed_gallery(client: httpx.Client) -> None:
    body = {"group_id": GROUP, "group_name": "seeded before fuzzing", "model": "sscd-small", "max_qps": 100000}
    response = client.post("/v1/groups", json=body)  # a MaxQps this high refuses no search
    assert response.status_code == 201, response.text
    for pic, data in SEEDS.items():
        files = [("images", (f"{pic}.jpg", data, "image/jpeg"))]
        response = client.post(f"/v1/groups/{GROUP}/images", files=files, data={"entity_id": pic, "pic_name": pic})
        assert response.status_code == 201, response.text


def gallery_pictures(client: httpx.Client) -> set[str]:
    names, offset = set(), 0
    while True:
        page = client.get(f"/v1/groups/{GROUP}/images", params={"offset": offset, "limit": 100})
        assert page.status_code == 200, page.text
        images = page.json()["images"]
        names |= {image["pic_name"] for image in images}
        if len(images) < 100:
            return names
        offset += 100


def check_gallery_after(client: httpx.Client, run: Run) -> list[str]:
    """The seeded pictures survive intact; the only other pictures are accepted valid ones,
    which are then deleted so the group holds exactly the seeds again."""
    problems = []
    names = gallery_pictures(client)
    expected = set(SEEDS) | run.stored
    if names != expected:
        problems.append(f"gallery holds {sorted(names ^ expected)[:10]} unexpectedly (missing or extra)")
    for o in run.outcomes:
        if o.pic_name and o.item.valid is False:
            problems.append(f"{o.route} stored {o.item.name}, which must be refused")
    for pic in sorted(run.stored & names):
        response = client.delete(f"/v1/groups/{GROUP}/images/{pic}")
        if response.status_code != 200:
            problems.append(f"cannot delete {pic}: {response.status_code} {response.text[:100]}")
    left = gallery_pictures(client)
    if left != set(SEEDS):
        problems.append(f"after deleting the accepted pictures the gallery holds {sorted(left)}, not {sorted(SEEDS)}")
    for pic, data in SEEDS.items():
        files = {"image": (f"{pic}.jpg", data, "image/jpeg")}
        hits = client.post(f"/v1/groups/{GROUP}/search", files=files, data={"limit": "3"})
        if hits.status_code != 200:
            problems.append(f"search for {pic}: {hits.status_code} {hits.text[:100]}")
            continue
        best = hits.json()["results"][:1]
        if not best or best[0]["pic_name"] != pic or best[0]["cosine"] < 0.99:
            problems.append(f"search for {pic} no longer finds it first: {best}")
        thumb = client.get(f"/v1/groups/{GROUP}/images/{pic}/thumbnail")
        if thumb.status_code != 200 or not thumb.content.startswith(b"\xff\xd8"):
            problems.append(f"thumbnail of {pic}: {thumb.status_code}")
    return problems


def check_health(client: httpx.Client) -> list[str]:
    """/healthz, /readyz and a valid comparison answer as they should."""
    problems = []
    for path in ("/healthz", "/readyz"):
        response = client.get(path)
        if response.status_code != 200:
            problems.append(f"{path}: {response.status_code} {response.text[:100]}")
    a, b = good_jpeg(3), good_jpeg(4)
    same = client.post("/v1/compare", files={"a": ("a.jpg", a, "image/jpeg"), "b": ("b.jpg", a, "image/jpeg")})
    other = client.post("/v1/compare", files={"a": ("a.jpg", a, "image/jpeg"), "b": ("b.jpg", b, "image/jpeg")})
    if same.status_code != 200 or same.json()["cosine"] < 0.99:
        problems.append(f"compare of a picture with itself: {same.status_code} {same.text[:200]}")
    elif other.status_code != 200 or not other.json()["cosine"] < same.json()["cosine"]:
        problems.append(f"compare of two pictures: {other.status_code} {other.text[:200]}")
    aws = client.post(
        "/image_similarity", json={"img_1": base64.b64encode(a).decode(), "img_2": base64.b64encode(a).decode()}
    )
    if aws.status_code != 200 or aws.json().get("similarity", 0) < 0.99:
        problems.append(f"AWS compare: {aws.status_code} {aws.text[:200]}")
    return problems


def server_log_tracebacks(log_path: Path) -> list[str]:
    """Unexpected exceptions the server logged (a 4xx answer can still hide one)."""
    if not log_path.is_file():
        return []
    text = log_path.read_text(errors="replace")
    return [
        m.group(0)[-300:] for m in re.finditer(r"Traceback \(most recent call last\):.*?\n(?=\S)[^\n]*", text, re.S)
    ]


# --------------------------------------------------------------------------- tests


def test_corpus_is_large_deterministic_and_varied():
    items = corpus()
    assert len(items) >= 200
    categories = Counter(h.category for h in items)
    for category in ("valid", "truncated", "bitflip", "header", "bomb", "dims", "tiny", "magic", "polyglot",
                     "mode", "frames", "exif", "icc", "base64"):
        assert categories[category] >= 5, category
    assert {h.name: h.data for h in items} == {h.name: h.data for h in corpus()}
    assert sum(h.valid is True for h in items) >= 40 and sum(h.valid is False for h in items) >= 150
    assert all(h.codes <= IMAGE_CODES | {"InvalidParameter"} for h in items)


def test_every_hostile_file_decodes_or_is_refused_in_process():
    """The decoder alone: every file becomes RGB pixels or raises a documented LookalikeError."""
    from lookalike.images import decode_base64

    engine = Engine(Settings(threads=2))
    wrong = []
    for item in corpus():
        try:
            if item.json_only:
                if not isinstance(item.text, str):
                    continue
                data = decode_base64(item.text, max_bytes=engine.settings.max_image_bytes)
            else:
                data = item.data
            pixels = engine.pixels(data)
            g = engine.geometry  # shorter side 288, or the longer side at its cap
            assert pixels.ndim == 3 and pixels.shape[2] == 3 and pixels.dtype == np.uint8
            assert min(pixels.shape[:2]) == g.side or max(pixels.shape[:2]) == g.max_long
            if item.valid is False:
                wrong.append(f"{item.name}: decoded, but must be refused")
        except LookalikeError as exc:
            if item.valid is True or exc.code not in item.codes:
                wrong.append(f"{item.name}: {exc.code}: {exc.message}")
        except Exception as exc:  # anything else is a 500 in the server
            wrong.append(f"{item.name}: {type(exc).__name__}: {exc}")
    assert not wrong, "\n".join(wrong[:40])


def test_a_progressive_jpeg_of_thousands_of_scans_is_refused_at_once():
    """A 200 KB file of 3,000 empty scans over 4096x4096 kept a core busy for minutes."""
    from hostile_files import scan_flood
    from lookalike.images.decode import MAX_JPEG_SCANS, decode_image, jpeg_scan_count

    limits = dict(max_bytes=5 * 1024 * 1024, max_side=4096, max_pixels=4096 * 4096, min_size=(224, 224))
    flood = scan_flood()
    assert len(flood) < 300_000 and jpeg_scan_count(flood) == MAX_JPEG_SCANS + 1
    start = time.perf_counter()
    with pytest.raises(LookalikeError) as refused:
        decode_image(flood, **limits)
    assert refused.value.code == "ImageDecodeFailed" and "scans" in refused.value.message
    assert time.perf_counter() - start < 1.0
    # The same picture with a normal progression (10 scans), or a few repeated ones, still decodes.
    assert decode_image(scan_flood(repeats=0), **limits).size == (512, 512)  # DCT-scaled by 1/8
    assert decode_image(scan_flood(512, repeats=MAX_JPEG_SCANS - 10), **limits).mode == "RGB"
    assert jpeg_scan_count(scan_flood(512, repeats=MAX_JPEG_SCANS - 10)) == MAX_JPEG_SCANS


def test_scans_are_counted_in_the_image_not_in_its_metadata():
    """An EXIF thumbnail (a whole JPEG inside APP1) and bytes after EOI hold no scans of the image."""
    from lookalike.images.decode import jpeg_scan_count

    jpeg = good_jpeg()
    thumb = good_jpeg(9, (64, 48))
    with_thumb = jpeg[:2] + b"\xff\xe1" + (len(thumb) + 8).to_bytes(2, "big") + b"Exif\x00\x00" + thumb + jpeg[2:]
    assert jpeg_scan_count(jpeg) == 1
    assert jpeg_scan_count(with_thumb) == 1
    assert jpeg_scan_count(jpeg + jpeg * 200) == 1  # stops at the first EOI (MPO frames, polyglots)
    assert jpeg_scan_count(b"\xff\xd8\xff\xda\x00\x08" + b"\x01\x01\x00\x00\x3f\x00" + b"\xff\x00" * 50) == 1


def test_alpha_is_blended_onto_white_exactly_as_compositing_would():
    """The blend that replaced compositing two RGBA copies (half the memory) gives the same pixels."""
    from PIL import Image

    from lookalike.images.decode import _to_rgb

    rgba = Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 96, 4), dtype=np.uint8), "RGBA")
    reference = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    for mode in ("RGBA", "LA", "PA", "RGBa"):
        source = rgba.convert(mode)
        want = reference if mode == "RGBA" else Image.alpha_composite(
            Image.new("RGBA", rgba.size, (255, 255, 255, 255)), source.convert("RGBA")).convert("RGB")
        got = _to_rgb(source)
        assert got.mode == "RGB" and np.array_equal(np.asarray(got), np.asarray(want)), mode


@pytest.fixture(scope="module")
def fuzz_server(server_factory):
    """A server of its own: its gallery is seeded here and must come out exactly as seeded."""
    proc = server_factory(env={"LOOKALIKE_MODEL": "sscd-small"})  # the decoding is the same, the model 5x faster
    with httpx.Client(base_url=proc.base_url, timeout=60) as client:
        seed_gallery(client)
    return proc


def test_hostile_files_through_every_route(fuzz_server):
    items = corpus()
    run = run_corpus(fuzz_server.base_url, items, ROUTES, workers=4)
    expected = sum(1 for item in items for route in ROUTES if not (route.multipart and item.json_only))
    assert len(run.outcomes) == expected
    assert run.server_errors == 0, "\n".join(p for p in run.problems if "server error" in p or "internal" in p)[:6000]
    assert not run.problems, f"{len(run.problems)} answers not as documented:\n" + "\n".join(run.problems[:40])
    # Valid pictures really went through: every route accepted some, refused most.
    for route, counts in run.by_route().items():
        accepted = sum(n for key, n in counts.items() if key.endswith(" ok"))
        assert 0 < accepted < sum(counts.values()) / 2, (route, counts)
    assert fuzz_server.proc.poll() is None, "the server died"
    with httpx.Client(base_url=fuzz_server.base_url, timeout=60) as client:
        assert not check_health(client)
        assert not check_gallery_after(client, run)
    log = fuzz_server.log_dir / f"server-{fuzz_server.port}-{fuzz_server.starts}.log"
    assert not server_log_tracebacks(log)
