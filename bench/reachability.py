"""Every stored picture, searched with its own vector, comes back first with Score 100 (issue 18).

Issue 18 requires it "in groups of 100k+ pictures built by single adds, by batch adds, by imports
and after restarts, on both backends". ``bench/islands.py`` measures the SQLite backend's HNSW
index alone; this script measures what a caller gets: each backend's public ``Store.search``
(top 10, as the gallery calls it), over one group of N pictures, for every stored picture.

**Own bytes = own vector.** The embedding is deterministic (the same bytes give the same vector,
``tests/test_similarity.py``), so searching a picture with its own bytes is searching with the
vector that was stored for it; embedding 100k images would only make the run longer.

**The data** (512-d unit vectors, seeded): families of four near-identical pictures, what makes
islands in an HNSW graph (HNSW's pruning can link a tight family only among itself; see
islands.py's ``families``). Half the families are loose (noise 0.5, as islands.py: cosine ~0.8
inside a family), half tight (noise 0.05: cosine ~0.998, near-copies that int8 quantisation
barely tells apart). On top of that ``--duplicates`` of the pictures (default 5%) are exact
duplicates: another picture's vector under a name and entity of their own.

**"Found first", precisely.** For picture *p* searched with its vector *v*: its *twins* are the
pictures stored with exactly *v* (*p* and its exact duplicates; same bytes, same vector). *p* is
found first when the first hit is one of its twins (which twin comes first is a tie) and that
hit's Score, ``round(calibrated_score(cosine))`` as the gallery reports it, is 100, i.e. cosine
>= ``cosine_for_score(99.5)`` = 0.98833. A family member that is not a twin outranking *p* is a
miss, however near. *p* is **not found** when no twin is among the 10 hits at all; *self absent*
counts the pictures whose own name is not among them (twins are at most a handful, so the two
differ only where a duplicate set is larger than the page).

**Build paths** (one group each; ``--paths``):

* ``single``: ``add_image`` one by one (the API's add, with the constraint checks; the gallery's
  batch add, ``GalleryService.add_images``, also stores each picture through ``add_image``).
* ``batch``: ``import_images`` in batches of ``--batch`` (100), the stores' only multi-picture
  write, into a group that is already loaded and indexed as the batches arrive (SQLite).
* ``import``: ``import_images`` in batches of 5000 (a migration) into a group that is not loaded:
  SQLite builds its index in one go at the first search.
* ``restart``: the ``single`` store closed and opened again (the same build, no new adds). SQLite:
  ``restart`` loads the saved index file, ``rebuild`` also removes it first, so the index is
  built anew from the table. Milvus: the server is stopped and started on its data.

**Index complete.** SQLite: one search loads the group, then ``wait_for_index()`` until the
merger is idle, the state a server settles in by itself (no forced sweep); where that state
misses pictures, ``wait_for_index(sweep=True)`` and a second full check are reported too.
Milvus: a Strong count sees every row, ``flush``, every row indexed and every loaded segment
sealed with its HNSW index (bench/milvus.py's ``wait_indexed``); the check then searches at
Bounded consistency (every row is visible by then).

**``--screen``** (100k single searches through the store took ~50 min of the shared cores):
every picture is first cleared in bulk by what decides the store's answer (Milvus: the store's
own request, 100 vectors a call; SQLite: the index's candidates at the store's breadth, rows
outside the index being scanned exactly by every search); those not cleared, and a sample of
``SCREEN_SAMPLE`` cleared ones (the screen's fidelity), then go through ``store.search``,
whose verdict counts.

    .venv/bin/python bench/reachability.py --n 20000                      # smoke
    nice -n 19 .venv/bin/python bench/reachability.py --backends sqlite   # 100k
    nice -n 19 .venv/bin/python bench/reachability.py --backends milvus --screen

Prints a markdown table with the CPU flags; rows go to bench/results/reachability.json (rows of
other backends, paths or sizes already there are kept).
"""

from __future__ import annotations

import argparse
import fcntl
import importlib.util
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
import common  # noqa: E402  (bench/ is first on sys.path when run as a script)

# bench/ holds milvus.py, which would shadow the ``milvus`` package (the server binary) that
# tests/milvus_server.py imports: leave bench/ off the path from here on.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
sys.path.insert(0, str(common.REPO_ROOT / "tests"))

from lookalike.scores import calibrated_score, cosine_for_score  # noqa: E402
from lookalike.storage.base import GroupRecord, Hit, ImageRecord  # noqa: E402

