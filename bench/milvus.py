"""The embedded store against Milvus at 1M vectors, on the same machine.

Both stores get the same data: one group of N synthetic 512-d unit vectors (default 1M) drawn
from a Gaussian mixture (2000 random centres, noise of the centre's norm; seeded), tags
``{"shop": "s<i % 10>", "n": i}`` so that the gallery filter ``shop = s3`` keeps 10%. 200
queries: 100 perturbed copies of stored vectors (cosine ~0.96 to their original) and 100 fresh
draws from the mixture. Ground truth: exact top 10 with numpy over the same vectors.

* **embedded**: ``SqliteStore`` (SQLite + usearch HNSW above 10k vectors a group). Bulk insert
  through ``store.import_images`` in batches of ``--batch``; then the first search (loads the
  group's vectors from SQLite) and ``store.wait_for_index()`` (the background HNSW build), timed
  separately. Memory: resident set growth of this process (the data set is allocated before).
* **milvus**: ``MilvusStore`` against a Milvus 2.3.5 standalone started by
  tests/milvus_server.py (data under ``--workdir``, default time tick 200 ms). The same bulk
  insert, then: until a Strong ``count(*)`` sees every row, ``flush``, and until Milvus reports
  every row indexed (``describe_index``) and every loaded segment sealed with its HNSW index
  (``get_query_segment_info``). Compactions may still be merging segments and indexing the
  merged ones then: the index builds still pending and the cores Milvus used while the searches
  ran are recorded. Searches through ``MilvusStore.search`` at Bounded, Strong and Eventually
  consistency, and at other ``hnsw_ef`` settings (``--ef-sweep``; a filtered search uses
  ``FILTERED_EF_FACTOR`` times it where milvus.py has one). Memory: resident set of the Milvus
  server process.
* **groups**: 200k vectors over 100 groups, searched by group in three layouts built with
  pymilvus directly: a filtered field (``group_id == "g"``, what MilvusStore does), a partition
  key field (``is_partition_key=True``) and one partition per group.

Both stores also add ``--add-sample`` pictures one by one through ``add_image`` (the API's
path: constraint checks, durable on return) into a second, new group.

    .venv/bin/python bench/milvus.py --n 50000 --groups-n 50000   # smoke, ~10 minutes
    .venv/bin/python bench/milvus.py                              # 1M, ~45 minutes on 2 cores
    .venv/bin/python bench/milvus.py --phases groups              # one phase

pymilvus encodes requests with protobuf; the test extra pins protobuf 3.20.3 (eas-prediction
requires it), whose Python 3.12 build is pure Python and makes pymilvus' inserts CPU-bound in
this process (1,728 against 4,938 rows/s at 50k). A production install (``lookalike[milvus]``)
gets protobuf's C implementation (upb). To measure that, run with a newer protobuf ahead on the
path:

    .venv/bin/python -m pip install --target /tmp/pb 'protobuf>=5,<7'
    PYTHONPATH=/tmp/pb .venv/bin/python bench/milvus.py

Each phase runs in a fresh process. Writes bench/results/milvus.json (phases of an earlier run
at the same N that were not run again are kept) and prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import common

# This file is called milvus.py: its own folder, first on sys.path, would shadow the ``milvus``
# package (the server binary) that tests/milvus_server.py imports.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(common.REPO_ROOT / "tests"))

from lookalike.gallery import parse_filter
from lookalike.storage.base import GroupRecord, ImageRecord  # noqa: E402

DIM = 512
CENTRES = 2000
GROUP = "bench"
FILTER = "shop = s3"
PHASES = ("embedded", "milvus", "groups")
MIN_INDEXED_ROWS = 1024


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- data


def mixture(n: int, seed: int, centres_seed: int = 777) -> np.ndarray:
    """Unit vectors around CENTRES random centres; the noise has the centre's norm."""
    return common.unit_mixture(n, seed, centres=CENTRES, centres_seed=centres_seed, dim=DIM)


def perturbed(x: np.ndarray, rows: np.ndarray, seed: int, scale: float = 0.3) -> np.ndarray:
    """Copies of ``x[rows]`` with noise of norm ``scale`` (cosine ~0.96 to the original)."""
    rng = np.random.default_rng(seed)
    q = x[rows] + scale * rng.standard_normal((len(rows), DIM), dtype=np.float32) / np.sqrt(DIM)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def make_queries(x: np.ndarray, count: int) -> np.ndarray:
    half = count // 2
    rows = np.random.default_rng(5).choice(len(x), half, replace=False)
    return np.concatenate([perturbed(x, rows, 6), mixture(count - half, 7)])


