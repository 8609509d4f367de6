"""Shared fixtures: a real ``lookalike serve`` subprocess on loopback, and test pictures.

* ``server`` (session): base URL of a server with default settings on a temporary data dir.
* ``server_factory`` (session): ``server_factory(env={...}, data_dir=...)`` starts another one
  (say with ``LOOKALIKE_ALLOW_PRIVATE_URLS=true``) and returns its :class:`ServerProcess`, which
  can be ``kill()``-ed with SIGKILL and ``start()``-ed again on the same data dir.
* ``photos`` (session): synthetic photos by seed, and real ones from ../shared/eval when present.
* ``milvus_uri`` (session): ``http://127.0.0.1:PORT`` of a real Milvus standalone server
  (tests/milvus_server.py) on a temporary base dir, started on first use and shared by the
  session: each test uses collection names of its own. Without the ``milvus`` package the tests
  that use it fail, never skip. A test that restarts or kills Milvus starts its own
  ``MilvusProcess``.
* ``backend`` (tests/backends.py): every test that asks for it, directly or through a fixture,
  runs once per storage backend (SQLite, Milvus).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from backends import backend  # noqa: F401 - re-exported: conftest's names are every test module's fixtures
from support import Photos, ServerProcess


@pytest.fixture(scope="session")
def server_factory(tmp_path_factory) -> Callable[..., ServerProcess]:
    started: list[ServerProcess] = []

    def make(env: dict[str, str] | None = None, data_dir: Path | None = None, *, start: bool = True) -> ServerProcess:
        folder = data_dir or tmp_path_factory.mktemp("server") / "data"
        proc = ServerProcess(folder, env)
        started.append(proc)
        if start:
            proc.start()
        return proc

    yield make
    for proc in started:
        proc.stop()


@pytest.fixture(scope="session")
def server(server_factory) -> str:
    """Base URL of a shared server: default settings, temporary data dir."""
    return server_factory().base_url




@pytest.fixture(scope="session")
def photos() -> Photos:
    return Photos()


@pytest.fixture(scope="session")
def milvus_uri(tmp_path_factory) -> Iterator[str]:
    """URI of a Milvus server shared by the session (proxy.timeTickInterval 200 ms)."""
    try:
        from milvus_server import MilvusProcess
    except ImportError as exc:
        pytest.fail(f"cannot start Milvus: {exc}", pytrace=False)
    server = MilvusProcess(tmp_path_factory.mktemp("milvus"), time_tick_ms=200)
    try:
        server.start()
        yield server.uri
    finally:
        server.stop()
