"""Access control for every dialect: who is calling, which tenant they act for, how fast.

``open`` mode (the default) lets everyone in as the default tenant. ``keys`` mode asks each
dialect for what its own clients send: ``x-api-key`` (or ``Authorization: Bearer``) on the
native, AWS and web routes; a TC3-HMAC-SHA256 (or v1) signature on the Tencent dialect; an EAS
signature or token on the PAI dialect. The answer is a :class:`Principal` on
``request.state.principal``; the gallery routes see only that principal's tenant.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

from fastapi import Request

from lookalike import errors
from lookalike.api.common import read_body
from lookalike.auth import Credential, KeyStore
from lookalike.auth.signatures import SignedRequest, verify_eas, verify_tencent
from lookalike.config import Settings
from lookalike.limits import RateLimiter

log = logging.getLogger("lookalike.security")


@dataclass(frozen=True)
class Principal:
    tenant: str
    credential_id: str | None = None
    """None in open mode."""


ANONYMOUS = Principal(tenant="")


class Access:
    """One per app: the key store (keys mode) and the per-credential rate limits."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keys = KeyStore(settings.data_dir) if settings.auth == "keys" else None
        self.limits = RateLimiter()

    @property
    def open(self) -> bool:
        return self.keys is None

    def warn_if_exposed(self) -> None:
        if self.open and not _is_loopback(self.settings.host):
            log.warning(
                "!!! lookalike is serving on %s with LOOKALIKE_AUTH=open: anyone who can reach this port can read, "
                "change and delete every gallery. Set LOOKALIKE_AUTH=keys and create keys with `lookalike keys "
                "create`.",
                self.settings.host,
            )
        if self.keys is not None and not self.keys.list():
            log.warning("LOOKALIKE_AUTH=keys but no credential exists yet: every API call is refused until "
                        "`lookalike keys create --tenant NAME` makes one")

    def _admit(self, credential: Credential) -> Principal:
        qps = self.settings.rate_limit_qps if credential.qps is None else credential.qps
        self.limits.acquire(credential.id, qps, f"credential {credential.id!r}")
        return Principal(credential.tenant, credential.id)

    def api_key(self, request: Request) -> Principal:
        if self.keys is None:
            return ANONYMOUS
        key = request.headers.get("x-api-key", "").strip()
        if not key:
            scheme, _, value = request.headers.get("authorization", "").partition(" ")
            key = value.strip() if scheme.lower() == "bearer" else ""
        if not key:
            raise errors.MissingAuthorization("this server needs an API key: send it as x-api-key")
        return self._admit(self.keys.check_api_key(key))

    def tencent(self, request: Request, body: bytes) -> Principal:
        if self.keys is None:
            return ANONYMOUS
        keys = self.keys
        signer: list[Credential] = []  # the credential secret_for found: read once per request

        def secret_for(secret_id: str) -> str | None:
            found = keys.get(secret_id)
            if found is None or not found.active or found.kind != "tencent":
                return None
            signer.append(found)
            return keys.derived_secret(found)

        verify_tencent(_signed(request, body), secret_for, skew=self.settings.auth_clock_skew_s)
        return self._admit(signer[-1])

    def eas(self, request: Request, body: bytes) -> Principal:
        if self.keys is None:
            return ANONYMOUS
        keys = self.keys
        active = {c.id: c for c in keys.active("eas")}
        tokens = ((cid, keys.derived_secret(c)) for cid, c in active.items())
        return self._admit(active[verify_eas(_signed(request, body), tokens, skew=self.settings.auth_clock_skew_s)])

    def close(self) -> None:
        if self.keys is not None:
            self.keys.close()


def _signed(request: Request, body: bytes) -> SignedRequest:
    return SignedRequest(
        method=request.method,
        path=request.url.path,
        query=request.url.query,
        headers={k.lower(): v for k, v in request.headers.items()},
        body=body,
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def access_of(request: Request) -> Access:
    return request.app.state.access


def principal_of(request: Request) -> Principal:
    """Who the route acts for. A route that forgot to authenticate fails closed in keys mode."""
    principal = getattr(request.state, "principal", None)
    if principal is None:
        if not access_of(request).open:
            raise errors.MissingAuthorization("this route was reached without a credential check")
        return ANONYMOUS
    return principal


async def require_api_key(request: Request) -> None:
    """A router dependency: the native, AWS and web API routes."""
    request.state.principal = access_of(request).api_key(request)


async def require_tencent_signature(request: Request) -> Principal:
    principal = access_of(request).tencent(request, await read_body(request))
    request.state.principal = principal
    return principal


async def require_eas_signature(request: Request) -> Principal:
    principal = access_of(request).eas(request, await read_body(request))
    request.state.principal = principal
    return principal


