"""Command line: one verb, one job.

    lookalike serve [--host H] [--port P] [--data-dir D]
    lookalike embed IMG... [--model M] [--out vectors.npy|vectors.json]
    lookalike compare A B [--model M]
    lookalike models
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Callable

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
    for key in ("host", "port", "data_dir", "model", "threads"):
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
    if settings.host not in ("127.0.0.1", "localhost", "::1"):
        logging.getLogger("lookalike").warning(
            "listening on %s: every address that reaches this machine can use the API", settings.host
        )
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
        text = json.dumps([{"image": str(ref), "vector": v.tolist()} for ref, v in zip(args.images, matrix)])
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


@command("models", "list the models and whether their weights are installed")
def models(args: argparse.Namespace) -> int:
    from lookalike.errors import LookalikeError
    from lookalike.models import MODELS

    default = os.environ.get("LOOKALIKE_MODEL", "sscd")
    for spec in MODELS.values():
        try:
            spec.weights_path()
            state = "installed"
        except LookalikeError as exc:
            state = f"missing ({exc.message})"
        mark = "*" if spec.name == default else " "
        print(f"{mark} {spec.name:12s} {spec.dim}-d  {spec.input_size[0]}x{spec.input_size[1]}  {state}  {spec.description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lookalike", description="Self-hosted image similarity and image search.")
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
