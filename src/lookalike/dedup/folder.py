"""Duplicates in a folder: files -> digests -> (exact groups) -> vectors -> similar pairs -> groups.

Exact duplicates never need the model: identical bytes share a content digest, and files with
the same dimensions are compared by a digest of their decoded pixels. Only one file per
content is embedded, and only contents the cache has not seen before.
"""

from __future__ import annotations

import os
import sys
import time
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from hashlib import blake2b
from pathlib import Path
from typing import Literal

import numpy as np

from lookalike import scores
from lookalike.config import Settings, get_settings
from lookalike.dedup.cache import CACHE_FILE, Content, DedupCache
from lookalike.dedup.matching import DisjointSet, cascade_pairs
from lookalike.dedup.opinions import SecondOpinion
from lookalike.dedup.report import LEVEL_COSINE, DedupReport, DuplicateGroup, Level, Match, Member, Skipped, match_of
from lookalike.errors import InvalidParameterValue, LookalikeError
from lookalike.images.decode import IMAGE_SUFFIXES, decode_image, open_image, pixel_digest
from lookalike.models.inputs import Pipeline

KeepPolicy = Literal["largest", "oldest", "newest", "first"]
KEEP_POLICIES: tuple[str, ...] = ("largest", "oldest", "newest", "first")

PIXEL_CHECK_COSINE = 0.95
"""Model-matched pairs this close with equal dimensions get their pixels compared, to tell a
pixel-identical copy (another format, stripped metadata) from a near one."""
EMBED_BATCH = 32

LOCAL_LIMITS = {"max_image_bytes": 256 << 20, "max_image_side": 30_000, "max_image_pixels": 200_000_000}
"""A folder holds the user's own photos: camera sizes (up to 200 MP) pass, unlike the API's
4096 px. Still bounded, so a crafted file cannot exhaust memory."""


@dataclass
class _File:
    path: Path
    rel: str
    size: int
    mtime_ns: int
    digest: bytes = b""
    content: Content | None = None

    @property
    def dims(self) -> tuple[int, int]:
        """Width and height, orientation-free (an EXIF-rotated copy has the same pixels)."""
        c = self.content
        return (min(c.width, c.height), max(c.width, c.height)) if c else (0, 0)


def scan(root: Path, exclude: Iterable[Path] = ()) -> list[Path]:
    """Image files under ``root`` (by suffix), sorted; symlinks, hidden folders and ``exclude``
    (e.g. the folder duplicates are moved to, the data dir) are left out."""
    skip = {p.resolve() for p in exclude}
    found: list[Path] = []
    for folder, dirs, names in os.walk(root):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (here / d).resolve() not in skip)
        for name in names:
            path = here / name
            if path.suffix.lower() in IMAGE_SUFFIXES and not path.is_symlink() and path.is_file():
                found.append(path)
    return sorted(found)


def find_duplicates(
    root: str | Path,
    level: Level | str = Level.NEAR,
    *,
    min_cosine: float | None = None,
    model: str | None = None,
    keep: KeepPolicy = "largest",
    settings: Settings | None = None,
    engine=None,
    cache: bool = True,
    exclude: Iterable[Path] = (),
    progress: bool = False,
) -> DedupReport:
    """Groups of duplicates among the images under ``root``.

    ``level``: exact (bytes or pixels, no model), near (copies, crops, edits) or scene (same
    scene); ``min_cosine`` overrides the level's threshold. ``keep`` picks the file each group
    keeps. With ``cache``, digests and vectors are kept in the data dir for the next run.
    """
    started = time.perf_counter()
    root = Path(root)
    if not root.is_dir():
        raise InvalidParameterValue(f"{root} is not a folder")
    try:
        level = Level(level)
    except ValueError:
        raise InvalidParameterValue(f"level must be one of {', '.join(Level)}, not {level!r}") from None
    if keep not in KEEP_POLICIES:
        raise InvalidParameterValue(f"keep must be one of {', '.join(KEEP_POLICIES)}, not {keep!r}")
    if min_cosine is not None and not -1.0 <= min_cosine <= 1.0:
        raise InvalidParameterValue(f"min_cosine must be within -1..1, not {min_cosine}")
    settings = settings or get_settings()
    settings = settings.model_copy(update={k: max(v, getattr(settings, k)) for k, v in LOCAL_LIMITS.items()})
    model = model or settings.model
    cosine = None if level is Level.EXACT else (min_cosine if min_cosine is not None else LEVEL_COSINE[level])
    store = DedupCache(Path(settings.data_dir) / CACHE_FILE if cache else None)
    seconds: dict[str, float] = {}
    try:
        tick = time.perf_counter()
        paths = scan(root, exclude=[*exclude, Path(settings.data_dir)])
        files = _identify(root, paths, store, settings, progress)
        seconds["scan"] = time.perf_counter() - tick
        report = DedupReport(root.resolve(), level, None if cosine is None else model, cosine, len(files))
        report.seconds = seconds  # the stages below add theirs
        usable = [f for f in files if f.content and not f.content.error_code]
        sets = DisjointSet(len(usable))
        by_digest: dict[bytes, list[int]] = defaultdict(list)
        for i, f in enumerate(usable):
            by_digest[f.digest].append(i)
        for members in by_digest.values():
            for other in members[1:]:
                sets.union(members[0], other)
        unique = [members[0] for members in by_digest.values()]  # one file per content
        pixels = _PixelDigests(usable, store, settings)
        vectors: np.ndarray | None = None
        calibration = scores.REFERENCE
        row_of: dict[bytes, int] = {}
        tick = time.perf_counter()
        if cosine is None:
            _join_equal_pixels(unique, usable, pixels, sets)
            seconds["pixels"] = time.perf_counter() - tick
        else:
            vectors, unique, calibration = _join_similar(
                usable, unique, store, engine, model, settings, level, cosine, sets, report, progress
            )
            row_of = {usable[file_index].digest: row for row, file_index in enumerate(unique)}
        for members in sets.groups():  # without contents the decoder refused (and their byte copies)
            members = [i for i in members if not _refused(usable[i])]
            if len(members) > 1:
                report.groups.append(_describe(members, usable, keep, pixels, vectors, row_of, level, calibration))
        report.groups.sort(key=lambda g: g.keep.path)
        pixels.save()
        report.skipped = [
            Skipped(f.rel, f.content.error_code or "ImageDecodeFailed", f.content.error or "")
            for f in files
            if f.content and f.content.error_code
        ]
        seconds["total"] = time.perf_counter() - started
        return report
    finally:
        store.close()


