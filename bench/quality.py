"""Retrieval quality of lookalike's own pipeline on UKBench (N-S score) and Holidays (mAP).

Every image goes through ``Engine.embed`` (safe decode, JPEG draft, resize, ONNX model), then
exact cosine search over the whole set.

    .venv/bin/python bench/quality.py                       # both models, both sets, shipped pipeline
    .venv/bin/python bench/quality.py --geometry all        # compare input geometries / filters / draft
    .venv/bin/python bench/quality.py --geometry draft --upscale 3   # large JPEG inputs: draft on/off

Geometries: ``current`` (shipped, untouched), ``stretchN`` (stretch to NxN) or ``shortN`` (shorter
side N, aspect kept), optionally ``/bilinear|/bicubic|/lanczos|...`` and ``/draft|/draft2x|/nodraft``.
Results: bench/results/quality.json (or --out).
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
from PIL import Image

import common

PRESETS = {
    "filters": ["stretch224/bilinear", "stretch224/bicubic", "stretch224/lanczos"],
    "draft": [
        "stretch224/bilinear/draft",
        "stretch224/bilinear/draft2x",
        "stretch224/bilinear/nodraft",
        "stretch224/bicubic/draft",
        "stretch224/bicubic/draft2x",
        "stretch224/bicubic/nodraft",
        "stretch224/lanczos/draft",
        "stretch224/lanczos/nodraft",
    ],
    "all": [
        "current",
        "stretch224/bilinear",
        "stretch224/bicubic",
        "stretch224/lanczos",
        "stretch224/nodraft",
        "short224/bilinear",
        "short224/bicubic",
        "short320/bilinear",
    ],
}


def upscaled(blobs: list[bytes], factor: float) -> list[bytes]:
    """In-memory JPEG (q90) copies enlarged ``factor`` times, standing in for camera-size uploads."""
    out = []
    for b in blobs:
        with Image.open(io.BytesIO(b)) as im:
            im = im.convert("RGB")
            size = (round(im.width * factor), round(im.height * factor))
            out.append(common.jpeg_bytes(im.resize(size, Image.Resampling.LANCZOS), 90))
    return out


def pixels_ms(engine, blobs: list[bytes], model: str, variant: common.Variant, limit: int = 300) -> float:
    """Decode + resize cost (one thread, ``Engine.pixels``), ms per image over the first ``limit``;
    the best of three passes, so that other load on the machine disturbs it less."""
    sample = blobs[:limit]
    passes = []
    with variant.applied():
        engine.pixels(sample[0], model=model)
        for _ in range(3):
            start = time.perf_counter()
            for b in sample:
                engine.pixels(b, model=model)
            passes.append(time.perf_counter() - start)
    return min(passes) * 1000 / len(sample)


def evaluate(engine, data: common.EvalSet, model: str, variant: common.Variant) -> dict:
    vectors, seconds = common.embed_all(engine, data.blobs, model, variant=variant)
    result = {
        "images": len(data),
        "embed_images_per_s": len(data) / seconds,
        "batched": variant.fixed_shape,
        "pixels_ms": pixels_ms(engine, data.blobs, model, variant),
    }
    if data.name.startswith("ukbench"):
        result["ns_score"] = common.ns_score(vectors, data.groups)
    aps = common.query_aps(vectors, data.queries)
    result["map"] = float(aps.mean())
    result["query_ap"] = [round(float(x), 6) for x in aps]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(common.MODELS), help="comma-separated (default: %(default)s)")
    parser.add_argument("--sets", default=",".join(common.SETS), help="comma-separated (default: %(default)s)")
    parser.add_argument(
        "--geometry",
        default="current",
        help="comma-separated variants or a preset (" + ", ".join(PRESETS) + "); default: current",
    )
    parser.add_argument("--upscale", type=float, default=1.0, help="enlarge every image this much first (JPEG q90)")
    parser.add_argument("--threads", type=int, default=0, help="LOOKALIKE_THREADS for the engine (0 = all cores)")
    parser.add_argument("--out", default="quality.json", help="file name under bench/results/")
    args = parser.parse_args()

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    specs = PRESETS.get(args.geometry) or [g for g in args.geometry.split(",") if g.strip()]
    variants = [common.Variant.parse(g) for g in specs]
    root = common.require_eval_sets(sets)

    data = {}
    for name in sets:
        data[name] = common.load_set(name, root)
        if args.upscale != 1.0:
            data[name].blobs = upscaled(data[name].blobs, args.upscale)
    engine = common.make_engine(args.threads)

    results = []
    for model in models:
        engine.embed([data[sets[0]].blobs[0]], model=model)  # load the session outside the timings
        for variant in variants:
            row = {"model": model, "geometry": variant.spec, "upscale": args.upscale}
            for name in sets:
                r = evaluate(engine, data[name], model, variant)
                row[name] = r
                metric = f"N-S {r['ns_score']:.3f}" if "ns_score" in r else f"mAP {100 * r['map']:.1f}"
                print(
                    f"{model:<11} {variant.spec:<28} {name:<12} {metric:<10} "
                    f"{r['embed_images_per_s']:6.1f} img/s  pixels {r['pixels_ms']:.2f} ms",
                    flush=True,
                )
            results.append(row)

    headers = ["model", "geometry", "UKBench N-S", "UKBench mAP", "Holidays mAP", "img/s (Engine.embed)", "decode+resize ms"]
    rows = []
    for r in results:
        uk, ho = r.get("ukbench1000", {}), r.get("holidays811", {})
        speeds = [x["embed_images_per_s"] for x in (uk, ho) if x]
        pix = [x["pixels_ms"] for x in (uk, ho) if x]
        rows.append(
            [
                r["model"],
                r["geometry"] + (f" (x{r['upscale']:g} JPEG)" if r["upscale"] != 1.0 else ""),
                f"{uk['ns_score']:.3f}" if uk else "-",
                f"{100 * uk['map']:.1f}" if uk else "-",
                f"{100 * ho['map']:.1f}" if ho else "-",
                f"{np.mean(speeds):.1f}" + ("" if all(x.get("batched") for x in (uk, ho) if x) else " (1/call)"),
                f"{np.mean(pix):.2f}",
            ]
        )
    print()
    print(common.markdown_table(headers, rows))

    # Per-query AP against each model's first geometry: is a difference more than noise?
    if len(variants) > 1:
        print(f"\nmAP difference per query vs each model's first geometry ({variants[0].spec}), 95% bootstrap interval\n")
        diff_rows = []
        for r in results:
            base = next(x for x in results if x["model"] == r["model"])
            if base is r:
                continue
            for name in sets:
                d = common.paired_difference(r[name]["query_ap"], base[name]["query_ap"])
                r[name]["vs_first"] = d
                diff_rows.append(
                    [
                        r["model"],
                        r["geometry"],
                        name,
                        f"{100 * d['mean']:+.2f}",
                        f"{d['better']} / {d['worse']}",
                        f"[{100 * d['ci95'][0]:+.2f}, {100 * d['ci95'][1]:+.2f}]",
                    ]
                )
        print(common.markdown_table(["model", "geometry", "set", "mAP diff", "queries better / worse", "95% CI"], diff_rows))
    path = common.write_json(args.out, {"argv": vars(args), "results": results})
    print(f"\nwrote {common.shown(path)}")


if __name__ == "__main__":
    main()
