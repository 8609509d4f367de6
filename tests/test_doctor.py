"""``lookalike --version`` and ``lookalike doctor``, run as an operator runs them (a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from lookalike.doctor import check_cpu, cpu_flags
from support import free_port, small_tmpfs


def lookalike(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, "-m", "lookalike.cli", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, **(env or {})},
    )


def doctor(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, dict[str, str]]]:
    done = lookalike("doctor", "--json", *args, env=env)
    return done.returncode, {c["name"]: c for c in json.loads(done.stdout)}


def test_version_is_the_installed_one():
    done = lookalike("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"lookalike {metadata.version('lookalike')}"


def test_doctor_on_a_working_install_passes_and_names_what_it_found(tmp_path):
    code, checks = doctor("--data-dir", str(tmp_path / "data"))
    assert code == 0, checks
    assert all(c["status"] in ("ok", "warn") for c in checks.values())
    assert checks["python"]["detail"].startswith(".".join(map(str, sys.version_info[:2])))
    assert checks["package onnxruntime"]["detail"] == metadata.version("onnxruntime")
    for model in ("sscd", "sscd-small"):
        path = Path(checks[f"model {model}"]["detail"].split(" (")[0])
        assert checks[f"model {model}"]["status"] == "ok" and path.is_file() and path.suffix == ".onnx"
    flags = cpu_flags() or set()
    assert ("avx2" in checks["cpu"]["detail"]) == ("avx2" in flags)
    assert checks["data dir"]["status"] == "ok" and "does not exist yet" in checks["data dir"]["detail"]
    assert not (tmp_path / "data").exists(), "doctor creates nothing"
    assert checks["milvus"]["detail"].startswith("not configured")
    text = lookalike("doctor", "--data-dir", str(tmp_path)).stdout  # the readable form: one line a check
    assert text.splitlines()[0].split()[:3] == ["OK", "lookalike", metadata.version("lookalike")]


def test_an_unusable_data_dir_fails(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, checks = doctor("--data-dir", str(blocker / "data"))
    assert code == 1
    assert checks["data dir"]["status"] == "fail" and "not a directory" in checks["data dir"]["detail"]


def test_little_free_space_is_a_warning(tmp_path):
    with small_tmpfs(tmp_path / "small", "64m") as mnt:
        code, checks = doctor("--data-dir", str(mnt))
    assert code == 0
    assert checks["free space"]["status"] == "warn" and "(low)" in checks["free space"]["detail"]


def test_an_unreachable_milvus_fails_with_its_address():
    uri = f"http://127.0.0.1:{free_port()}"
    code, checks = doctor("--milvus-uri", uri, env={"LOOKALIKE_MILVUS_TIMEOUT_S": "2"})
    assert code == 1
    assert checks["milvus"]["status"] == "fail" and uri in checks["milvus"]["detail"]


def test_a_running_milvus_answers(milvus_uri, tmp_path):
    code, checks = doctor("--milvus-uri", milvus_uri, "--data-dir", str(tmp_path))
    assert code == 0, checks["milvus"]
    assert checks["milvus"]["status"] == "ok" and "answers, Milvus v" in checks["milvus"]["detail"]


@pytest.mark.parametrize(
    ("flags", "status", "says"),
    [
        ("fpu sse2 avx avx2 avx512f avx512_vnni", "ok", "full speed"),
        ("fpu sse2 avx avx2 avx_vnni", "ok", "full speed"),
        ("fpu sse2 avx avx2", "warn", "3x slower"),
        ("fpu sse2", "warn", "no AVX2"),
    ],
)
def test_cpu_flags_are_read_and_explained(tmp_path, flags, status, says):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n"
    )
    check = check_cpu(cpu_flags(cpuinfo))
    assert check.status == status and says in check.detail
    assert check_cpu(cpu_flags(tmp_path / "absent")).detail.endswith("speed cannot be predicted")