def _join_similar(
    files: list[_File],
    unique: list[int],
    store: DedupCache,
    engine,
    model: str,
    settings: Settings,
    level: Level,
    cosine: float,
    sets: DisjointSet,
    report: DedupReport,
    progress: bool,
) -> tuple[np.ndarray, list[int], scores.Calibration]:
    """Near and scene levels: the first pipeline's vectors of ``unique`` contents, the pairs
    they (and the second opinions) find joined in ``sets``. Returns the vectors, the contents
    that decoded, and the calibration of the vectors' pipeline."""
    from lookalike.engine import Engine

    engine = engine or Engine(settings)
    full = engine.pipeline(model)
    first = engine.fast_pipeline(model) or full
    tick = time.perf_counter()
    vectors, unique, report.embedded, report.cached = _vectors(files, unique, store, engine, first, settings, progress)
    report.seconds["embed"] = time.perf_counter() - tick
    tick = time.perf_counter()
    opinion = _second_opinion(files, unique, store, engine, full, settings, level, cosine)
    doubt = None if first == full else opinion.window(level)
    calibration = scores.calibration(first.tag)
    pairs = cascade_pairs(vectors, cosine, calibration, opinion, doubt=doubt, threads=settings.threads)
    report.verified, report.deferred = opinion.verified, opinion.deferred
    for a, b in zip(pairs.left.tolist(), pairs.right.tolist(), strict=True):
        sets.union(unique[a], unique[b])
    report.seconds["match"] = time.perf_counter() - tick
    return vectors, unique, calibration


def _refused(f: _File) -> bool:
    """The decoder refused the file's content (or it has none yet)."""
    return f.content is None or bool(f.content.error_code)


def _read_digest(f: _File) -> tuple[bytes, bytes, LookalikeError | None]:
    try:
        data = f.path.read_bytes()
    except OSError as exc:
        return b"", b"", InvalidParameterValue(f"cannot read: {exc.strerror or exc}")
    return blake2b(data, digest_size=16).digest(), data, None


