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

Markers (registered in pyproject.toml) are given here, by what a test needs, so a test file
never has to remember them: ``milvus`` (a Milvus server: the ``milvus_uri`` fixture, the Milvus
run of ``backend``, or a Milvus test file), ``browser`` (headless Chromium: the web page's files)
and ``slow`` (files that kill servers, fill disks, fuzz every route or score the evaluation sets:
minutes each). ``container`` is set by tests/test_container.py itself. The fast subset:
``pytest -m "not slow and not milvus and not browser and not container"``.
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


MILVUS_FILES = {"test_milvus_store.py", "test_milvus_server.py", "test_migrate.py"}
BROWSER_FILES = {"test_web.py", "test_web_duplicates.py", "test_web_explain.py"}
SLOW_FILES = {
    "test_kill9.py",  # kill -9 of a server mid-ingest, then a restart
    "test_faults.py",  # kills, a full disk on a small tmpfs, trickling URLs
    "test_schemathesis.py",  # every operation of /openapi.json, positive and negative
    "test_hostile_files.py",  # every hostile file through every image route
    "test_ssrf.py",  # every hostile URL through every URL-taking entry point
    "test_retrieval.py",  # the evaluation sets, embedded and scored
    "test_cascade.py",  # the cascade's agreement over real photos with both models
    "test_product_search.py",  # the detector, installed and run on product groups
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Markers by what each test needs (see the module docstring)."""
    for item in items:
        name = item.path.name
        callspec = getattr(item, "callspec", None)
        on_milvus = callspec is not None and callspec.params.get("backend") == "milvus"
        if name in MILVUS_FILES or on_milvus or "milvus_uri" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.milvus)
        if name in BROWSER_FILES:
            item.add_marker(pytest.mark.browser)
        if name in SLOW_FILES:
            item.add_marker(pytest.mark.slow)


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