DIM = 512
PER_FAMILY = 4
NOISES = (0.5, 0.05)
"""Family noise (norm of the noise added to the family's centre), alternating by family."""
GROUP = "reach"
TOP = 10
IMPORT_BATCH = 5000
PATHS = ("single", "batch", "import", "restart")
RESULTS = common.RESULTS_DIR / "reachability.json"
SCREEN_SAMPLE = 5000
"""Pictures a screen cleared that go through the store's search all the same (its fidelity)."""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- data


def dataset(n: int, seed: int, duplicate_share: float) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, source): ``source[i]`` is the picture whose vector ``i`` copies exactly (``i``
    for an original). Families of PER_FAMILY, loose and tight in turn; duplicates are drawn
    among the originals."""
    rng = np.random.default_rng(seed)
    families = -(-n // PER_FAMILY)
    centres = rng.standard_normal((families, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    noise = np.asarray(NOISES, dtype=np.float32)[np.arange(families) % len(NOISES)]
    vectors = np.repeat(centres, PER_FAMILY, axis=0)[:n]
    scale = np.repeat(noise, PER_FAMILY)[:n, None] / np.sqrt(DIM)
    vectors = vectors + scale * rng.standard_normal((n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    source = np.arange(n)
    copies = rng.choice(n, int(n * duplicate_share), replace=False)
    originals = np.setdiff1d(np.arange(n), copies)
    source[copies] = rng.choice(originals, len(copies))
    vectors[copies] = vectors[source[copies]]
    return np.ascontiguousarray(vectors, dtype=np.float32), source


def record(i: int) -> ImageRecord:
    return ImageRecord(GROUP, f"e{i}", f"p{i}")


def add_single(store: Any, vectors: np.ndarray) -> None:
    for i, vector in enumerate(vectors):
        store.add_image(record(i), vector, max_per_entity=10)
        if (i + 1) % 20_000 == 0:
            log(f"  {i + 1} added")


def add_batches(store: Any, vectors: np.ndarray, size: int) -> None:
    for start in range(0, len(vectors), size):
        stop = min(len(vectors), start + size)
        store.import_images([(record(i), vectors[i], None) for i in range(start, stop)])
        if stop // 20_000 != start // 20_000:
            log(f"  {stop} stored")


# --------------------------------------------------------------------------- the check

SCORE_100_COSINE = cosine_for_score(99.5)


@dataclass
class Check:
    misses: list[int] = field(default_factory=list)
    """Pictures whose first hit is not a twin with Score 100."""
    not_found: list[int] = field(default_factory=list)
    """Pictures with no twin among the hits."""
    self_absent: int = 0
    """Pictures whose own name is not among the hits (of those searched through the store)."""
    screened: int | None = None
    """With a screen: the pictures it did not find first (searched again through the store)."""
    sampled: int = 0
    """With a screen: pictures it cleared, searched through the store as well (must all pass)."""
    seconds: float = 0.0


Screen = Callable[[np.ndarray], list[list[Hit]]]
"""Hits (top 10) of many vectors at once, by the same request the store's search makes."""


def judge(i: int, hits: list[Hit], twins: set[int]) -> tuple[bool, bool, bool]:
    """(found first, found at all, own name among the hits) for picture ``i``."""
    rows = [int(h.image.pic_name[1:]) for h in hits]
    first = bool(hits) and rows[0] in twins and round(float(calibrated_score(hits[0].cosine))) == 100
    return first, any(r in twins for r in rows), i in rows


def check(
    store: Any, vectors: np.ndarray, source: np.ndarray, threads: int, screen: Screen | None = None
) -> Check:
    """Searches every picture with its own vector through ``store.search`` (top 10). With
    ``screen``, every picture goes through it first and only those it does not find first go
    through ``store.search`` (whose verdict counts)."""
    twins: dict[int, set[int]] = {}
    for i, s in enumerate(source.tolist()):
        twins.setdefault(s, set()).add(i)
    out = Check()
    began = time.perf_counter()
    rows: Sequence[int] = range(len(vectors))
    if screen is not None:
        screened = screen(vectors)
        cleared = np.array([judge(i, screened[i], twins[int(source[i])])[0] for i in rows])
        rows = np.flatnonzero(~cleared).tolist()
        out.screened = len(rows)
        # The screen's word checked against the store's on a sample of the pictures it cleared.
        sample = np.random.default_rng(0).permutation(np.flatnonzero(cleared))[:SCREEN_SAMPLE].tolist()
        rows += sample
        out.sampled = len(sample)
        log(f"  screen: {out.screened} not found first; those and {len(sample)} cleared through the store's search")

    def one(i: int) -> tuple[int, tuple[bool, bool, bool]]:
        return i, judge(i, store.search(GROUP, vectors[i], limit=TOP), twins[int(source[i])])

    with ThreadPoolExecutor(threads) as pool:
        for done, (i, (first, found, own)) in enumerate(pool.map(one, rows), 1):
            if not first:
                out.misses.append(i)
            if not found:
                out.not_found.append(i)
            out.self_absent += not own
            if done % 20_000 == 0:
                log(f"  {done} checked, {len(out.misses)} missed")
    out.seconds = time.perf_counter() - began
    return out


