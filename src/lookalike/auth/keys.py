"""Credentials: created, listed and revoked from the CLI, checked by the server on every call.

Three kinds, one tenant each:

* ``api``: a bearer key (``x-api-key`` or ``Authorization: Bearer``) for the native, AWS and web
  routes. Only its SHA-256 is stored: a leaked ``auth.db`` gives nobody a key.
* ``tencent``: a SecretId/SecretKey pair for TC3-HMAC-SHA256 signatures; ``eas``: a PAI EAS
  token for HMAC-SHA1 signatures. A verifier of an HMAC must hold its key, so these secrets are
  never stored at all: each is derived from the credential's id with the server's own master
  key (``auth.key`` in the data dir, mode 0600). ``auth.db`` alone still signs nothing.

Revocation takes effect on the next request: the server reads ``auth.db`` (SQLite, WAL) on
every check, so a CLI in another process needs no restart of the server.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import hmac
import os
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lookalike import errors
from lookalike.gallery import validation

Kind = Literal["api", "tencent", "eas"]
KINDS: tuple[Kind, ...] = ("api", "tencent", "eas")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS credentials (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    tenant TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    secret_sha256 TEXT,
    qps REAL,
    created REAL NOT NULL,
    revoked REAL
);
"""


@dataclass(frozen=True)
class Credential:
    id: str
    kind: Kind
    tenant: str
    name: str = ""
    qps: float | None = None
    """Requests a second for this credential; None uses the server's ``rate_limit_qps``."""
    created: float = 0.0
    revoked: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked is None


@dataclass(frozen=True)
class IssuedCredential:
    """What ``create`` hands out once; the secret part is never shown again (nor stored)."""

    credential: Credential
    secret: dict[str, str]


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class KeyStore:
    """``auth.db`` and ``auth.key`` in the data dir. Thread-safe; several processes may share it."""

    def __init__(self, data_dir: Path | str) -> None:
        self.dir = Path(data_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.db_path = self.dir / "auth.db"
        self.key_path = self.dir / "auth.key"
        self._local = threading.local()
        self._master: bytes | None = None
        with self._conn() as conn:
            conn.executescript(_SCHEMA)
        os.chmod(self.db_path, 0o600)  # no secrets inside, but who holds which key is nobody else's business

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.db_path, timeout=10, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            self._local.conn = conn
        return conn

    # ------------------------------------------------------------------ master key

    def _master_key(self, create: bool = False) -> bytes:
        if self._master is None:
            try:
                self._master = bytes.fromhex(self.key_path.read_text().strip())
            except FileNotFoundError:
                if not create:
                    raise errors.AuthFailure(
                        "no auth.key in the data dir: create a credential with `lookalike keys create`"
                    ) from None
                fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(secrets.token_hex(32))
                return self._master_key()
        return self._master

    def derived_secret(self, credential: Credential) -> str:
        """The HMAC key of a tencent or eas credential, recomputed from the master key."""
        digest = hmac.new(self._master_key(), f"{credential.kind}:{credential.id}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")[:40]

    # ------------------------------------------------------------------ admin (CLI)

    def create(self, tenant: str, kind: Kind = "api", *, name: str = "", qps: float | None = None) -> IssuedCredential:
        validation.tenant(tenant)
        if kind not in KINDS:
            raise errors.InvalidParameterValue(f"kind {kind!r}: one of {', '.join(KINDS)}")
        if qps is not None and qps < 0:
            raise errors.InvalidParameterValue("qps must be >= 0 (0 = no limit)")
        self._master_key(create=True)
        secret: dict[str, str]
        if kind == "api":
            cid = "lk" + secrets.token_hex(6)
            token = secrets.token_urlsafe(24)
            key = f"{cid}.{token}"
            digest: str | None = _sha256(key)
        elif kind == "tencent":
            cid = "AKID" + secrets.token_hex(16)
            digest = None
        else:
            cid = "eas" + secrets.token_hex(6)
            digest = None
        credential = Credential(cid, kind, tenant, name, qps, time.time())
        self._conn().execute(
            "INSERT INTO credentials (id, kind, tenant, name, secret_sha256, qps, created)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (cid, kind, tenant, name, digest, qps, credential.created),
        )
        if kind == "api":
            secret = {"api_key": key}
        elif kind == "tencent":
            secret = {"secret_id": cid, "secret_key": self.derived_secret(credential)}
        else:
            secret = {"token": self.derived_secret(credential)}
        return IssuedCredential(credential, secret)

    def list(self, *, include_revoked: bool = False) -> list[Credential]:
        sql = "SELECT id, kind, tenant, name, qps, created, revoked FROM credentials"
        if not include_revoked:
            sql += " WHERE revoked IS NULL"
        return [Credential(*row) for row in self._conn().execute(sql + " ORDER BY created")]

    def revoke(self, credential_id: str) -> Credential:
        conn = self._conn()
        changed = conn.execute(
            "UPDATE credentials SET revoked = ? WHERE id = ? AND revoked IS NULL", (time.time(), credential_id)
        ).rowcount
        found = self.get(credential_id)
        if found is None:
            raise errors.ResourceNotFound(f"no credential {credential_id!r}")
        if not changed:
            raise errors.InvalidParameterValue(f"credential {credential_id!r} is already revoked")
        return found

    # ------------------------------------------------------------------ checks (server)

    def get(self, credential_id: str) -> Credential | None:
        row = self._conn().execute(
            "SELECT id, kind, tenant, name, qps, created, revoked FROM credentials WHERE id = ?", (credential_id,)
        ).fetchone()
        return None if row is None else Credential(*row)

    def check_api_key(self, key: str) -> Credential:
        """The active api credential whose key this is; SecretIdNotFound otherwise."""
        cid, dot, _ = key.partition(".")
        row = None
        if dot:
            row = self._conn().execute(
                "SELECT id, kind, tenant, name, qps, created, revoked, secret_sha256 FROM credentials "
                "WHERE id = ? AND kind = 'api' AND revoked IS NULL",
                (cid,),
            ).fetchone()
        # Compare a digest either way, so an unknown id costs what a wrong key costs.
        if not hmac.compare_digest(row[-1] if row else "0" * 64, _sha256(key)) or row is None:
            raise errors.SecretIdNotFound("the API key is unknown or revoked")
        return Credential(*row[:-1])

    def active(self, kind: Kind) -> builtins.list[Credential]:  # ``list`` here is the method above
        rows = self._conn().execute(
            "SELECT id, kind, tenant, name, qps, created, revoked FROM credentials WHERE kind = ? AND revoked IS NULL",
            (kind,),
        )
        return [Credential(*row) for row in rows]

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
