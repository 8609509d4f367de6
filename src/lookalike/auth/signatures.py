"""Request signatures as the vendors' own clients compute them, checked from raw request parts.

* Tencent Cloud API 3.0: TC3-HMAC-SHA256 (the SDK's default) and the older HmacSHA1 /
  HmacSHA256 form signature ("v1"), which the SDK sends when ``ClientProfile.signMethod`` asks.
* Alibaba PAI EAS: ``Authorization: EAS base64(hmac-sha1(token, verb\\nmd5\\ncontent-type\\ndate\\nresource))``
  from ``eas-prediction``, or the bare token (the client's ``custom_url`` mode, and curl).

Pure functions over method, path, query, headers and body: no framework, so they are tested
against the SDKs' own signers byte for byte. Secrets come from a lookup callable; every
failure is an :class:`~lookalike.errors.AuthFailure` subclass with Tencent's codes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qsl

from lookalike import errors

TC3 = "TC3-HMAC-SHA256"
_TC3_AUTH = re.compile(
    r"^TC3-HMAC-SHA256\s+Credential=(?P<secret_id>[^/,\s]+)/(?P<date>\d{4}-\d{2}-\d{2})/(?P<service>[a-z0-9]+)/tc3_request,\s*"
    r"SignedHeaders=(?P<headers>[a-z0-9;_-]+),\s*Signature=(?P<signature>[0-9a-f]{64})$"
)
_V1_METHODS = {"HmacSHA1": hashlib.sha1, "HmacSHA256": hashlib.sha256}


@dataclass(frozen=True)
class SignedRequest:
    """The parts of an HTTP request a signature covers. Header names in lower case."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes


def _check_time(seconds: float, now: float, skew: int) -> None:
    if abs(now - seconds) > skew:
        raise errors.SignatureExpire(
            f"the request was signed {now - seconds:+.0f} s from the server's clock; at most {skew} s are allowed"
        )


