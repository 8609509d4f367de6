"""Fits the cosine anchors of src/lookalike/scores.py on UKBench + Holidays.

    .venv/bin/python bench/calibrate.py                 # fit on sscd, report sscd-small at the same anchors
    .venv/bin/python bench/calibrate.py --sources 120   # fewer copied images (faster)

Three boundaries, each a cosine between two unit vectors from ``Engine.embed``:

* MATCH_COSINE      same object/scene (UKBench same group, Holidays same scene) vs unrelated photos
                    (different group/scene). Chosen: best F1 over all pairs of the two sets.
* COPY_COSINE       copies of an image (re-encoded, resized, cropped, flipped, rotated, recoloured,
                    captioned; built in memory, never saved) vs non-copies (every other image,
                    other photos of the same object included). Chosen: best F1 over copies vs all
                    non-copy pairs. The calibrated score maps it to 80 (PAI: below 80 = not the same image).
* SAME_IMAGE_COSINE the identical picture (JPEG re-encodes q30-75, 0.5x resize) vs edited copies
                    (crops, flip, rotation, colour, overlay) and non-copies. Chosen: best F1.

Results: bench/results/calibration.json (or --out).
"""

from __future__ import annotations

import argparse
import random
from io import BytesIO

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

import common

SAME_IMAGE_EDITS = ("jpeg30", "jpeg50", "jpeg75", "resize50")
OTHER_EDITS = ("crop80", "crop60", "hflip", "rotate", "color", "overlay")
EDITS = SAME_IMAGE_EDITS + OTHER_EDITS
GRID = np.round(np.arange(0.0, 1.0001, 0.01), 2)
PRINT_GRID = np.round(np.arange(0.10, 0.951, 0.05), 2)


# --------------------------------------------------------------------------- copies (in memory)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType sizes
        return ImageFont.load_default()


def _centre_crop(im: Image.Image, keep: float) -> Image.Image:
    w, h = im.size
    cw, ch = round(w * keep), round(h * keep)
    left, top = (w - cw) // 2, (h - ch) // 2
    return im.crop((left, top, left + cw, top + ch))