# --------------------------------------------------------------------------- backends


class SqliteBackend:
    """SqliteStore in ``workdir/sqlite-<path>``."""

    name = "sqlite"

    def __init__(self, args: argparse.Namespace) -> None:
        self.workdir = args.workdir

    def open(self, path: str, *, fresh: bool = True) -> Any:
        from lookalike.storage.sqlite import SqliteStore

        folder = self.workdir / f"sqlite-{path}"
        if fresh:
            shutil.rmtree(folder, ignore_errors=True)
        store = SqliteStore(folder, dim=DIM)
        if fresh:
            store.create_group(GroupRecord(GROUP, GROUP))
        return store

    def load(self, store: Any) -> None:
        """Loads the group's rows (a search does), so later adds go to memory and the index."""
        store.search(GROUP, np.ones(DIM, dtype=np.float32), limit=1)

    def ready(self, store: Any, *, sweep: bool = False) -> dict[str, Any]:
        self.load(store)
        store.wait_for_index(sweep=sweep)
        handle = store._handles[GROUP]
        return {"indexed": 0 if handle.ann is None else len(handle.ann), "stranded": len(handle.stranded)}

    def screen(self, store: Any) -> Screen:
        """What decides SqliteStore.search's answer for a picture's own vector, for many at once:
        a picture outside the index is in the exact scan every search does (found), one inside
        is found when the index returns its key among the candidates the store asks for
        (``breadth``; the store then re-scores them exactly, its own cosine 1.0 first). The
        index's batched search (``search_many``, C++ threads) costs a fraction of 100k store
        searches; a picture it does not clear goes through the store's search."""
        from lookalike.storage.ann import breadth

        def hits(vectors: np.ndarray) -> list[list[Hit]]:
            handle = store._handles[GROUP]
            ann = handle.ann
            if ann is None or handle.n_pending * 2 > handle.n:  # exact search: screen nothing
                return [[] for _ in vectors]
            with store._read() as conn:
                id_of = dict(conn.execute(
                    "SELECT pic_name, id FROM images WHERE gid = (SELECT gid FROM groups WHERE group_id = ?)", (GROUP,)
                ).fetchall())
            ids = np.array([id_of[f"p{i}"] for i in range(len(vectors))], dtype=np.int64)
            outside = ~handle.in_ann[[handle.pos[int(i)] for i in ids]]
            found = np.concatenate([
                ann.search_many(vectors[s : s + 4096], breadth(len(ann)), threads=2)
                for s in range(0, len(vectors), 4096)
            ])
            cleared = outside | (found == ids[:, None]).any(axis=1)
            return [[Hit(ImageRecord(GROUP, "", f"p{i}"), 1.0)] if ok else [] for i, ok in enumerate(cleared)]

        return hits

    def restart(self, store: Any, path: str, *, rebuild: bool) -> Any:
        store.close()
        if rebuild:
            for file in (self.workdir / f"sqlite-{path}" / "ann").iterdir():
                file.unlink()
        return self.open(path, fresh=False)

    def close(self, store: Any) -> None:
        store.close()

    def stop(self) -> None:
        pass