def _hmac_sha256(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def tc3_signature(secret_key: str, date: str, service: str, string_to_sign: str) -> str:
    key = _hmac_sha256(("TC3" + secret_key).encode(), date)
    key = _hmac_sha256(key, service)
    key = _hmac_sha256(key, "tc3_request")
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def verify_tencent(
    req: SignedRequest, secret_for: Callable[[str], str | None], *, now: float | None = None, skew: int = 300
) -> str:
    """The SecretId that signed ``req`` (TC3 or v1), or an AuthFailure saying what is wrong."""
    now = time.time() if now is None else now
    authorization = req.headers.get("authorization", "").strip()
    if authorization.startswith(TC3):
        return _verify_tc3(req, authorization, secret_for, now, skew)
    ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
    text = (
        req.query
        if req.method == "GET"
        else req.body.decode("utf-8", "replace")
        if ctype == "application/x-www-form-urlencoded"
        else ""
    )
    params = dict(parse_qsl(text, keep_blank_values=True))
    if "Signature" in params:
        return _verify_v1(req, params, secret_for, now, skew)
    if authorization:
        raise errors.InvalidAuthorization(f"the Authorization header is not a {TC3} signature")
    raise errors.MissingAuthorization(
        "the request is not signed: sign it with a SecretId/SecretKey from `lookalike keys create --kind tencent`"
    )


def _verify_tc3(req: SignedRequest, authorization: str, secret_for, now: float, skew: int) -> str:
    match = _TC3_AUTH.match(authorization)
    if match is None:
        raise errors.InvalidAuthorization("the Authorization header is not a well-formed TC3-HMAC-SHA256 signature")
    stamp = req.headers.get("x-tc-timestamp", "")
    if not stamp.isdigit():
        raise errors.InvalidAuthorization("X-TC-Timestamp is missing or not a number")
    _check_time(int(stamp), now, skew)
    date = datetime.fromtimestamp(int(stamp), UTC).strftime("%Y-%m-%d")
    if match["date"] != date:
        raise errors.SignatureFailure(
            f"the credential date {match['date']} is not the UTC date of X-TC-Timestamp ({date})"
        )
    signed = match["headers"].split(";")
    if "host" not in signed or "content-type" not in signed:
        raise errors.InvalidAuthorization("SignedHeaders must include content-type and host")
    if req.headers.get("x-tc-content-sha256", "").upper() == "UNSIGNED-PAYLOAD":
        raise errors.SignatureFailure("unsigned payloads are refused: the body must be covered by the signature")
    secret = secret_for(match["secret_id"])
    if secret is None:
        raise errors.SecretIdNotFound(f"SecretId {match['secret_id']!r} is unknown or revoked")
    canonical_headers = "".join(f"{name}:{req.headers.get(name, '').strip().lower()}\n" for name in signed)
    query, payload = (req.query, b"") if req.method == "GET" else ("", req.body)
    canonical = "\n".join(
        [req.method, req.path or "/", query, canonical_headers, match["headers"], hashlib.sha256(payload).hexdigest()]
    )
    scope = f"{match['date']}/{match['service']}/tc3_request"
    to_sign = f"{TC3}\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    if not hmac.compare_digest(tc3_signature(secret, match["date"], match["service"], to_sign), match["signature"]):
        raise errors.SignatureFailure("the signature does not match: a wrong SecretKey, or the request was altered")
    return match["secret_id"]


def _verify_v1(req: SignedRequest, params: dict[str, str], secret_for, now: float, skew: int) -> str:
    method = params.get("SignatureMethod") or "HmacSHA1"
    digest = _V1_METHODS.get(method)
    if digest is None:
        raise errors.InvalidAuthorization(f"SignatureMethod {method!r}: use HmacSHA1 or HmacSHA256")
    secret_id, stamp = params.get("SecretId", ""), params.get("Timestamp", "")
    if not secret_id or not stamp.isdigit():
        raise errors.InvalidAuthorization("a v1 signature needs SecretId and Timestamp parameters")
    _check_time(int(stamp), now, skew)
    secret = secret_for(secret_id)
    if secret is None:
        raise errors.SecretIdNotFound(f"SecretId {secret_id!r} is unknown or revoked")
    fields = {k.replace("_", "."): val for k, val in params.items() if k != "Signature"}
    text = "&".join(f"{k}={fields[k]}" for k in sorted(fields))
    host = req.headers.get("host", "")
    expected = base64.b64encode(
        hmac.new(secret.encode(), f"{req.method}{host}{req.path or '/'}?{text}".encode(), digest).digest()
    )
    if not hmac.compare_digest(expected.decode(), params["Signature"]):
        raise errors.SignatureFailure("the signature does not match: a wrong SecretKey, or the request was altered")
    return secret_id


def eas_signature(token: str, verb: str, content_md5: str, content_type: str, date: str, resource: str) -> str:
    text = f"{verb}\n{content_md5}\n{content_type}\n{date}\n{resource}".strip()
    return base64.b64encode(hmac.new(token.encode(), text.encode(), hashlib.sha1).digest()).decode()


def _eas_date(text: str, now: float, skew: int) -> None:
    try:
        stamp = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        raise errors.InvalidAuthorization(f"the Date header {text!r} is not an HTTP date") from None
    naive = stamp.replace(tzinfo=None)
    # eas-prediction writes local time and labels it GMT; a client in the server's zone is honest too.
    utc_now = datetime.fromtimestamp(now, UTC).replace(tzinfo=None)
    local_now = datetime.fromtimestamp(now)
    offset = min(abs((naive - utc_now).total_seconds()), abs((naive - local_now).total_seconds()))
    if offset > skew:
        raise errors.SignatureExpire(
            f"the Date header is {offset:.0f} s from the server's clock; at most {skew} s are allowed"
        )


def verify_eas(
    req: SignedRequest, tokens: Iterable[tuple[str, str]], *, now: float | None = None, skew: int = 300
) -> str:
    """The id of the token that signed ``req``; ``tokens`` are (id, token) pairs to try."""
    now = time.time() if now is None else now
    authorization = req.headers.get("authorization", "").strip()
    if not authorization:
        raise errors.MissingAuthorization("the request has no Authorization header: give the client its EAS token")
    candidates = list(tokens)
    if not authorization.startswith("EAS "):
        for cid, token in candidates:  # the bare token, as curl and custom_url clients send it
            if hmac.compare_digest(token.encode(), authorization.encode()):
                return cid
        raise errors.SecretIdNotFound("the token is unknown or revoked")
    date, ctype = req.headers.get("date", ""), req.headers.get("content-type", "")
    _eas_date(date, now, skew)
    body_md5 = hashlib.md5(req.body).hexdigest()
    if not hmac.compare_digest(req.headers.get("content-md5", ""), body_md5):
        raise errors.SignatureFailure("Content-MD5 does not match the body: the request was altered")
    given = authorization.removeprefix("EAS ").strip()
    for cid, token in candidates:
        if hmac.compare_digest(eas_signature(token, req.method, body_md5, ctype, date, req.path), given):
            return cid
    raise errors.SignatureFailure("the signature matches no active token: a wrong token, or the request was altered")