def make_copy(data: bytes, edit: str, rng: random.Random) -> bytes:
    """One edited copy of an image, as the bytes a client would upload."""
    im = Image.open(BytesIO(data)).convert("RGB")
    if edit.startswith("jpeg"):
        return common.jpeg_bytes(im, int(edit[4:]))
    if edit == "resize50":
        im = im.resize((im.width // 2, im.height // 2), Image.Resampling.BICUBIC)
    elif edit == "crop80":
        im = _centre_crop(im, 0.8)
    elif edit == "crop60":
        im = _centre_crop(im, 0.6)
    elif edit == "hflip":
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    elif edit == "rotate":
        angle = rng.uniform(10, 25) * rng.choice((-1, 1))
        im = im.rotate(angle, Image.Resampling.BICUBIC, expand=False, fillcolor=(0, 0, 0))
    elif edit == "color":
        im = ImageEnhance.Brightness(im).enhance(rng.choice((rng.uniform(0.6, 0.8), rng.uniform(1.2, 1.4))))
        im = ImageEnhance.Contrast(im).enhance(rng.choice((rng.uniform(0.6, 0.8), rng.uniform(1.2, 1.5))))
    elif edit == "overlay":
        w, h = im.size
        layer = Image.new("RGBA", im.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(layer)
        band = max(12, h // 8)  # a caption banner along the bottom
        draw.rectangle((0, h - band, w, h), fill=(0, 0, 0, 150))
        draw.text(
            (8, h - band + band // 6),
            "lookalike test caption 2026",
            font=_font(band * 2 // 3),
            fill=(255, 255, 255, 230),
        )
        x, y = rng.randint(0, w // 2), rng.randint(0, h // 3)  # a watermark-like text
        draw.text((x, y), "@copy", font=_font(max(10, h // 10)), fill=(255, 255, 0, 170))
        im = Image.alpha_composite(im.convert("RGBA"), layer).convert("RGB")
    else:
        raise ValueError(edit)
    return common.jpeg_bytes(im, 90)


def pick_sources(sets: list[common.EvalSet], n: int) -> list[tuple[int, int]]:
    """(set index, image index) pairs: n images spread over the sets, one per group."""
    per_set = max(1, n // len(sets))
    out = []
    for si, data in enumerate(sets):
        seen: set[int] = set()
        for i in range(len(data)):
            g = int(data.groups[i])
            if g in seen:
                continue
            seen.add(g)
            out.append((si, i))
            if len(seen) >= per_set:
                break
    return out


# --------------------------------------------------------------------------- fitting


def best_f1(pos: np.ndarray, neg: np.ndarray) -> tuple[float, list[dict]]:
    table = common.threshold_table(pos, neg, GRID)
    best = max(table, key=lambda r: (round(r["f1"], 6), r["threshold"]))
    return best["threshold"], table


def fpr_point(table: list[dict], max_fpr: float) -> float:
    return min(r["threshold"] for r in table if r["fpr"] <= max_fpr)


def frac_at_least(values: np.ndarray, t: float) -> float:
    return float(np.mean(values >= t)) if len(values) else float("nan")


def run_model(engine, model: str, sets: list[common.EvalSet], copies: dict) -> dict:
    # Originals of both sets; groups made disjoint across sets.
    blobs, groups, offset = [], [], 0
    for data in sets:
        blobs += data.blobs
        groups.append(data.groups + offset)
        offset += int(data.groups.max()) + 1
    groups = np.concatenate(groups)
    originals, _ = common.embed_all(engine, blobs, model)
    copy_vectors, _ = common.embed_all(engine, copies["blobs"], model)

    sims = originals @ originals.T
    cs = copy_vectors @ originals.T  # copies x originals
    verified = None
    if engine.settings.local_features:
        verified = verify_pairs(engine, blobs, copies, sims, cs, groups)
        sims, cs = verified.pop("sims"), verified.pop("cs")
    same_mask, diff_mask = common.pair_masks(groups)
    same_pairs, diff_pairs = sims[same_mask], sims[diff_mask]

    src = copies["source"]  # global original index per copy
    edit = copies["edit"]
    rows = np.arange(len(src))
    copy_pos = cs[rows, src]
    other = np.ones_like(cs, dtype=bool)
    other[rows, src] = False
    same_object = (groups[None, :] == groups[src][:, None]) & other
    unrelated = other & ~same_object
    hard_neg = np.concatenate([cs[same_object], same_pairs])  # other photos of the same object
    easy_neg = np.concatenate([cs[unrelated], diff_pairs])
    non_copies = np.concatenate([hard_neg, easy_neg])

    same_image = np.isin(edit, SAME_IMAGE_EDITS)
    pos_same = copy_pos[same_image]
    neg_same = np.concatenate([copy_pos[~same_image], non_copies])

    per_edit = {
        e: {
            "n": int(np.sum(edit == e)),
            "mean": float(copy_pos[edit == e].mean()),
            "p05": float(np.percentile(copy_pos[edit == e], 5)),
            "min": float(copy_pos[edit == e].min()),
        }
        for e in EDITS
    }
    return {
        "model": model,
        "images": len(blobs),
        "copies": len(src),
        "pairs": {
            "same_object": int(len(same_pairs)),
            "unrelated": int(len(diff_pairs)),
            "copy": int(len(copy_pos)),
            "non_copy": int(len(non_copies)),
            "non_copy_same_object": int(len(hard_neg)),
        },
        "_arrays": {
            "match_pos": same_pairs,
            "match_neg": diff_pairs,
            "copy_pos": copy_pos,
            "copy_edit": edit,
            "hard_neg": hard_neg,
            "easy_neg": easy_neg,
            "non_copies": non_copies,
            "same_pos": pos_same,
            "same_neg": neg_same,
            "edited_copies": copy_pos[~same_image],
        },
        "per_edit": per_edit,
        "verification": verified,
    }


def verify_pairs(
    engine, blobs: list[bytes], copies: dict, sims: np.ndarray, cs: np.ndarray, groups: np.ndarray, top: int = 5
) -> dict:
    """Geometric verification where it runs in the product: every same-object pair, every copy
    with its original, and each image's ``top`` nearest others (where search re-ranks). Those
    entries become ``scores.similarity``; the rest keep their cosine (unverified pairs are
    ranked out of search's re-ranking depth). Also the inlier counts of copies and of other
    photos of the same object, which fit COPY_INLIERS."""
    from concurrent.futures import ThreadPoolExecutor

    from lookalike import scores
    from lookalike.models.local import verify

    def features(data: bytes):
        return engine.local_features(engine.decode(data))

    with ThreadPoolExecutor(max_workers=engine.settings.threads or 2) as pool:
        orig_f = list(pool.map(features, blobs))
        copy_f = list(pool.map(features, copies["blobs"]))
        sims, cs = sims.copy(), cs.copy()
        n = len(blobs)
        pairs = set()
        same = np.argwhere((groups[:, None] == groups[None, :]) & ~np.eye(n, dtype=bool))
        pairs.update((int(a), int(b)) for a, b in same if a < b)
        masked = sims - 3 * np.eye(n)
        for a in range(n):
            pairs.update((min(a, int(b)), max(a, int(b))) for b in np.argpartition(-masked[a], top)[:top])
        pairs = sorted(pairs)
        inl = list(pool.map(lambda p: verify(orig_f[p[0]], orig_f[p[1]]), pairs))
        for (a, b), v in zip(pairs, inl, strict=True):
            sims[a, b] = sims[b, a] = scores.similarity(float(sims[a, b]), v.inliers, v.share)
        src = copies["source"]
        copy_pairs = {(i, int(src[i])) for i in range(len(src))}
        for i in range(len(src)):
            copy_pairs.update((i, int(b)) for b in np.argpartition(-cs[i], top)[:top])
        copy_pairs = sorted(copy_pairs)
        cinl = list(pool.map(lambda p: verify(copy_f[p[0]], orig_f[p[1]]), copy_pairs))
    copy_inliers, same_object = [], [v for (a, b), v in zip(pairs, inl, strict=True) if groups[a] == groups[b]]
    for (i, b), v in zip(copy_pairs, cinl, strict=True):
        cs[i, b] = scores.similarity(float(cs[i, b]), v.inliers, v.share)
        if b == src[i]:
            copy_inliers.append((copies["edit"][i], v))
        elif groups[b] == groups[src[i]]:
            same_object.append(v)
    edits = np.array([e for e, _ in copy_inliers])
    counts = np.array([v.inliers for _, v in copy_inliers])
    shares = np.array([v.share for _, v in copy_inliers])
    other, other_share = np.array([v.inliers for v in same_object]), np.array([v.share for v in same_object])
    table = [
        {
            "inliers": t,
            "share": r,
            "copies_at_least": float(np.mean((counts >= t) & (shares >= r))),
            "same_object_at_least": float(np.mean((other >= t) & (other_share >= r))),
            "per_edit": {e: float(np.mean(((counts >= t) & (shares >= r))[edits == e])) for e in EDITS},
        }
        for t in (scores.VERIFIED_INLIERS, scores.COPY_INLIERS, 40)
        for r in (0.0, 0.2, scores.COPY_INLIER_SHARE, 0.5)
    ]
    return {"sims": sims, "cs": cs, "pairs_verified": len(pairs) + len(copy_pairs), "inlier_table": table}


def describe(r: dict, match: float, copy: float, same: float) -> dict:
    a = r["_arrays"]
    m = common.threshold_table(a["match_pos"], a["match_neg"], [match])[0]
    c = common.threshold_table(a["copy_pos"], a["non_copies"], [copy])[0]
    s = common.threshold_table(a["same_pos"], a["same_neg"], [same])[0]
    return {
        "match": {**m, "unrelated_below": 1 - m["fpr"]},
        "copy": {
            **c,
            "copies_above": frac_at_least(a["copy_pos"], copy),
            "non_copies_below": 1 - frac_at_least(a["non_copies"], copy),
            "same_object_photos_below": 1 - frac_at_least(a["hard_neg"], copy),
            "unrelated_below": 1 - frac_at_least(a["easy_neg"], copy),
            "per_edit_above": {
                e: frac_at_least(a["copy_pos"][a["copy_edit"] == e], copy) for e in EDITS
            },
        },
        "same_image": {
            **s,
            "reencodes_above": frac_at_least(a["same_pos"], same),
            "edited_copies_below": 1 - frac_at_least(a["edited_copies"], same),
            "per_edit_above": {
                e: frac_at_least(a["copy_pos"][a["copy_edit"] == e], same) for e in EDITS
            },
        },
    }


def print_table(title: str, rows: list[dict], extra: dict[str, np.ndarray] | None = None) -> None:
    print(f"\n{title}")
    headers = ["cosine", "precision", "recall", "F1", "FPR"] + list(extra or {})
    out = []
    for r in rows:
        line = [
            f"{r['threshold']:.2f}",
            f"{r['precision']:.4f}",
            f"{r['recall']:.4f}",
            f"{r['f1']:.4f}",
            f"{r['fpr']:.5f}",
        ]
        for values in (extra or {}).values():
            line.append(f"{1 - frac_at_least(values, r['threshold']):.4f}")
        out.append(line)
    print(common.markdown_table(headers, out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--models", default=",".join(common.MODELS), help="the first one is fitted (default: %(default)s)"
    )
    parser.add_argument("--sources", type=int, default=300, help="images copied with every edit (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--out", default="calibration.json", help="file name under bench/results/")
    args = parser.parse_args()

    root = common.require_eval_sets(common.SETS)
    sets = [common.load_set(name, root) for name in common.SETS]
    offsets = np.cumsum([0] + [len(s) for s in sets])
    rng = random.Random(args.seed)
    copies = {"blobs": [], "source": [], "edit": []}
    for si, i in pick_sources(sets, args.sources):
        for e in EDITS:
            copies["blobs"].append(make_copy(sets[si].blobs[i], e, rng))
            copies["source"].append(int(offsets[si] + i))
            copies["edit"].append(e)
    copies["source"] = np.array(copies["source"])
    copies["edit"] = np.array(copies["edit"])
    print(
        f"{sum(len(s) for s in sets)} originals, {len(copies['blobs'])} copies of "
        f"{len(copies['blobs']) // len(EDITS)} images"
    )

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    engine = common.make_engine(args.threads)
    results = {}
    fits = {}
    for model in models:
        r = run_model(engine, model, sets, copies)
        a = r["_arrays"]
        match_t, match_table = best_f1(a["match_pos"], a["match_neg"])
        copy_t, copy_table = best_f1(a["copy_pos"], a["non_copies"])
        same_t, same_table = best_f1(a["same_pos"], a["same_neg"])
        r["fitted"] = {
            "MATCH_COSINE": match_t,
            "COPY_COSINE": copy_t,
            "SAME_IMAGE_COSINE": same_t,
            "match_fpr_0.5pct": fpr_point(match_table, 0.005),
            "match_fpr_0.1pct": fpr_point(match_table, 0.001),
        }
        r["tables"] = {"match": match_table, "copy": copy_table, "same_image": same_table}
        fits[model] = r["fitted"]
        results[model] = r

        print(f"\n=== {model}: {r['images']} originals, {r['copies']} copies ===")
        print("per edit: cosine to its source (mean / 5th percentile / min)")
        for e, s in r["per_edit"].items():
            print(f"  {e:<9} {s['mean']:.3f} / {s['p05']:.3f} / {s['min']:.3f}")
        def pick(table):
            return [x for x in table if x["threshold"] in PRINT_GRID]

        print_table(
            f"[{model}] MATCH: same object/scene ({len(a['match_pos'])} pairs) vs unrelated ({len(a['match_neg'])} "
            "pairs)",
            pick(match_table),
            {"unrelated below": a["match_neg"]},
        )
        print_table(
            f"[{model}] COPY: copies ({len(a['copy_pos'])}) vs non-copies ({len(a['non_copies'])}, "
            f"{len(a['hard_neg'])} of them other photos of the same object)",
            pick(copy_table),
            {"non-copies below": a["non_copies"], "same-object photos below": a["hard_neg"]},
        )
        print_table(
            f"[{model}] SAME IMAGE: re-encodes/resizes ({len(a['same_pos'])}) vs edits + non-copies "
            f"({len(a['same_neg'])})",
            pick(same_table),
            {"edited copies below": a["edited_copies"]},
        )
        print(f"[{model}] best-F1 anchors: {r['fitted']}")
        if r["verification"]:
            print(f"\n[{model}] copies (by edit) vs other photos of the same object with at least t inliers, share r")
            print(
                common.markdown_table(
                    ["t", "r", "copies", "same-object photos"] + list(EDITS),
                    [
                        [x["inliers"], x["share"], f"{x['copies_at_least']:.3f}", f"{x['same_object_at_least']:.3f}"]
                        + [f"{x['per_edit'][e]:.2f}" for e in EDITS]
                        for x in r["verification"]["inlier_table"]
                    ],
                )
            )

    fitted = fits[models[0]]
    constants = (fitted["MATCH_COSINE"], fitted["COPY_COSINE"], fitted["SAME_IMAGE_COSINE"])
    print(
        f"\nFitted on {models[0]}: MATCH_COSINE={constants[0]:.2f} COPY_COSINE={constants[1]:.2f} "
        f"SAME_IMAGE_COSINE={constants[2]:.2f}"
    )
    from lookalike import scores

    shipped = (scores.MATCH_COSINE, scores.COPY_COSINE, scores.SAME_IMAGE_COSINE)
    summary_rows = []
    for label, anchors in (("fitted", constants), ("scores.py", shipped)):
        for model in models:
            d = describe(results[model], *anchors)
            results[model].setdefault("at", {})[label] = {"anchors": list(anchors), **d}
            summary_rows.append(
                [
                    label,
                    model,
                    f"{anchors[0]:.2f}: P {d['match']['precision']:.3f} R {d['match']['recall']:.3f} FPR "
                    f"{d['match']['fpr']:.4f}",
                    f"{anchors[1]:.2f}: P {d['copy']['precision']:.3f} R {d['copy']['recall']:.3f} "
                    f"same-obj below {d['copy']['same_object_photos_below']:.3f}",
                    f"{anchors[2]:.2f}: P {d['same_image']['precision']:.3f} R {d['same_image']['recall']:.3f} "
                    f"edits below {d['same_image']['edited_copies_below']:.3f}",
                ]
            )
    print()
    print(
        common.markdown_table(["anchors", "model", "MATCH (same object)", "COPY (copies)", "SAME_IMAGE"], summary_rows)
    )
    print("\ncopies above COPY_COSINE / SAME_IMAGE_COSINE per edit (fitted, first model):")
    d = results[models[0]]["at"]["fitted"]
    print(
        common.markdown_table(
            ["edit", "mean cosine", f">= COPY {constants[1]:.2f}", f">= SAME_IMAGE {constants[2]:.2f}"],
            [
                [
                    e,
                    f"{results[models[0]]['per_edit'][e]['mean']:.3f}",
                    f"{d['copy']['per_edit_above'][e]:.3f}",
                    f"{d['same_image']['per_edit_above'][e]:.3f}",
                ]
                for e in EDITS
            ],
        )
    )

    for r in results.values():
        r.pop("_arrays")
    path = common.write_json(
        args.out,
        {
            "argv": vars(args),
            "fitted_on": models[0],
            "anchors": dict(zip(("MATCH_COSINE", "COPY_COSINE", "SAME_IMAGE_COSINE"), constants, strict=True)),
            "results": results,
        },
    )
    print(f"\nwrote {common.shown(path)}")


if __name__ == "__main__":
    main()