def _identify(root: Path, paths: list[Path], store: DedupCache, settings: Settings, progress: bool) -> list[_File]:
    """Each file's content digest and header facts, from the cache where the file is unchanged."""
    files: list[_File] = []
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            continue  # vanished since the scan
        files.append(_File(path, path.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns))
    root_key = root.resolve()
    key = {id(f): str(root_key / f.rel) for f in files}  # the cache's key: an absolute path
    known = store.digests([(key[id(f)], f.size, f.mtime_ns) for f in files])
    for f in files:
        f.digest = known.get(key[id(f)], b"")
    contents = store.contents(list({f.digest for f in files if f.digest}))
    contents = {d: c for d, c in contents.items() if not c.error_code}  # refusals are looked at again
    todo = [f for f in files if not f.digest or f.digest not in contents]

    def read(f: _File) -> tuple[_File, bytes, Content]:
        digest, data, error = _read_digest(f)
        if error is not None:
            return f, digest, Content(error_code=error.code, error=error.message)
        try:
            image = open_image(
                data,
                max_bytes=settings.max_image_bytes,
                max_side=settings.max_image_side,
                max_pixels=settings.max_image_pixels,
            )
            return f, digest, Content(*image.size)
        except LookalikeError as exc:
            return f, digest, Content(error_code=exc.code, error=exc.message)

    new_digests, new_contents = [], {}
    with ThreadPoolExecutor(max_workers=4) as pool:
        for f, digest, content in _bar(pool.map(read, todo), progress, len(todo), "reading"):
            f.digest = digest
            if digest:
                new_digests.append((key[id(f)], f.size, f.mtime_ns, digest))
                new_contents[digest] = content
            else:
                f.content = content  # unreadable: nothing to remember
    store.put_digests(new_digests)
    store.put_contents(new_contents.items())
    contents.update(new_contents)
    for f in files:
        if f.content is None:
            f.content = contents.get(f.digest)
    return files


class _PixelDigests:
    """Pixel digests computed on demand (full decodes are the costly part) and cached."""

    def __init__(self, files: list[_File], store: DedupCache, settings: Settings) -> None:
        self.files, self.store, self.settings = files, store, settings
        self.new: dict[bytes, Content] = {}

    def of(self, index: int) -> bytes | None:
        f = self.files[index]
        content = f.content
        assert content is not None
        if content.pixels is None:
            try:
                content.pixels = pixel_digest(
                    f.path.read_bytes(),
                    max_bytes=self.settings.max_image_bytes,
                    max_side=self.settings.max_image_side,
                    max_pixels=self.settings.max_image_pixels,
                )
            except (OSError, LookalikeError):
                return None
            self.new[f.digest] = content
        return content.pixels

    def save(self) -> None:
        """Into the cache, in one transaction."""
        self.store.put_contents(list(self.new.items()))
        self.new.clear()


def _join_equal_pixels(unique: list[int], files: list[_File], pixels: _PixelDigests, sets: DisjointSet) -> None:
    """Exact level: contents of equal dimensions whose decoded pixels are identical."""
    by_dims: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i in unique:
        by_dims[files[i].dims].append(i)
    candidates = [i for group in by_dims.values() if len(group) > 1 for i in group]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:  # decoders release the GIL
        digests = dict(zip(candidates, pool.map(pixels.of, candidates), strict=True))
    for group in by_dims.values():
        if len(group) < 2:
            continue
        first_of: dict[bytes, int] = {}
        for i in group:
            digest = digests[i]
            if digest is None:
                continue
            if digest in first_of:
                sets.union(first_of[digest], i)
            else:
                first_of[digest] = i


def _vectors(
    files: list[_File],
    unique: list[int],
    store: DedupCache,
    engine,
    pipeline: Pipeline,
    settings: Settings,
    progress: bool,
) -> tuple[np.ndarray, list[int], int, int]:
    """A vector for each unique content (cached or embedded now) through ``pipeline``. A content
    the decoder refuses gets its error (shared by its byte copies) and leaves ``unique``."""
    spec = engine.embedder(pipeline.model).spec
    matrix = np.empty((len(unique), spec.dim), dtype=np.float32)
    tag = pipeline.tag  # vectors of another model or input pipeline are not reused
    cached = store.fill_vectors([files[i].digest for i in unique], tag, matrix)
    row_of = {i: row for row, i in enumerate(unique)}
    todo = [i for i, hit in zip(unique, cached, strict=True) if not hit]
    failed: set[int] = set()

    def pixels_of(i: int) -> np.ndarray | LookalikeError:
        try:  # the folder's limits (camera sizes), not those of the engine's API settings
            image = decode_image(
                files[i].path.read_bytes(),
                max_bytes=settings.max_image_bytes,
                max_side=settings.max_image_side,
                max_pixels=settings.max_image_pixels,
                min_size=pipeline.geometry.decode_size,
            )
            return pipeline.geometry.pixels(image)
        except LookalikeError as exc:
            return exc
        except OSError as exc:
            return InvalidParameterValue(f"cannot read: {exc.strerror or exc}")

    batches = [todo[s : s + EMBED_BATCH] for s in range(0, len(todo), EMBED_BATCH)]
    threads = settings.threads or os.cpu_count() or 2
    with ThreadPoolExecutor(max_workers=threads) as pool:
        bar = _bar(None, progress, len(todo), "embedding")
        for batch in batches:
            decoded = list(pool.map(pixels_of, batch))
            good = [(i, p) for i, p in zip(batch, decoded, strict=True) if not isinstance(p, LookalikeError)]
            for i, p in zip(batch, decoded, strict=True):
                if isinstance(p, LookalikeError):
                    failed.add(i)
                    f = files[i]
                    assert f.content is not None
                    f.content.error_code, f.content.error = p.code, p.message
                    store.put_contents([(f.digest, f.content)])
            if good:
                out = engine.run([p for _, p in good], model=pipeline.model, flip=pipeline.flip)
                matrix[[row_of[i] for i, _ in good]] = out
                store.put_vectors(tag, [(files[i].digest, v) for (i, _), v in zip(good, out, strict=True)])
            if bar is not None:
                bar.update(len(batch))
        if bar is not None:
            bar.close()
    if not failed:
        return matrix, unique, len(todo), int(cached.sum())
    kept = [i for i in unique if i not in failed]
    return matrix[[row_of[i] for i in kept]], kept, len(todo) - len(failed), int(cached.sum())