def _bench_milvus():
    """bench/milvus.py, under another module name (its own name would shadow the package)."""
    spec = importlib.util.spec_from_file_location("bench_milvus", BENCH / "milvus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class MilvusBackend:
    """MilvusStore (Bounded reads, no thumbnails or features) on a Milvus 2.3.5 standalone
    started by tests/milvus_server.py; one collection prefix per path."""

    name = "milvus"

    def __init__(self, args: argparse.Namespace) -> None:
        self.bench = _bench_milvus()
        self.args = args
        self.server = self.bench.start_milvus(args, "milvus-reachability")

    def open(self, path: str, *, fresh: bool = True) -> Any:
        from lookalike.storage.milvus import MilvusStore

        store = MilvusStore(
            self.server.uri, prefix=f"reach_{path}", dim=DIM, consistency="Bounded", thumbnails=False,
            features=False, timeout=120,
        )
        if fresh:
            store.drop_all()
            store = self.open(path, fresh=False)
            store.create_group(GroupRecord(GROUP, GROUP))
        return store

    def load(self, store: Any) -> None:
        pass

    def ready(self, store: Any, *, sweep: bool = False) -> dict[str, Any]:
        from lookalike.storage.milvus import _collection_name

        collection = _collection_name(store.prefix, "sscd")
        client = store.client
        n = self.args.n
        while (seen := self.bench.count_strong(client, collection, f'group_id == "{GROUP}"')) < n:
            log(f"  Strong count {seen}")
            time.sleep(1.0)
        client.flush(collection)
        waited = self.bench.wait_indexed(client, collection, n, self.args.index_timeout, f"milvus {store.prefix}")
        time.sleep(6)  # past Bounded staleness (5 s): a Bounded read sees every row
        return {"segments": waited["segments"], "pending": waited["pending"], "index_timed_out": waited["timed_out"]}

    def screen(self, store: Any) -> Screen:
        """MilvusStore.search's own request (collection, group filter, limit 10, ``ef``, inner
        product, Bounded), 100 query vectors a request instead of one: the server searches each
        the same way, and the client decodes one reply instead of 100 (pure-Python protobuf
        here makes single searches cost ~50 ms of this process's CPU on the shared cores)."""
        from lookalike.storage.milvus import _collection_name
        from lookalike.storage.milvus_schema import _in_group

        collection = _collection_name(store.prefix, "sscd")

        def hits(vectors: np.ndarray) -> list[list[Hit]]:
            out: list[list[Hit]] = []
            for start in range(0, len(vectors), 100):
                found = store.client.search(
                    collection, data=vectors[start : start + 100].tolist(), filter=_in_group(GROUP), limit=TOP,
                    output_fields=["pic_name"], search_params={"metric_type": "IP", "params": {"ef": store.hnsw_ef}},
                    consistency_level="Bounded", timeout=120,
                )
                out += [
                    [Hit(ImageRecord(GROUP, "", h["entity"]["pic_name"]), min(1.0, float(h["distance"]))) for h in q]
                    for q in found
                ]
            return out

        return hits

    def restart(self, store: Any, path: str, *, rebuild: bool) -> Any:
        store.close()
        self.server.stop()
        self.server.start()
        return self.open(path, fresh=False)

    def close(self, store: Any) -> None:
        store.drop_all()
        store.close()

    def stop(self) -> None:
        self.server.stop()
        shutil.rmtree(self.server.base_dir, ignore_errors=True)


# --------------------------------------------------------------------------- runs


def measure(
    backend: Any, store: Any, label: str, build_s: float, data: tuple[np.ndarray, np.ndarray], args: argparse.Namespace
) -> dict[str, Any]:
    """Index complete, then every picture checked; for SQLite a forced sweep and a second check
    where the settled state missed any."""
    vectors, source = data
    began = time.perf_counter()
    info = backend.ready(store)
    ready_s = time.perf_counter() - began
    log(f"{backend.name}/{label}: ready in {ready_s:.0f} s {info}; checking {len(vectors)} pictures")
    screen = backend.screen(store) if args.screen else None
    found = check(store, vectors, source, args.threads, screen)
    row = {
        "backend": backend.name, "path": label, "n": len(vectors), "build_s": build_s, "ready_s": ready_s,
        "check_s": found.seconds, "misses": len(found.misses), "not_found": len(found.not_found),
        "self_absent": found.self_absent, "screened": found.screened, "sampled": found.sampled,
        "missed": found.misses[:50], **info,
    }
    log(f"{backend.name}/{label}: {len(found.misses)} missed, {len(found.not_found)} not found "
        f"({found.seconds:.0f} s)")
    if found.misses and backend.name == "sqlite":
        began = time.perf_counter()
        row["after_sweep"] = backend.ready(store, sweep=True)
        swept = check(store, vectors, source, args.threads)
        row["after_sweep"] |= {"sweep_s": time.perf_counter() - began - swept.seconds,
                               "misses": len(swept.misses), "not_found": len(swept.not_found)}
        log(f"{backend.name}/{label}: after a sweep {row['after_sweep']}")
    return row


def timed(action: Callable[[], Any]) -> tuple[Any, float]:
    began = time.perf_counter()
    result = action()
    return result, time.perf_counter() - began


def restarts(backend: Any, opened: list[Any], path: str, data: tuple[np.ndarray, np.ndarray],
             args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """The ``restart`` path on the store built by ``path``, ``opened[0]`` (replaced by each
    reopened store)."""
    kinds = (("restart", False), ("rebuild", True)) if backend.name == "sqlite" else (("restart", False),)
    for label, rebuild in kinds:
        opened[0], seconds = timed(partial(backend.restart, opened[0], path, rebuild=rebuild))
        yield measure(backend, opened[0], label, seconds, data, args) | {"built_by": path}


def run_backend(backend: Any, args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """Each asked path in turn; ``restart`` reopens the ``single`` store, or the ``import`` store
    where this run builds no ``single`` group."""
    data = dataset(args.n, args.seed, args.duplicates)
    vectors = data[0]
    restart_on = "single" if "single" in args.paths else "import"
    builds = (("single", 1, True), ("batch", args.batch, True), ("import", IMPORT_BATCH, False))
    for label, size, loaded in builds:
        again = "restart" in args.paths and label == restart_on
        if label not in args.paths and not again:
            continue
        store = backend.open(label)
        if loaded:
            backend.load(store)  # adds go to the loaded group and its index as they come
        log(f"{backend.name}/{label}: " + ("add_image one by one" if size == 1 else f"import_images, {size} a call"))
        adding = partial(add_single, store, vectors) if size == 1 else partial(add_batches, store, vectors, size)
        _, seconds = timed(adding)
        yield measure(backend, store, label, seconds, data, args)
        opened = [store]
        if again:
            yield from restarts(backend, opened, label, data, args)
        backend.close(opened[0])


def save(rows: list[dict[str, Any]]) -> None:
    """Merges ``rows`` into RESULTS (a row replaces the one of its backend, path and size),
    under a file lock: runs of several paths may go side by side."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = json.loads(RESULTS.read_text()).get("rows", []) if RESULTS.exists() else []
        keys = {(r["backend"], r["path"], r["n"]) for r in rows}
        kept = [r for r in old if (r["backend"], r["path"], r["n"]) not in keys]
        common.write_json(RESULTS.name, {"score_100_cosine": SCORE_100_COSINE, "rows": kept + rows})


def table(rows: list[dict[str, Any]]) -> str:
    return common.markdown_table(
        ["backend", "path", "N", "checked", "misses", "not found", "build s", "ready s", "check s"],
        [
            [r["backend"], r["path"], f"{r['n']:,}",
             "all, store" if r.get("screened") is None else f"screen, {r['screened']}+{r['sampled']} store",
             r["misses"], r["not_found"], f"{r['build_s']:.0f}",
             f"{r['ready_s']:.0f}", f"{r['check_s']:.0f}"]
            for r in rows
        ],
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="pictures in each group")
    parser.add_argument("--backends", default="sqlite,milvus")
    parser.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated, of {', '.join(PATHS)}")
    parser.add_argument("--batch", type=int, default=100, help="pictures per import_images call of the batch path")
    parser.add_argument("--duplicates", type=float, default=0.05, help="share of pictures that duplicate another")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="concurrent searches of the check")
    parser.add_argument("--screen", action="store_true",
                        help="screen every picture in bulk first (docstring); the rest through the store")
    parser.add_argument("--index-timeout", type=float, default=3600, help="longest wait for Milvus' index, s")
    parser.add_argument("--time-tick-ms", type=int, default=200, help="Milvus proxy.timeTickInterval")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "lookalike-reachability")
    args = parser.parse_args()
    args.paths = [p for p in args.paths.split(",") if p]
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"cpu flags: {' '.join(common.cpu_flags())}; Score 100 from cosine {SCORE_100_COSINE:.5f}")
    rows: list[dict[str, Any]] = []
    for name in [b for b in args.backends.split(",") if b]:
        backend: SqliteBackend | MilvusBackend = (SqliteBackend if name == "sqlite" else MilvusBackend)(args)
        try:
            for row in run_backend(backend, args):
                rows.append(row)
                save([row])
        finally:
            backend.stop()
    print(table(rows))
    print(f"results in {common.shown(RESULTS)}")
    return 1 if any(r["misses"] for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
