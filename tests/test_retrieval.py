"""Issue 8's levers: input geometry, mirror-averaged vectors, local features, geometric
verification, re-ranking and query expansion in search, and the one calibration they feed."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps

from lookalike import errors, scores
from lookalike.config import Settings
from lookalike.engine import Engine
from lookalike.gallery import GalleryService, NewImage
from lookalike.models import local
from lookalike.models.inputs import InputGeometry, pipeline_tag
from lookalike.storage import open_store
from support import distinct_photos, encode, synthetic_image

LEGACY = dict(input_geometry="stretch224", index_flip=False, local_features=0, rerank_depth=0, query_expansion=False)


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(Settings(threads=2, group_qps=False))


@pytest.fixture(scope="module")
def scene() -> Image.Image:
    """A photo-sized picture with structure SIFT can hold on to."""
    return distinct_photos(1)[0].resize((640, 480))


def _crop(image: Image.Image, keep: float) -> Image.Image:
    w, h = image.size
    cw, ch = round(w * keep), round(h * keep)
    left, top = (w - cw) // 2, (h - ch) // 2
    return image.crop((left, top, left + cw, top + ch))


# ------------------------------------------------------------------------------ input geometry


def test_input_geometry_keeps_aspect_and_bounds_the_long_side():
    short = InputGeometry.parse("short288")
    assert short.size(640, 480) == (384, 288)
    assert short.size(480, 640) == (288, 384)
    assert short.size(4000, 500) == (512, 64)  # a panorama: the long side is capped, not 2304 px
    assert InputGeometry.parse("stretch224").size(640, 480) == (224, 224)
    pixels = short.pixels(synthetic_image(1, (640, 480)).convert("L"))
    assert pixels.shape == (288, 384, 3) and pixels.dtype == np.uint8
    for bad in ("short", "square224", "short9999", "stretch12", ""):
        with pytest.raises(errors.InvalidParameterValue):
            InputGeometry.parse(bad)
    assert pipeline_tag("short288", True) == "short288+flip" and pipeline_tag("stretch224", False) == "stretch224"


def test_a_bad_geometry_setting_fails_when_the_engine_starts():
    with pytest.raises(errors.InvalidParameterValue):
        Engine(Settings(input_geometry="round300"))


def test_index_vectors_are_mirror_invariant_and_query_vectors_are_not(engine, scene):
    mirrored = ImageOps.mirror(scene)
    index = engine.embed([encode(scene), encode(mirrored)])
    query = engine.embed([encode(scene), encode(mirrored)], query=True)
    assert float(index[0] @ index[1]) > 0.99
    assert float(query[0] @ query[1]) < 0.98
    # The query side of an image is close to its index side (both are the same photo).
    assert float(query[0] @ index[0]) > 0.9


def test_legacy_geometry_embeds_as_before(scene):
    legacy = Engine(Settings(threads=2, **LEGACY))
    pixels = legacy.pixels(encode(scene))
    assert pixels.shape == (224, 224, 3)
    assert legacy.embedding_tag == "stretch224"
    assert legacy.compare(encode(scene), encode(_crop(scene, 0.6))).inliers is None


# ------------------------------------------------------------------------------ local features


def test_local_features_round_trip_and_refuse_damage(scene):
    features = local.extract(scene, 500)
    assert 100 < len(features) <= 500 and features.size == (512, 384)
    data = features.to_bytes()
    back = local.LocalFeatures.from_bytes(data)
    assert back.size == features.size and np.array_equal(back.descriptors, features.descriptors)
    assert np.abs(back.points - features.points).max() <= 1 / 16
    for damaged in (data[:-1], b"XX" + data[2:], data + b"\0"):
        with pytest.raises(errors.InvalidParameterValue):
            local.LocalFeatures.from_bytes(damaged)
    flat = local.extract(Image.new("RGB", (300, 200), (40, 90, 160)))
    assert len(flat) == 0 and local.verify(flat, features).inliers == 0


def test_a_query_gets_its_own_keypoint_budget(scene):
    """Search queries are found on a smaller image with fewer keypoints; stored images keep the full set."""
    engine = Engine(Settings(threads=1, local_features=800, query_keypoints=300, query_feature_side=320))
    stored, query = engine.local_features(scene), engine.local_features(scene, query=True)
    assert stored.size == (512, 384) and 300 < len(stored) <= 800
    assert query.size == (320, 240) and 100 < len(query) <= 300
    assert local.verify(query, stored).inliers >= scores.COPY_INLIERS  # the two scales still match up
    assert Engine(Settings(threads=1, local_features=0)).local_features(scene, query=True) is None
    # Unset, the query gets as many keypoints as a stored picture
    same = Engine(Settings(threads=1, local_features=800)).local_features(scene, query=True)
    assert len(same) == len(stored) and np.array_equal(same.descriptors, stored.descriptors)


def test_verification_finds_the_crop_where_it_lies(scene):
    crop = _crop(scene, 0.6).resize((480, 360))
    found = local.verify(local.extract(crop), local.extract(scene))
    assert found.inliers >= scores.COPY_INLIERS and len(found.matches) == found.inliers
    assert found.share >= scores.COPY_INLIER_SHARE
    xa, ya, xb, yb = found.matches.T
    # The crop is the central 60%: a point at fraction f of the crop sits at 0.2 + 0.6 f of the scene.
    assert np.median(np.abs(xb - (0.2 + 0.6 * xa))) < 0.01 and np.median(np.abs(yb - (0.2 + 0.6 * ya))) < 0.01
    others = distinct_photos(4)[1:]
    for other in others:
        assert local.verify(local.extract(crop), local.extract(other)).inliers < scores.VERIFIED_INLIERS


# ------------------------------------------------------------------------------ one calibration


def test_similarity_raises_verified_pairs_within_their_verdicts():
    assert scores.similarity(0.42, None) == 0.42
    assert scores.similarity(0.42, scores.VERIFIED_INLIERS - 1, 0.9) == 0.42
    raised = scores.similarity(0.42, scores.VERIFIED_INLIERS)
    assert raised > 0.42 and scores.similarity(0.42, scores.VERIFIED_INLIERS + 30) > raised
    # Many inliers with a small share: a re-shot photo of the object, raised but never a copy.
    reshot = scores.similarity(0.75, 400, scores.COPY_INLIER_SHARE / 2)
    assert 0.75 < reshot < scores.COPY_COSINE
    assert scores.verdict(reshot) == scores.Verdict.SAME_OBJECT
    # Enough inliers that are most of the keypoints: a verified copy, whatever the cosine...
    crop = scores.similarity(0.2, scores.COPY_INLIERS, scores.COPY_INLIER_SHARE)
    assert crop >= scores.COPY_COSINE and scores.verdict(crop) == scores.Verdict.NEAR_COPY
    # ...but only the cosine says "same image", and verification never lowers a cosine.
    assert scores.verdict(scores.similarity(0.9, 1000, 1.0)) == scores.Verdict.NEAR_COPY
    assert scores.similarity(0.99, 1000, 1.0) == 0.99
    assert scores.similarity(0.95, 30, 0.0) == 0.95  # above the ceiling of a verified non-copy: kept
    # Against an expanded query a hit is ordered, never called a copy.
    assert scores.expanded(0.5) == 0.5
    assert scores.verdict(scores.expanded(0.99)) == scores.Verdict.SAME_OBJECT


def test_compare_calls_a_heavy_crop_a_copy_through_verification(engine, scene):
    crop = _crop(scene, 0.45)
    result = engine.compare(encode(scene), encode(crop))
    assert result.inliers is not None and result.inliers >= scores.COPY_INLIERS
    assert result.similarity >= scores.COPY_COSINE and result.score >= 80
    assert result.verdict in (scores.Verdict.NEAR_COPY, scores.Verdict.SAME_IMAGE)
    # Without local features the same pair falls back to its cosine alone.
    plain = Engine(Settings(threads=2, local_features=0)).compare(encode(scene), encode(crop))
    assert plain.inliers is None and plain.similarity == pytest.approx(plain.cosine)
    # Verification settled the copy, so the fast opinion stood: SSCD never ran for this pair.
    assert result.pipeline == "sscd-small@stretch224"


# ------------------------------------------------------------------------------ search


@pytest.fixture(scope="module")
def gallery(tmp_path_factory, engine, scene):
    service = GalleryService(open_store(Settings(data_dir=tmp_path_factory.mktemp("retrieval"), threads=2)), engine)
    service.create_group("g")
    pictures = [("scene", encode(scene))] + [(f"other{i}", encode(p)) for i, p in enumerate(distinct_photos(7)[1:])]
    results = service.add_images("g", [NewImage(name, name, data) for name, data in pictures])
    assert not [r for r in results if isinstance(r, Exception)]
    yield service
    service.close()


def _service(gallery, **settings) -> GalleryService:
    """The same store seen through an engine with other search settings."""
    return GalleryService(gallery.store, Engine(gallery.engine.settings.model_copy(update=settings)))


def test_stored_features_verify_a_partial_copy_in_search(gallery, scene):
    # Half of the scene pasted into an unrelated picture: a partial copy.
    canvas = distinct_photos(9)[8].resize((640, 480))
    canvas.paste(_crop(scene, 0.5), (0, 0))
    hits = gallery.search("g", encode(canvas), limit=3, min_cosine=-1.0)
    top = hits[0]
    assert top.image.pic_name == "scene" and top.inliers >= scores.COPY_INLIERS and top.score >= 80
    # The top of the ranking was verified from LOOKALIKE_VERIFY_FROM up; hits under it were not
    # (one pass: an expanded query's cosines are not the ones verification was decided on)
    floor = gallery.engine.settings.verify_from
    first = _service(gallery, query_expansion=False).search("g", encode(canvas), limit=8, min_cosine=-1.0)
    assert all((h.inliers is not None) == (h.cosine >= floor) for h in first)
    assert any(h.cosine < floor for h in first)  # the unrelated pictures: no verification spent
    every = _service(gallery, verify_from=-1.0).search("g", encode(canvas), limit=3, min_cosine=-1.0)
    assert all(h.inliers is not None for h in every)
    assert [h.image.pic_name for h in every][:1] == ["scene"]
    # Re-ranking off: no inliers, and the Score is the cosine's alone.
    plain = _service(gallery, rerank_depth=0).search("g", encode(canvas), limit=3, min_cosine=-1.0)
    assert all(h.inliers is None for h in plain)
    assert all(h.score == round(scores.calibrated_score(h.cosine)) for h in plain)
    scored = next(h for h in plain if h.image.pic_name == "scene").score
    assert scored < top.score


def test_threshold_applies_after_verification(gallery, scene):
    canvas = distinct_photos(9)[8].resize((640, 480))
    canvas.paste(_crop(scene, 0.5), (0, 0))
    plain = _service(gallery, rerank_depth=0, query_expansion=False)
    cosine = next(
        h for h in plain.search("g", encode(canvas), limit=8, min_cosine=-1.0) if h.image.pic_name == "scene"
    ).cosine
    threshold = 80
    assert scores.calibrated_score(cosine) < threshold  # the cosine alone would not pass 80...
    found = _service(gallery, query_expansion=False).search("g", encode(canvas), limit=8, match_threshold=threshold)
    assert [h.image.pic_name for h in found] == ["scene"]  # ...the verified copy does, alone
    assert plain.search("g", encode(canvas), limit=8, match_threshold=threshold) == []


def test_query_expansion_moves_the_query_towards_its_best_hit(gallery, scene):
    query = encode(_crop(scene, 0.7))
    # Expansion is its own lever: with re-ranking off it still runs, weighted by the cosine.
    without = _service(gallery, rerank_depth=0, query_expansion=False).search("g", query, limit=8, min_cosine=-1.0)
    with_qe = _service(gallery, rerank_depth=0).search("g", query, limit=8, min_cosine=-1.0)
    assert with_qe[0].image.pic_name == without[0].image.pic_name == "scene" and with_qe[0].inliers is None
    assert without[0].cosine < scores.COPY_COSINE  # by its cosine alone the crop is no copy...
    assert with_qe[0].cosine > without[0].cosine  # ...so the expanded query lies between the crop and the scene
    vector = gallery.embed_query(gallery.get_group("g"), query)
    assert without[0].cosine == pytest.approx(
        float(vector @ gallery.store.get_vectors("g", ["scene"])["scene"]), abs=1e-4
    )


def test_copies_of_the_query_keep_their_score_and_do_not_expand_it(gallery, scene):
    # A verified crop (Score >= 80) and the stored picture itself: each adds nothing to the query,
    # so it keeps its first-pass cosine and the query is expanded with the best other hit.
    for query in (encode(_crop(scene, 0.7)), encode(scene)):
        plain = _service(gallery, query_expansion=False).search("g", query, limit=8, min_cosine=-1.0)
        expanded = gallery.search("g", query, limit=8, min_cosine=-1.0)
        assert expanded[0].image.pic_name == plain[0].image.pic_name == "scene"
        assert expanded[0].score == plain[0].score >= 80
        assert expanded[0].cosine == pytest.approx(plain[0].cosine, abs=1e-5)
        runner_up = plain[1]
        assert runner_up.score < 80
        assert (
            next(h.cosine for h in expanded if h.image.pic_name == runner_up.image.pic_name) > runner_up.cosine + 0.01
        )
    assert gallery.search("g", encode(scene), limit=1)[0].score == 100


def test_search_pages_and_filters_through_the_reranked_order(gallery, scene):
    query = encode(_crop(scene, 0.7))
    everything = gallery.search("g", query, limit=8, min_cosine=-1.0)
    assert len(everything) == 7  # the whole gallery
    scores_seen = [h.score for h in everything]
    assert scores_seen == sorted(scores_seen, reverse=True)
    paged = gallery.search("g", query, limit=3, offset=2, min_cosine=-1.0)
    assert [h.image.pic_name for h in paged] == [h.image.pic_name for h in everything[2:5]]