def _second_opinion(
    files: list[_File],
    unique: list[int],
    store: DedupCache,
    engine,
    full: Pipeline,
    settings: Settings,
    level: Level,
    threshold: float,
) -> SecondOpinion:
    """What settles the pairs of ``unique`` rows that the fast vectors leave in doubt."""

    def decode(row: int):
        try:
            return decode_image(
                files[unique[row]].path.read_bytes(),
                max_bytes=settings.max_image_bytes,
                max_side=settings.max_image_side,
                max_pixels=settings.max_image_pixels,
                min_size=engine.decode_size,
            )
        except (LookalikeError, OSError):
            return None

    def vectors(rows: list[int]) -> dict[int, np.ndarray]:
        matrix, kept, _, _ = _vectors(files, [unique[r] for r in rows], store, engine, full, settings, False)
        at = {file_index: n for n, file_index in enumerate(kept)}
        return {r: matrix[at[unique[r]]] for r in rows if unique[r] in at}

    keypoints = settings.local_features if level is Level.NEAR else 0
    threads = settings.threads or os.cpu_count() or 2
    return SecondOpinion(decode, vectors, full, threshold, settings.cascade_margin, keypoints, threads)


def _keep_key(policy: str, f: _File) -> tuple:
    c = f.content
    assert c is not None
    if policy == "largest":
        return (-(c.width * c.height), -f.size, len(f.rel), f.rel)
    if policy == "oldest":
        return (f.mtime_ns, f.rel)
    if policy == "newest":
        return (-f.mtime_ns, f.rel)
    return (f.rel,)


def _describe(
    members: list[int],
    files: list[_File],
    policy: str,
    pixels: _PixelDigests,
    vectors: np.ndarray | None,
    row_of: dict[bytes, int],
    level: Level,
    calibration: scores.Calibration,
) -> DuplicateGroup:
    """The group's kept file and the others, each with its match kind and its reference-scale
    cosine to the kept file (``calibration``: the pipeline the vectors came from)."""
    keep = min(members, key=lambda i: _keep_key(policy, files[i]))
    kept = files[keep]

    def member(i: int, match: Match | None = None, cosine: float | None = None) -> Member:
        f = files[i]
        assert f.content is not None
        return Member(f.rel, f.size, f.content.width, f.content.height, match, cosine)

    def vector(i: int) -> np.ndarray | None:
        row = row_of.get(files[i].digest)  # by content: byte copies share their vector
        return None if vectors is None or row is None else vectors[row]

    keep_vector = vector(keep)
    duplicates = []
    for i in members:
        if i == keep:
            continue
        f = files[i]
        if f.digest == kept.digest:
            duplicates.append(member(i, Match.BYTES, None if keep_vector is None else 1.0))
            continue
        v = vector(i)
        cos = (
            None
            if v is None or keep_vector is None
            else float(calibration.to_reference(float(np.clip(np.dot(v, keep_vector), -1, 1))))
        )
        if vectors is None or (f.dims == kept.dims and cos is not None and cos >= PIXEL_CHECK_COSINE):
            digest = pixels.of(i)
            if digest is not None and digest == pixels.of(keep):
                duplicates.append(member(i, Match.PIXELS, cos))
                continue
        if level is Level.EXACT:  # joined through another member's pixels (same pixels, transitively)
            duplicates.append(member(i, Match.PIXELS, None))
            continue
        duplicates.append(member(i, match_of(level, cos), cos))
    duplicates.sort(key=lambda m: (-(m.cosine if m.cosine is not None else 2.0), m.path))
    return DuplicateGroup(member(keep), duplicates)


def _bar(items, enabled: bool, total: int, desc: str):
    """tqdm over ``items`` on stderr (or a manual bar when ``items`` is None), or nothing."""
    if not enabled or total == 0:
        return items
    from tqdm import tqdm

    return tqdm(items, total=total, desc=desc, unit="img", file=sys.stderr)
