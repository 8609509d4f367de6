"""The cost cascade: a fast first opinion, the full model only near a boundary, verification
only where it can change the verdict; per-pipeline calibration; dedup's second opinions."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image, ImageOps

from lookalike import scores
from lookalike.config import Settings
from lookalike.dedup.matching import cascade_pairs
from lookalike.engine import Engine
from lookalike.models.inputs import Pipeline
from support import EVAL_DIR, distinct_photos, encode

AWS_TOLERANCE = 0.07
"""AWS-scale gap allowed between the cascade's answer and the full model's (bench/cascade.py)."""


@pytest.fixture(scope="module")
def cascade() -> Engine:
    return Engine(Settings(threads=2, group_qps=False))


@pytest.fixture(scope="module")
def full_only() -> Engine:
    return Engine(Settings(threads=2, group_qps=False, fast_model=""))


def _crop(image: Image.Image, keep: float) -> Image.Image:
    w, h = image.size
    dw, dh = round(w * (1 - keep) / 2), round(h * (1 - keep) / 2)
    return image.crop((dw, dh, w - dw, h - dh))


def _pairs() -> list[tuple[str, bytes, bytes]]:
    """Unrelated photos, copies (re-encode, crop, mirror) and, with ../shared/eval, other photos
    of the same UKBench object."""
    photos = distinct_photos(6)
    out = []
    for i, photo in enumerate(photos):
        out.append(("unrelated", encode(photo), encode(photos[(i + 1) % len(photos)])))
        out.append(("copy", encode(photo), encode(photo.resize((photo.width // 2, photo.height // 2)), quality=60)))
        out.append(("copy", encode(photo), encode(_crop(photo, 0.8))))
        out.append(("copy", encode(photo), encode(ImageOps.mirror(photo))))
    folder = EVAL_DIR / "ukbench1000" / "images"
    if folder.is_dir():
        names = sorted(folder.iterdir())
        for g in range(0, 24, 4):
            out.append(("same object", names[g].read_bytes(), names[g + 1].read_bytes()))
    return out


def test_the_cascade_reaches_the_full_models_verdicts(cascade: Engine, full_only: Engine):
    pairs = _pairs()
    agree, fast = 0, 0
    for kind, a, b in pairs:
        quick, slow = cascade.compare(a, b), full_only.compare(a, b)
        assert slow.pipeline == "sscd@short288+flip" and slow.model == "sscd"
        assert quick.aws_similarity == pytest.approx(slow.aws_similarity, abs=AWS_TOLERANCE), kind
        agree += quick.verdict == slow.verdict
        fast += quick.model == "sscd-small"
        if kind == "unrelated":  # far from every boundary: the fast opinion stands
            assert quick.pipeline == "sscd-small@stretch224" and quick.verdict is scores.Verdict.DIFFERENT
    assert agree >= len(pairs) - 1, f"{agree} of {len(pairs)} verdicts agree"
    assert fast >= len(pairs) // 3  # the point of it: most pairs never run the full model


def test_near_a_boundary_the_full_model_decides(cascade: Engine):
    photo = distinct_photos(1)[0]
    a, b = encode(photo), encode(ImageOps.mirror(photo))
    fast = cascade.fast_pipeline()
    assert fast is not None
    images = [cascade.decode(a), cascade.decode(b)]
    cos = cascade.pair_cosine(images, fast)
    wide = Engine(Settings(threads=2, cascade_margin=1.0))  # every cosine is near a boundary
    result = wide.compare(a, b)
    assert result.pipeline == "sscd@short288+flip"
    assert Engine(Settings(threads=2, cascade_margin=0.0)).compare(a, b).cosine == pytest.approx(cos, abs=1e-5)


def test_verification_runs_only_where_it_can_change_the_verdict(cascade: Engine):
    photos = distinct_photos(2)
    unrelated = cascade.compare(encode(photos[0]), encode(photos[1]))
    assert unrelated.cosine < cascade.settings.verify_from and unrelated.inliers is None
    same = cascade.compare(encode(photos[0]), encode(photos[0], quality=70))
    assert same.cosine >= scores.COPY_COSINE and same.inliers is None  # already a copy: nothing to add
    explained = cascade.compare(encode(photos[0]), encode(photos[1]), verify=True)
    assert explained.inliers is not None
    crop = cascade.compare(encode(photos[0].resize((640, 480))), encode(_crop(photos[0].resize((640, 480)), 0.6)))
    if cascade.settings.verify_from <= crop.cosine < scores.COPY_COSINE:
        assert crop.inliers is not None and crop.verdict in (scores.Verdict.NEAR_COPY, scores.Verdict.SAME_IMAGE)


def test_an_explicit_model_runs_alone(cascade: Engine):
    photos = distinct_photos(2)
    result = cascade.compare(encode(photos[0]), encode(photos[1]), model="sscd-small")
    assert result.pipeline == "sscd-small@short288+flip" and result.model == "sscd-small"


def test_calibration_maps_onto_the_reference_scale_and_back():
    assert scores.calibration("sscd@short288+flip") is scores.REFERENCE
    assert scores.calibration("no-such@pipeline") is scores.REFERENCE
    fast = scores.calibration(Pipeline.of("sscd-small", "stretch224").tag)
    assert fast is not scores.REFERENCE
    assert fast.to_reference(fast.match) == pytest.approx(scores.MATCH_COSINE)
    assert fast.to_reference(fast.copy) == pytest.approx(scores.COPY_COSINE)
    assert fast.to_reference(fast.same_image) == pytest.approx(scores.SAME_IMAGE_COSINE)
    xs = np.linspace(-1, 1, 41)
    mapped = [fast.to_reference(float(x)) for x in xs]
    assert all(b >= a for a, b in itertools.pairwise(mapped))  # monotonic: orders never change
    for x in xs:
        assert fast.from_reference(fast.to_reference(float(x))) == pytest.approx(float(x), abs=1e-6)
    assert fast.to_reference(1.0) == 1.0 and fast.to_reference(0.0) == 0.0


def test_cascade_pairs_consults_the_second_opinion_only_in_doubt():
    # rows 0-1: cosine 0.95 (sure); 2-3: 0.8 (in doubt); 4-5: 0.1 (out); each pair in its own plane
    vectors = np.zeros((6, 6), dtype=np.float32)
    for n, c in enumerate((0.95, 0.8, 0.1)):
        vectors[2 * n, 2 * n] = 1.0
        vectors[2 * n + 1, 2 * n], vectors[2 * n + 1, 2 * n + 1] = c, np.sqrt(1 - c * c)
    asked: list[tuple[int, int]] = []

    def second(left, right, first):
        asked.extend(zip(left.tolist(), right.tolist(), strict=True))
        return np.array([0.85 if a == 2 else np.nan for a in left.tolist()], dtype=np.float32)

    found = cascade_pairs(vectors, 0.81, scores.REFERENCE, second, doubt=(0.6, 0.87))
    assert asked == [(2, 3)]
    assert sorted(zip(found.left.tolist(), found.right.tolist(), strict=True)) == [(0, 1), (2, 3)]
    refused = cascade_pairs(
        vectors, 0.81, scores.REFERENCE, lambda left, right, f: np.full(len(left), np.nan), doubt=(0.6, 0.87)
    )
    assert sorted(zip(refused.left.tolist(), refused.right.tolist(), strict=True)) == [(0, 1)]  # no opinion: dropped
    alone = cascade_pairs(vectors, 0.81, scores.REFERENCE)
    assert sorted(zip(alone.left.tolist(), alone.right.tolist(), strict=True)) == [(0, 1)]


def test_dedup_verifies_a_crop_the_fast_model_doubts(tmp_path):
    from lookalike.dedup import find_duplicates

    photo = distinct_photos(3)
    folder = tmp_path / "photos"
    folder.mkdir()
    big = photo[0].resize((1024, 768))
    (folder / "a.jpg").write_bytes(encode(big))
    (folder / "a-crop.jpg").write_bytes(encode(_crop(big, 0.6).resize((700, 525)), quality=75))
    (folder / "b.jpg").write_bytes(encode(photo[1]))
    (folder / "c.jpg").write_bytes(encode(photo[2]))
    report = find_duplicates(folder, settings=Settings(data_dir=tmp_path / "data", threads=2))
    groups = [sorted([g.keep.path] + [d.path for d in g.duplicates]) for g in report.groups]
    assert groups == [["a-crop.jpg", "a.jpg"]]
    plain = find_duplicates(folder, settings=Settings(data_dir=tmp_path / "plain", threads=2, local_features=0))
    # without verification the crop rests on the cosines alone; the verified run never finds less
    assert len(plain.groups) <= len(report.groups)



def test_a_wire_pays_only_for_the_boundaries_its_answer_has():
    # every cosine lies within a margin of 0.45 of one of the three verdict boundaries
    wide = Engine(Settings(threads=2, cascade_margin=0.45))
    photos = distinct_photos(2)
    a, b = encode(photos[0]), encode(photos[1])
    assert wide.compare(a, b).pipeline == "sscd@short288+flip"
    aws = wide.compare(a, b, boundaries=scores.NO_BOUNDARY)  # a bare cosine: no boundary to be near
    assert aws.pipeline == "sscd-small@stretch224"
    # PAI promises only "80 and above is the same image": unrelated photos lie far below it
    pai = wide.compare(a, b, boundaries=scores.SAME_OR_NOT)
    assert pai.cosine < scores.COPY_COSINE - 0.45 and pai.pipeline == "sscd-small@stretch224"
    copy = wide.compare(a, encode(photos[0], quality=60), boundaries=scores.SAME_OR_NOT)
    # near the copy boundary, verification (cheap beside the full model) settles a copy
    assert copy.inliers is not None and copy.pipeline == "sscd-small@stretch224" and copy.score >= scores.COPY_SCORE


def test_a_verified_copy_settles_the_copy_boundary_without_the_full_model():
    # margin 0.3: without verification a crop's cosine would lie near the copy boundary
    engine = Engine(Settings(threads=2, cascade_margin=0.3))
    big = distinct_photos(1)[0].resize((640, 480))
    a, b = encode(big), encode(_crop(big, 0.7).resize((640, 480)), quality=80)
    pai = engine.compare(a, b, boundaries=scores.SAME_OR_NOT)
    assert pai.verification is not None
    assert scores.verified_copy(pai.inliers, pai.verification.share, pai.copy_share)
    assert pai.pipeline == "sscd-small@stretch224" and pai.score >= scores.COPY_SCORE
    # with every verdict asked for, "same image or near copy" is still open: only the cosine says
    assert engine.compare(a, b).pipeline == "sscd@short288+flip"
    blind = Engine(Settings(threads=2, cascade_margin=0.3, local_features=0))
    unsettled = blind.compare(a, b, boundaries=scores.SAME_OR_NOT)
    assert unsettled.pipeline == "sscd@short288+flip"  # nothing verified: the full model decides


def test_keypoints_on_a_smaller_image_need_a_larger_share_to_make_a_copy():
    # fewer, stronger keypoints raise every pair's share: a re-shot photo at 42% stays a re-shot photo
    assert scores.verified_copy(25, 0.42, scores.copy_share(512))
    assert not scores.verified_copy(25, 0.42, scores.copy_share(320))
    assert scores.copy_share(Settings().pair_feature_side) == scores.SMALL_SIDE_COPY_SHARE
    raised = scores.similarity(0.6, 25, 0.42, scores.copy_share(320))
    assert scores.MATCH_COSINE < raised < scores.COPY_COSINE  # verified, raised, but not a copy
    assert scores.similarity(0.6, 25, 0.42) >= scores.COPY_COSINE
