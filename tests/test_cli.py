"""The command line, run as a user runs it: a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from support import distinct_photos, encode


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "lookalike.cli", *args], capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    paths = []
    for i, photo in enumerate(distinct_photos(3)):
        path = folder / f"{i}.jpg"
        path.write_bytes(encode(photo))
        paths.append(path)
    copy = folder / "copy.png"
    copy.write_bytes(encode(distinct_photos(1)[0].resize((300, 200)), "PNG"))
    return paths + [copy]


def test_embed_prints_json_vectors(files):
    out = json.loads(run("embed", str(files[0]), str(files[1])).stdout)
    assert [row["image"] for row in out] == [str(files[0]), str(files[1])]
    vectors = np.array([row["vector"] for row in out])
    assert vectors.shape == (2, 512)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)


def test_embed_writes_npy(files, tmp_path):
    out = tmp_path / "v.npy"
    run("embed", *map(str, files), "--out", str(out), "--model", "sscd-small")
    matrix = np.load(out)
    assert matrix.shape == (4, 512) and matrix.dtype == np.float32


def test_compare_scores_copies_above_others(files):
    same = json.loads(run("compare", str(files[0]), str(files[3])).stdout)
    other = json.loads(run("compare", str(files[0]), str(files[1])).stdout)
    assert same["similarity"] > other["similarity"]
    assert same["verdict"] in ("same image", "near copy")
    assert other["score"] < 80


def test_errors_exit_2_with_the_code(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"<html>nope</html>")
    result = run("compare", str(bad), str(bad), check=False)
    assert result.returncode == 2 and "ImageDecodeFailed" in result.stderr


def test_models_lists_both():
    out = run("models").stdout
    assert "sscd " in out and "sscd-small" in out and "installed" in out
