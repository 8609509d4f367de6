"""The gallery's storage backends under test: the embedded SQLite store and Milvus.

Test modules import the ``backend`` fixture (``from backends import backend``); every test
that uses it, directly or through a fixture, runs once per backend. Each Milvus run gets its
own collection prefix on the session's Milvus server, so runs never see each other's groups.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lookalike.config import Settings

BACKENDS = ("sqlite", "milvus")


@dataclass(frozen=True)
class Backend:
    name: str
    settings: dict[str, str] = field(default_factory=dict)
    """Settings fields (lower case) that select this backend."""

    @property
    def env(self) -> dict[str, str]:
        """The same, as LOOKALIKE_* variables for a server or CLI subprocess."""
        return {f"LOOKALIKE_{k.upper()}": v for k, v in self.settings.items()}

    def isolated(self) -> Backend:
        """The same backend with storage of its own (a data dir is already; Milvus needs a prefix)."""
        if "milvus_prefix" not in self.settings:
            return self
        return Backend(self.name, {**self.settings, "milvus_prefix": _prefix()})

    def make_settings(self, data_dir: Path, **extra: object) -> Settings:
        return Settings(data_dir=data_dir, **self.settings, **extra)  # type: ignore[arg-type]


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite")
    uri = request.getfixturevalue("milvus_uri")
    return Backend("milvus", {"milvus_uri": uri, "milvus_prefix": _prefix()})


def _prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"