def tags_of(i: int) -> dict[str, object]:
    return {"shop": f"s{i % 10}", "n": i}


def exact_tops(x: np.ndarray, rows: np.ndarray, qs: np.ndarray, k: int = 10) -> list[np.ndarray]:
    """The exact top-k row numbers (into ``x``) among ``rows`` for each query."""
    out: list[np.ndarray] = []
    for s in range(0, len(qs), 50):
        block = qs[s : s + 50]
        scores = np.empty((len(block), len(rows)), dtype=np.float32)
        for r in range(0, len(rows), 200_000):
            scores[:, r : r + 200_000] = block @ x[rows[r : r + 200_000]].T
        part = np.argpartition(-scores, k, axis=1)[:, :k]
        out.extend(rows[p] for p in part)
    return out


def truths(x: np.ndarray, qs: np.ndarray) -> dict[str, list[set[str]]]:
    n = len(x)
    every = np.arange(n)
    return {
        "none": [{f"p{i}" for i in t} for t in exact_tops(x, every, qs)],
        "filter": [{f"p{i}" for i in t} for t in exact_tops(x, every[every % 10 == 3], qs)],
    }


# --------------------------------------------------------------------------- measuring


def status_kb(pid: int | str, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rss_mb(pid: int | str = "self", field: str = "VmRSS") -> float:
    return status_kb(pid, field) / 1024


def cpu_s(pid: int | str = "self") -> float:
    """User + system CPU seconds of a process (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def du_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1e3, q))


def timed_searches(search, qs: np.ndarray, truth: list[set[str]] | None, warm: int = 3) -> dict[str, float]:
    """p50/p99 ms of ``search(q) -> pic names``, one query at a time, and recall@10."""
    for q in qs[:warm]:
        search(q)
    lat: list[float] = []
    recall: list[float] = []
    for i, q in enumerate(qs):
        t = time.perf_counter()
        names = search(q)
        lat.append(time.perf_counter() - t)
        if truth is not None:
            recall.append(len(set(names) & truth[i]) / 10)
    out = {"p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "mean_ms": float(np.mean(lat) * 1e3)}
    if truth is not None:
        out["recall10"] = float(np.mean(recall))
        half = len(qs) // 2
        out["recall10_copies"] = float(np.mean(recall[:half]))
        out["recall10_fresh"] = float(np.mean(recall[half:]))
    return out


def paired_searches(searches: dict[str, object], qs: np.ndarray, truth: list[set[str]]) -> dict[str, dict]:
    """:func:`timed_searches` of several searches interleaved query by query, the order turning
    each query, so that compactions or other load in the run weigh on each alike."""
    names = list(searches)
    for q in qs[:3]:
        for name in names:
            searches[name](q)
    lat: dict[str, list[float]] = {name: [] for name in names}
    recall: dict[str, list[float]] = {name: [] for name in names}
    for i, q in enumerate(qs):
        for name in names[i % len(names):] + names[: i % len(names)]:
            t = time.perf_counter()
            found = searches[name](q)
            lat[name].append(time.perf_counter() - t)
            recall[name].append(len(set(found) & truth[i]) / 10)
    return {
        name: {"p50_ms": pct(lat[name], 50), "p99_ms": pct(lat[name], 99), "recall10": float(np.mean(recall[name]))}
        for name in names
    }


def batches(n: int, size: int):
    for s in range(0, n, size):
        yield range(s, min(n, s + size))


def bulk_rows(x: np.ndarray, rows: range) -> list[tuple[ImageRecord, np.ndarray, None]]:
    return [(ImageRecord(GROUP, f"e{i}", f"p{i}", tags=tags_of(i)), x[i], None) for i in rows]


def add_sample(store, x: np.ndarray, count: int) -> dict[str, float]:
    """``add_image`` one by one into a new group: pictures a second."""
    store.create_group(GroupRecord("add", "add"))
    t = time.perf_counter()
    for j in range(count):
        store.add_image(ImageRecord("add", f"e{j}", f"a{j}", tags=tags_of(j)), x[j], max_per_entity=10)
    return {"add_image_per_s": count / (time.perf_counter() - t), "add_image_n": count}


def protobuf_impl() -> str:
    try:
        import google.protobuf
        from google.protobuf.internal import api_implementation

        return f"protobuf {google.protobuf.__version__} ({api_implementation.Type()})"
    except ImportError:
        return "no protobuf"


def dataset(n: int, queries: int) -> tuple[np.ndarray, np.ndarray, dict[str, list[set[str]]]]:
    """The seeded vectors, the queries and their exact ground truth (the same for both stores)."""
    x = mixture(n, 1)
    qs = make_queries(x, queries)
    return x, qs, truths(x, qs)


def bulk_import(store, x: np.ndarray, batch: int, *, log_every: int) -> float:
    """Every vector through ``store.import_images``, ``batch`` at a time; the seconds it took."""
    t0 = time.perf_counter()
    for rows in batches(len(x), batch):
        store.import_images(bulk_rows(x, rows))
        if rows.stop % log_every == 0:
            log(f"  {rows.stop} imported, {rows.stop / (time.perf_counter() - t0):.0f}/s")
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- embedded


def run_embedded(args: argparse.Namespace) -> dict[str, object]:
    from lookalike.storage.sqlite import SqliteStore

    n = args.n
    log(f"embedded n={n}: data and ground truth")
    x, qs, truth = dataset(n, args.queries)
    path = args.workdir / f"embedded-{n}"
    shutil.rmtree(path, ignore_errors=True)
    base = rss_mb()
    out: dict[str, object] = {"n": n}
    store = SqliteStore(path, dim=DIM)
    store.create_group(GroupRecord(GROUP, GROUP))

    log("embedded: import_images")
    t0 = time.perf_counter()  # "ready": from the import's start
    out["import_s"] = bulk_import(store, x, args.batch, log_every=200_000)
    out["import_per_s"] = n / out["import_s"]
    log(f"embedded: {out['import_per_s']:.0f}/s; first search (loads the group)")
    t = time.perf_counter()
    store.search(GROUP, qs[0], limit=10)
    out["load_s"] = time.perf_counter() - t
    log(f"embedded: loaded in {out['load_s']:.1f} s; wait_for_index (HNSW build)")
    t = time.perf_counter()
    store.wait_for_index()
    out["index_s"] = time.perf_counter() - t
    out["ready_s"] = time.perf_counter() - t0
    out["path"] = "hnsw" if store._handles[GROUP].ann is not None else "exact"
    log(f"embedded: index built in {out['index_s']:.0f} s")

    where = parse_filter(FILTER)
    for name, expr in (("none", None), ("filter", where)):
        out[f"search_{name}"] = timed_searches(
            lambda q, expr=expr: [h.image.pic_name for h in store.search(GROUP, q, limit=10, where=expr)],
            qs,
            truth[name],
        )
        log(f"embedded: search {name} {out[f'search_{name}']}")
    out["rss_mb"] = rss_mb() - base
    out["rss_total_mb"] = rss_mb()
    out["rss_peak_mb"] = rss_mb(field="VmHWM")
    out.update(add_sample(store, x, args.add_sample))
    log(f"embedded: add_image {out['add_image_per_s']:.0f}/s")
    store.close()
    out["disk_mb"] = du_mb(path)
    shutil.rmtree(path, ignore_errors=True)
    return out


# --------------------------------------------------------------------------- milvus


def wait_indexed(client, collection: str, total: int, timeout: float, what: str) -> dict[str, object]:
    """Waits until every row is in a loaded segment that is sealed and has its HNSW index: every
    search goes through HNSW from then on. Milvus may still have index builds pending then
    (``pending``): compactions merge the small segments sealed during the insert into larger
    ones, and each merged segment is indexed again before it replaces its parts."""
    from pymilvus import utility

    t0 = time.perf_counter()
    last_log = -30.0
    while True:
        desc = client.describe_index(collection, "vec")
        segments = utility.get_query_segment_info(collection, using=client._using)
        loaded = sum(s.num_rows for s in segments)
        # Sealed (3) with its index; Milvus indexes no segment under 1024 rows (indexNode.segment.
        # minSegmentNumRowsToEnableIndex): those are searched by brute force.
        unindexed = [s for s in segments if s.state != 3 or (not s.index_name and s.num_rows >= MIN_INDEXED_ROWS)]
        elapsed = time.perf_counter() - t0
        done = desc["indexed_rows"] >= total and loaded >= total and not unindexed
        if done or elapsed > timeout or elapsed - last_log >= 30:
            log(
                f"  {what}: {elapsed:.0f} s, indexed {desc['indexed_rows']}/{desc['total_rows']} "
                f"(pending {desc['pending_index_rows']}), {len(segments)} segments loaded with {loaded} rows, "
                f"{len(unindexed)} not sealed+indexed"
            )
            last_log = elapsed
        if done or elapsed > timeout:
            return {
                "s": elapsed, "segments": len(segments), "pending": int(desc["pending_index_rows"]),
                "timed_out": not done,
            }
        time.sleep(1.0)


def pending_rows(client, collection: str) -> int:
    return int(client.describe_index(collection, "vec")["pending_index_rows"])


def count_strong(client, collection: str, expr: str) -> int:
    rows = client.query(collection, filter=expr, output_fields=["count(*)"], consistency_level="Strong")
    return int(rows[0]["count(*)"]) if rows else 0


def start_milvus(args: argparse.Namespace, name: str):
    from milvus_server import MilvusProcess

    base = args.workdir / name
    shutil.rmtree(base, ignore_errors=True)
    server = MilvusProcess(base, time_tick_ms=args.time_tick_ms)
    t = time.perf_counter()
    server.start()
    log(f"{name}: Milvus pid {server.pid} at {server.uri}, up in {time.perf_counter() - t:.1f} s")
    return server


def run_milvus(args: argparse.Namespace) -> dict[str, object]:
    from lookalike.storage import milvus as milvus_store
    from lookalike.storage.milvus import MilvusStore, _collection_name

    n = args.n
    log(f"milvus n={n}: data and ground truth ({protobuf_impl()})")
    x, qs, truth = dataset(n, args.queries)
    out: dict[str, object] = {"n": n, "protobuf": protobuf_impl(), "time_tick_ms": args.time_tick_ms}
    # MilvusStore widens a filtered search's ef by this factor (1 before it did).
    out["filtered_ef_factor"] = getattr(milvus_store, "FILTERED_EF_FACTOR", 1)
    server = start_milvus(args, f"milvus-{n}")
    pid = server.pid
    try:
        time.sleep(5)
        out["server_rss_idle_mb"] = rss_mb(pid)
        hnsw = {"hnsw_m": args.hnsw_m, "hnsw_ef_construction": args.hnsw_ef_construction, "hnsw_ef": args.hnsw_ef}

        def open_store(consistency: str, **overrides) -> MilvusStore:
            return MilvusStore(
                server.uri, prefix="bench", dim=DIM, consistency=consistency, thumbnails=False, **{**hnsw, **overrides}
            )

        store = open_store("Bounded")
        store.create_group(GroupRecord(GROUP, GROUP))
        collection = _collection_name("bench", "sscd")
        out["hnsw"] = {**store.hnsw, "ef": store.hnsw_ef}
        client = store.client

        log("milvus: import_images")
        cpu0, own0 = cpu_s(pid), cpu_s()
        t0 = time.perf_counter()  # "ready": from the import's start
        out["import_s"] = bulk_import(store, x, args.batch, log_every=100_000)
        out["import_per_s"] = n / out["import_s"]
        out["import_server_cpu_s"] = cpu_s(pid) - cpu0
        out["import_client_cpu_s"] = cpu_s() - own0
        log(f"milvus: {out['import_per_s']:.0f}/s; waiting for a Strong count to see every row")
        t = time.perf_counter()
        expr = f'group_id == "{GROUP}"'
        while (seen := count_strong(client, collection, expr)) < n:
            log(f"  Strong count {seen}")
            time.sleep(0.5)
        out["visible_s"] = time.perf_counter() - t
        out["server_rss_after_import_mb"] = rss_mb(pid)
        log(f"milvus: every row visible after {out['visible_s']:.1f} s; flush")
        cpu0 = cpu_s(pid)
        t = time.perf_counter()
        client.flush(collection)
        out["flush_s"] = time.perf_counter() - t
        log(f"milvus: flushed in {out['flush_s']:.1f} s; waiting for the HNSW index")
        waited = wait_indexed(client, collection, n, args.index_timeout, "milvus index")
        out["index_s"] = waited["s"]
        out["index_timed_out"] = bool(waited["timed_out"])
        out["segments"] = waited["segments"]
        out["pending_after_index"] = waited["pending"]
        out["index_server_cpu_s"] = cpu_s(pid) - cpu0
        out["ready_s"] = time.perf_counter() - t0
        out["server_rss_indexed_mb"] = rss_mb(pid)
        log(f"milvus: indexed {out['index_s']:.0f} s after the flush ({out['segments']} segments)")

        where = parse_filter(FILTER)
        cpu0, t = cpu_s(pid), time.perf_counter()
        stores = {"Bounded": store}
        for level in ("Strong", "Eventually"):
            stores[level] = open_store(level)
        for level, st in stores.items():
            for name, f in (("none", None), ("filter", where)):
                if level != "Bounded" and name == "filter":
                    continue
                key = f"search_{name}" if level == "Bounded" else f"search_{name}_{level.lower()}"
                out[key] = timed_searches(
                    lambda q, st=st, f=f: [h.image.pic_name for h in st.search(GROUP, q, limit=10, where=f)],
                    qs,
                    truth[name],
                )
                log(f"milvus: search {level} {name} {out[key]}")
        sweep = {}
        for ef in args.ef_sweep:
            st = open_store("Bounded", hnsw_ef=ef)
            for name, f in (("none", None), ("filter", where)):
                sweep[f"{ef}_{name}"] = timed_searches(
                    lambda q, st=st, f=f: [h.image.pic_name for h in st.search(GROUP, q, limit=10, where=f)],
                    qs,
                    truth[name],
                )
                log(f"milvus: ef {ef} {name}: {sweep[f'{ef}_{name}']}")
            stores[f"ef{ef}"] = st  # closed at the end: pymilvus shares one connection per uri
        out["ef_sweep"] = sweep
        # What the reach-key lookup costs (MilvusStore._reached, run by every search that does
        # not return its own vector first, as all these queries): the same searches without it,
        # interleaved with them.
        bare = open_store("Bounded")
        bare._keyed.clear()
        for name, f in (("none", None), ("filter", where)):
            paired = paired_searches(
                {
                    "": lambda q, f=f: [h.image.pic_name for h in store.search(GROUP, q, limit=10, where=f)],
                    "_no_reach": lambda q, f=f: [h.image.pic_name for h in bare.search(GROUP, q, limit=10, where=f)],
                },
                qs, truth[name],
            )
            for tail, figures in paired.items():
                out[f"reach_{name}{tail}"] = figures
            log(f"milvus: with / without the reach lookup, {name}: {paired}")
        stores["no_reach"] = bare
        # Compactions re-indexing in the background while the searches ran: the cores they took.
        out["search_phase_server_cores"] = (cpu_s(pid) - cpu0) / (time.perf_counter() - t)
        out["pending_after_searches"] = pending_rows(client, collection)
        out["server_rss_mb"] = rss_mb(pid)
        out["server_rss_peak_mb"] = rss_mb(pid, "VmHWM")
        session = open_store("Session")
        out.update(add_sample(session, x, args.add_sample))
        log(f"milvus: add_image {out['add_image_per_s']:.0f}/s")
        for st in (*stores.values(), session):
            st.close()  # the first closes the connection they share; the others find it closed
    finally:
        server.stop()
    out["disk_mb"] = du_mb(server.base_dir / "data")
    if not args.keep:
        shutil.rmtree(server.base_dir, ignore_errors=True)
    return out


# --------------------------------------------------------------------------- groups


def run_groups(args: argparse.Namespace) -> dict[str, object]:
    """One group selected by a filtered field, a partition key, or its own partition."""
    from pymilvus import DataType, MilvusClient

    n, groups = args.groups_n, args.groups
    log(f"groups: {n} vectors over {groups} groups ({protobuf_impl()})")
    x = mixture(n, 11)
    group_of = np.arange(n) % groups
    rng = np.random.default_rng(12)
    targets = rng.integers(0, groups, args.queries)
    half = len(targets) // 2
    copied = np.array([rng.choice(np.flatnonzero(group_of == g)) for g in targets[:half]])
    qs = np.concatenate([perturbed(x, copied, 13), mixture(len(targets) - half, 14)])
    every = np.arange(n)
    truth = [
        {int(i) for i in exact_tops(x, every[group_of == g], q[None, :])[0]} for g, q in zip(targets, qs, strict=True)
    ]
    hnsw = {"M": args.hnsw_m, "efConstruction": args.hnsw_ef_construction}
    out: dict[str, object] = {"n": n, "groups": groups, "hnsw": {**hnsw, "ef": args.hnsw_ef}}
    server = start_milvus(args, "milvus-groups")
    try:
        client = MilvusClient(uri=server.uri, timeout=60)
        for layout in ("filtered", "partition_key", "partitions"):
            name = f"layout_{layout}"
            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("pk", DataType.INT64, is_primary=True)
            schema.add_field("group_id", DataType.VARCHAR, max_length=64, is_partition_key=layout == "partition_key")
            schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
            index = client.prepare_index_params()
            index.add_index("vec", index_type="HNSW", metric_type="IP", params=hnsw)
            client.create_collection(name, schema=schema, index_params=index, consistency_level="Bounded")
            if layout == "partitions":
                for g in range(groups):
                    client.create_partition(name, f"g{g}")
            res: dict[str, object] = {"partitions": len(client.list_partitions(name))}
            log(f"groups/{layout}: inserting ({res['partitions']} partitions)")
            t = time.perf_counter()
            if layout == "partitions":
                for g in range(groups):
                    members = np.flatnonzero(group_of == g)
                    for s in range(0, len(members), args.batch):
                        chunk = members[s : s + args.batch]
                        rows = [{"pk": int(i), "group_id": f"g{g}", "vec": x[i].tolist()} for i in chunk]
                        client.insert(name, rows, partition_name=f"g{g}")
            else:
                for rows in batches(n, args.batch):
                    client.insert(name, [{"pk": i, "group_id": f"g{group_of[i]}", "vec": x[i].tolist()} for i in rows])
            res["insert_per_s"] = n / (time.perf_counter() - t)
            t = time.perf_counter()
            client.flush(name)
            res["flush_s"] = time.perf_counter() - t
            waited = wait_indexed(client, name, n, args.index_timeout, f"groups/{layout}")
            res.update(index_s=waited["s"], segments=waited["segments"], pending_after_index=waited["pending"])
            res["index_timed_out"] = bool(waited.get("timed_out"))

            def search(i: int, q: np.ndarray, name: str = name, layout: str = layout) -> list[int]:
                g = f"g{targets[i]}"
                kwargs: dict[str, object] = {}
                if layout == "partitions":
                    kwargs["partition_names"] = [g]
                else:
                    kwargs["filter"] = f'group_id == "{g}"'
                found = client.search(
                    name, data=[q.tolist()], limit=10, output_fields=["pk"],
                    search_params={"metric_type": "IP", "params": {"ef": args.hnsw_ef}},
                    consistency_level="Bounded", **kwargs,
                )
                return [int(h["id"]) for h in found[0]]

            for i in range(3):
                search(i, qs[i])
            lat, recall = [], []
            for i, q in enumerate(qs):
                t = time.perf_counter()
                ids = search(i, q)
                lat.append(time.perf_counter() - t)
                recall.append(len(set(ids) & truth[i]) / 10)
            res.update(p50_ms=pct(lat, 50), p99_ms=pct(lat, 99), recall10=float(np.mean(recall)))
            res["server_rss_mb"] = rss_mb(server.pid)
            log(f"groups/{layout}: {res}")
            out[layout] = res
            client.release_collection(name)
            client.drop_collection(name)
        client.close()
    finally:
        server.stop()
    if not args.keep:
        shutil.rmtree(server.base_dir, ignore_errors=True)
    return out


# --------------------------------------------------------------------------- report


def tables(report: dict) -> str:
    lines: list[str] = []
    e, m = report.get("embedded"), report.get("milvus")
    stores = [(label, r) for label, r in (("embedded (SQLite + usearch)", e), ("Milvus 2.3.5 standalone", m)) if r]
    if stores:
        rows = []
        for label, r in stores:
            ready = r["index_s"] + r.get("load_s", 0) + r.get("visible_s", 0) + r.get("flush_s", 0)
            rows.append(
                [
                    label,
                    f"{r['import_per_s']:,.0f}",
                    f"{r['import_s']:.0f}",
                    f"{ready:.0f}" + (" (timed out)" if r.get("index_timed_out") else ""),
                    f"{r['search_none']['p50_ms']:.1f} / {r['search_none']['p99_ms']:.1f}",
                    f"{r['search_filter']['p50_ms']:.1f} / {r['search_filter']['p99_ms']:.1f}",
                    f"{r['search_none']['recall10']:.3f} / {r['search_filter']['recall10']:.3f}",
                    f"{r['add_image_per_s']:,.0f}",
                    f"{r.get('rss_mb', r.get('server_rss_mb', 0)):,.0f}",
                    f"{r['disk_mb']:,.0f}",
                ]
            )
        lines.append(
            common.markdown_table(
                [
                    "store", "import/s", "import s", "then indexed s", "p50 / p99 ms", f"p50 / p99 ms, {FILTER}",
                    "recall@10 (none / filter)", "add_image/s", "memory MB", "disk MB",
                ],
                rows,
            )
        )
    if e:
        lines.append(
            f"\nembedded: import {e['import_s']:.0f} s, first search (load) {e['load_s']:.1f} s, "
            f"wait_for_index (HNSW) {e['index_s']:.0f} s; RSS growth {e['rss_mb']:,.0f} MB "
            f"(process {e['rss_total_mb']:,.0f} MB, peak {e['rss_peak_mb']:,.0f} MB)"
        )
    if m:
        lines.append(
            f"milvus: import {m['import_s']:.0f} s ({m['protobuf']}; server CPU {m['import_server_cpu_s']:.0f} s, "
            f"client CPU {m['import_client_cpu_s']:.0f} s), all visible to Strong +{m['visible_s']:.1f} s, "
            f"flush {m['flush_s']:.1f} s, indexed +{m['index_s']:.0f} s ({m['segments']} segments, "
            f"server CPU {m['index_server_cpu_s']:.0f} s); server RSS idle {m['server_rss_idle_mb']:,.0f} MB, "
            f"after import {m['server_rss_after_import_mb']:,.0f} MB, indexed {m['server_rss_indexed_mb']:,.0f} MB, "
            f"after searches {m['server_rss_mb']:,.0f} MB, peak {m['server_rss_peak_mb']:,.0f} MB"
        )
        if "pending_after_index" in m:
            lines.append(
                f"milvus: index builds pending (compactions) once every loaded segment was indexed: "
                f"{m['pending_after_index']:,} rows, after the searches {m['pending_after_searches']:,}; "
                f"Milvus used {m['search_phase_server_cores']:.2f} cores while the searches ran"
            )
        lines.append("\n" + common.markdown_table(
            ["Milvus consistency", "p50 ms", "p99 ms", "recall@10"],
            [
                [level, f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}", f"{r['recall10']:.3f}"]
                for level, r in (
                    ("Bounded", m["search_none"]), ("Strong", m["search_none_strong"]),
                    ("Eventually", m["search_none_eventually"]),
                )
            ],
        ))
        if "reach_none_no_reach" in m:
            def cells(tail: str) -> list[str]:
                figures = [m[f"reach_{name}{tail}"] for name in ("none", "filter")]
                return [
                    cell for f in figures for cell in (f"{f['p50_ms']:.1f} / {f['p99_ms']:.1f}", f"{f['recall10']:.3f}")
                ]

            lines.append("\n" + common.markdown_table(
                ["Milvus search (Bounded), interleaved", "p50 / p99 ms", "recall@10", f"p50 / p99 ms, {FILTER}",
                 "recall@10, filter"],
                [["with the reach-key lookup", *cells("")], ["without it", *cells("_no_reach")]],
            ))
    if m and m.get("ef_sweep"):
        sweep = {(int(k.split("_")[0]), k.split("_")[1]): v for k, v in m["ef_sweep"].items()}
        sweep |= {(m["hnsw"]["ef"], name): m[f"search_{name}"] for name in ("none", "filter")}
        factor = m.get("filtered_ef_factor", 1)
        lines.append("\n" + common.markdown_table(
            ["hnsw_ef", "p50 / p99 ms", "recall@10", "ef of the filtered search", f"p50 / p99 ms, {FILTER}",
             "recall@10, filter"],
            [
                [
                    ef, f"{sweep[ef, 'none']['p50_ms']:.1f} / {sweep[ef, 'none']['p99_ms']:.1f}",
                    f"{sweep[ef, 'none']['recall10']:.3f}", min(16384, ef * factor),
                    f"{sweep[ef, 'filter']['p50_ms']:.1f} / {sweep[ef, 'filter']['p99_ms']:.1f}",
                    f"{sweep[ef, 'filter']['recall10']:.3f}",
                ]
                for ef in sorted({ef for ef, _ in sweep})
            ],
        ))
    g = report.get("groups")
    if g:
        lines.append(f"\n{g['n']:,} vectors over {g['groups']} groups:\n")
        lines.append(common.markdown_table(
            ["group selected by", "partitions", "segments", "insert/s", "indexed s", "p50 ms", "p99 ms", "recall@10"],
            [
                [
                    label, r["partitions"], r["segments"], f"{r['insert_per_s']:,.0f}",
                    f"{r['flush_s'] + r['index_s']:.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}",
                    f"{r['recall10']:.3f}",
                ]
                for label, r in (
                    ('filtered field (`group_id == "g"`)', g["filtered"]),
                    ("partition key field", g["partition_key"]),
                    ("one partition per group", g["partitions"]),
                )
                if r
            ],
        ))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="vectors in the group")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--batch", type=int, default=5000, help="rows per import_images call")
    ap.add_argument("--add-sample", type=int, default=2000, help="pictures added one by one with add_image")
    ap.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated, of {', '.join(PHASES)}")
    ap.add_argument("--groups-n", type=int, default=200_000, help="vectors of the groups phase")
    ap.add_argument("--groups", type=int, default=100, help="groups of the groups phase")
    ap.add_argument("--hnsw-m", type=int, default=16, help="Milvus' HNSW (the store's defaults)")
    ap.add_argument("--hnsw-ef-construction", type=int, default=200)
    ap.add_argument("--hnsw-ef", type=int, default=128)
    ap.add_argument("--ef-sweep", type=lambda t: [int(v) for v in t.split(",") if v], default=[32, 64, 256, 512, 1024],
                    help="MilvusStore hnsw_ef values to time besides --hnsw-ef (Bounded)")
    ap.add_argument("--time-tick-ms", type=int, default=200, help="Milvus proxy.timeTickInterval")
    ap.add_argument("--index-timeout", type=float, default=3600, help="longest wait for Milvus' index, s")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "lookalike-bench-milvus")
    ap.add_argument("--keep", action="store_true", help="keep the Milvus data dirs")
    ap.add_argument("--out", type=Path, default=common.RESULTS_DIR / "milvus.json")
    ap.add_argument("--report", action="store_true", help="print the tables of --out and exit")
    ap.add_argument("--one", choices=PHASES, help=argparse.SUPPRESS)
    ap.add_argument("--one-out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.report:
        print(tables(json.loads(args.out.read_text())))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.one:
        res = {"embedded": run_embedded, "milvus": run_milvus, "groups": run_groups}[args.one](args)
        args.one_out.write_text(json.dumps(res))
        return

    phases = [p for p in args.phases.split(",") if p]
    unknown = set(phases) - set(PHASES)
    if unknown:
        ap.error(f"unknown phases: {', '.join(sorted(unknown))}")
    report: dict[str, object] = {}
    if args.out.exists():  # keep what an earlier run at the same size measured in other phases
        old = json.loads(args.out.read_text())
        if old.get("params", {}).get("n") == args.n:
            report = {k: v for k, v in old.items() if k in PHASES}
    started = time.perf_counter()
    wall: dict[str, float] = {}
    for phase in phases:
        with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
            cmd = [sys.executable, __file__, "--one", phase, "--one-out", tmp.name]
            for key in ("n", "queries", "batch", "add_sample", "groups_n", "groups", "hnsw_m", "hnsw_ef_construction",
                        "hnsw_ef", "time_tick_ms", "index_timeout", "workdir"):
                cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
            cmd += ["--ef-sweep", ",".join(map(str, args.ef_sweep))]
            if args.keep:
                cmd.append("--keep")
            t = time.perf_counter()
            subprocess.run(cmd, check=True)
            wall[phase] = time.perf_counter() - t
            report[phase] = json.loads(Path(tmp.name).read_text())
            report[phase]["wall_s"] = wall[phase]
    payload = {
        "machine": common.machine(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "params": {
            "n": args.n, "dim": DIM, "centres": CENTRES, "queries": args.queries, "batch": args.batch,
            "filter": FILTER, "add_sample": args.add_sample, "groups_n": args.groups_n, "groups": args.groups,
        },
        "wall_s": time.perf_counter() - started,
        **report,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(tables(payload))
    print(f"\nwall time {payload['wall_s'] / 60:.1f} min ({', '.join(f'{p} {s / 60:.1f}' for p, s in wall.items())}); "
          f"results in {common.shown(args.out)}")


if __name__ == "__main__":
    main()
