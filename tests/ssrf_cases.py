"""The SSRF case table, and a lab that sends every case through every URL-taking entry point.

One copy, shared by ``tests/test_ssrf.py`` (asserts every case) and ``bench/ssrf.py`` (counts them
for docs/benchmarks.md; it imports this file by path, so it imports nothing else from tests/).

:class:`SsrfLab` is real processes and real sockets on loopback:

* **the server**: ``lookalike serve`` (the CLI command, so the real uvicorn app) in a child process
  on 127.0.0.1, called over HTTP by httpx. The child is this file run as a script
  (:func:`serve_with_fakes`), which puts the fakes below in place and then calls the CLI;
* **a connection spy** inside the server process: a ``sys.addaudithook`` hook (nothing patched)
  that logs every ``socket.connect`` the server attempts, to any address: 10.0.0.1 and
  169.254.169.254 included, where no listener can be;
* **a canary**: one TCP port listened on at 127.0.0.1, 127.255.255.254, ::1 and this host's own
  addresses (0.0.0.0 and [::] connect to those too). Every hostile URL that can name a local address
  names that port. It counts the connections it accepts and answers each with a real JPEG, so a
  leak would even "succeed";
* **a public stand-in**: an HTTP server on 127.0.0.2 that plays "the internet"
  (``images.example.test`` resolves to it). It serves an image, and redirects (301, 302, 303,
  307, 308) wherever a case tells it to: "a public URL that redirects to a private one" is
  tested for real, the first hop fetched, the second refused.

Only the outside world is faked, in the server process, as tests/test_fetch.py does it:
``socket.getaddrinfo`` answers :data:`FAKE_DNS` names (every other name resolves for real), and
``fetch.is_public_address`` is wrapped so that one address, the stand-in's 127.0.0.2, counts as
public; every other address still goes through the real check. (The server runs in its own
process because a client and a server sharing one Python process cost ~45 ms a request here.)
"""

from __future__ import annotations

import base64
import errno
import io
import ipaddress
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import numpy as np
from PIL import Image

STAND_IN = "127.0.0.2"
STAND_IN_NAME = "images.example.test"
GROUP = "ssrf"
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
REFUSAL_CODES = ("UrlIllegal", "ImageDownloadError")
"""The documented answers to a URL that will not be fetched (README, "Images and errors")."""
TENCENT_CODES = {
    "InvalidParameterValue.UrlIllegal": "UrlIllegal",
    "FailedOperation.ImageDownloadError": "ImageDownloadError",
}
"""The Tencent dialect's spelling of those codes -> the domain code."""
SERVER_ERROR_CODES = ("InternalError", "FailedOperation.InnerError")


def _picture() -> bytes:
    """A small photo-like JPEG (smooth colour fields, not a solid colour): what the canary and
    the stand-in serve, and the second image of the pair endpoints."""
    rng = np.random.default_rng(5)
    grid = rng.uniform(0, 255, (6, 8, 3)).astype(np.uint8)
    image = Image.fromarray(grid, "RGB").resize((160, 120), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


JPEG = _picture()
JPEG_B64 = base64.b64encode(JPEG).decode()


# --------------------------------------------------------------------------- the outside world

FAKE_DNS: dict[str, list] = {
    STAND_IN_NAME: [STAND_IN],
    # names that resolve to non-public addresses
    "loopback.example.test": ["127.0.0.1"],
    "loopback6.example.test": ["::1"],
    "mapped.example.test": ["::ffff:127.0.0.1"],
    "zero.example.test": ["0.0.0.0"],
    "ten.example.test": ["10.0.0.1"],
    "lan172.example.test": ["172.16.5.4"],
    "lan192.example.test": ["192.168.1.1"],
    "cgnat.example.test": ["100.64.0.1"],
    "imds.example.test": ["169.254.169.254"],
    "ula.example.test": ["fd00::1"],
    "linklocal6.example.test": ["fe80::1"],
    "multicast.example.test": ["224.0.0.1"],
    "mixed.example.test": [STAND_IN, "127.0.0.1"],  # one public record, one loopback
    "mixed-reverse.example.test": ["127.0.0.1", STAND_IN],
    "mixed6.example.test": [STAND_IN, "::1"],
    "rebind.example.test": [[STAND_IN], ["127.0.0.1"]],  # public, loopback, public, ...: rebinding
    "127.0.0.1.nip.io": ["127.0.0.1"],  # wildcard DNS services answer the address in the name
    "xn--lpback-wxaa.example.test": ["127.0.0.1"],  # lööpback.example.test
    # what cloud resolvers answer for their metadata names
    "metadata.google.internal": ["169.254.169.254"],
    "metadata": ["169.254.169.254"],
    "instance-data.ec2.internal": ["169.254.169.254"],
    "metadata.tencentyun.com": ["169.254.0.23"],
    # systemd-resolved (and browsers) resolve localhost. and *.localhost to loopback (RFC 6761)
    "localhost.": ["127.0.0.1", "::1"],
    "app.localhost": ["127.0.0.1", "::1"],
}
"""name -> addresses (or a list of answers, one per lookup). Other names resolve for real."""


# --------------------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Case:
    """One hostile URL (or, with ``expect="ok"``, one control that must be fetched).

    ``url`` is a template: ``{canary}`` is the canary's port, ``{public}`` the stand-in's,
    ``{host_v4}``/``{host_v6}`` this host's own addresses, ``{jpeg_b64}`` a base64 JPEG. With
    ``redirect``, the URL sent is the stand-in's, answering that status with ``Location: url``
    (after ``hops - 1`` redirects to itself).
    """

    category: str
    name: str
    url: str
    redirect: int | None = None
    hops: int = 1
    via: str = STAND_IN_NAME
    """The name the first (redirecting) hop is fetched by; it must resolve to the stand-in."""
    expect: str = "UrlIllegal"
    means: str | None = None
    """For numeric spellings: the address the host means, checked against ``inet_aton``."""

    @property
    def id(self) -> str:
        return f"{self.category}: {self.name}"

    @property
    def hostile(self) -> bool:
        return self.expect != "ok"


def _cases(category: str, rows: list[tuple], **common) -> list[Case]:
    out = []
    for row in rows:
        name, url, *rest = row
        extra = rest[0] if rest else {}
        out.append(Case(category, name, url, **{**common, **extra}))
    return out


C = "{canary}"
LOOPBACK = _cases("loopback", [
    ("127.0.0.1", f"http://127.0.0.1:{C}/a.jpg"),
    ("127.1", f"http://127.1:{C}/a.jpg", {"means": "127.0.0.1"}),
    ("127.255.255.254", f"http://127.255.255.254:{C}/a.jpg"),
    ("0.0.0.0", f"http://0.0.0.0:{C}/a.jpg"),
    ("0", f"http://0:{C}/a.jpg", {"means": "0.0.0.0"}),
    ("localhost", f"http://localhost:{C}/a.jpg"),
    ("LOCALHOST", f"http://LOCALHOST:{C}/a.jpg"),
    ("localhost.", f"http://localhost.:{C}/a.jpg"),
    ("app.localhost", f"http://app.localhost:{C}/a.jpg"),
    ("127.0.0.1. (trailing dot)", f"http://127.0.0.1.:{C}/a.jpg", {"means": "127.0.0.1"}),
    ("https 127.0.0.1", f"https://127.0.0.1:{C}/a.jpg"),
    ("127.0.0.1 default port", "http://127.0.0.1/a.jpg"),
])  # fmt: skip

IPV6 = _cases("ipv6 loopback and mapped", [
    ("[::1]", f"http://[::1]:{C}/a.jpg"),
    ("[0:0:0:0:0:0:0:1]", f"http://[0:0:0:0:0:0:0:1]:{C}/a.jpg"),
    ("[::ffff:127.0.0.1]", f"http://[::ffff:127.0.0.1]:{C}/a.jpg"),
    ("[::ffff:7f00:1]", f"http://[::ffff:7f00:1]:{C}/a.jpg"),
    ("[0:0:0:0:0:ffff:127.0.0.1]", f"http://[0:0:0:0:0:ffff:127.0.0.1]:{C}/a.jpg"),
    ("[::ffff:0.0.0.0]", f"http://[::ffff:0.0.0.0]:{C}/a.jpg"),
    ("[::]", f"http://[::]:{C}/a.jpg"),
    ("[::127.0.0.1] (IPv4-compatible)", f"http://[::127.0.0.1]:{C}/a.jpg"),
    ("[::ffff:0:7f00:1] (IPv4-translated)", f"http://[::ffff:0:7f00:1]:{C}/a.jpg"),
    ("[64:ff9b::7f00:1] (NAT64)", f"http://[64:ff9b::7f00:1]:{C}/a.jpg"),
    ("[64:ff9b:1::7f00:1] (local NAT64)", f"http://[64:ff9b:1::7f00:1]:{C}/a.jpg"),
    ("[2002:7f00:1::1] (6to4)", f"http://[2002:7f00:1::1]:{C}/a.jpg"),
    ("[::1%25lo] (zone)", f"http://[::1%25lo]:{C}/a.jpg"),
    ("https [::1]", f"https://[::1]:{C}/a.jpg"),
])  # fmt: skip

PRIVATE = _cases("private", [
    ("10.0.0.1", f"http://10.0.0.1:{C}/a.jpg"),
    ("10.255.255.254", f"http://10.255.255.254:{C}/a.jpg"),
    ("172.16.0.1", f"http://172.16.0.1:{C}/a.jpg"),
    ("172.31.255.254", f"http://172.31.255.254:{C}/a.jpg"),
    ("192.168.0.1", f"http://192.168.0.1:{C}/a.jpg"),
    ("192.168.255.254", f"http://192.168.255.254:{C}/a.jpg"),
    ("100.64.0.1 (CGNAT)", f"http://100.64.0.1:{C}/a.jpg"),
    ("100.127.255.254 (CGNAT)", f"http://100.127.255.254:{C}/a.jpg"),
    ("[::ffff:10.0.0.1]", f"http://[::ffff:10.0.0.1]:{C}/a.jpg"),
    ("[::ffff:192.168.0.1]", f"http://[::ffff:192.168.0.1]:{C}/a.jpg"),
    ("[fc00::1] (ULA)", f"http://[fc00::1]:{C}/a.jpg"),
    ("[fd12:3456:789a::1] (ULA)", f"http://[fd12:3456:789a::1]:{C}/a.jpg"),
    ("[fe80::1] (link-local)", f"http://[fe80::1]:{C}/a.jpg"),
    ("[febf:ffff::1] (link-local)", f"http://[febf:ffff::1]:{C}/a.jpg"),
    ("[fe80::1%25eth0] (zone)", f"http://[fe80::1%25eth0]:{C}/a.jpg"),
    ("[fec0::1] (site-local)", f"http://[fec0::1]:{C}/a.jpg"),
    ("this host's IPv4", f"http://{{host_v4}}:{C}/a.jpg"),
    ("this host's IPv6", f"http://[{{host_v6}}]:{C}/a.jpg"),
])  # fmt: skip

RESERVED = _cases("reserved and multicast", [
    ("192.0.0.1", f"http://192.0.0.1:{C}/a.jpg"),
    ("192.0.2.1 (TEST-NET-1)", f"http://192.0.2.1:{C}/a.jpg"),
    ("198.18.0.1 (benchmarking)", f"http://198.18.0.1:{C}/a.jpg"),
    ("224.0.0.1", f"http://224.0.0.1:{C}/a.jpg"),
    ("239.255.255.250", f"http://239.255.255.250:{C}/a.jpg"),
    ("240.0.0.1", f"http://240.0.0.1:{C}/a.jpg"),
    ("255.255.255.255", f"http://255.255.255.255:{C}/a.jpg"),
    ("[ff02::1]", f"http://[ff02::1]:{C}/a.jpg"),
    ("[2001:db8::1]", f"http://[2001:db8::1]:{C}/a.jpg"),
    ("[100::1] (discard)", f"http://[100::1]:{C}/a.jpg"),
])  # fmt: skip

METADATA = _cases("link-local and metadata", [
    ("169.254.169.254 /latest/meta-data/", "http://169.254.169.254/latest/meta-data/"),
    ("169.254.169.254 IAM credentials", "http://169.254.169.254/latest/meta-data/iam/security-credentials/"),
    ("169.254.169.254 with a port", f"http://169.254.169.254:{C}/latest/meta-data/"),
    ("https 169.254.169.254", "https://169.254.169.254/latest/meta-data/"),
    ("[fd00:ec2::254] (AWS IPv6)", "http://[fd00:ec2::254]/latest/meta-data/"),
    ("metadata.google.internal", "http://metadata.google.internal/computeMetadata/v1/"),
    ("metadata (GCP short name)", "http://metadata/computeMetadata/v1/"),
    ("instance-data.ec2.internal", "http://instance-data.ec2.internal/latest/meta-data/"),
    ("169.254.170.2 (ECS credentials)", "http://169.254.170.2/v2/credentials"),
    ("100.100.100.200 (Alibaba)", "http://100.100.100.200/latest/meta-data/"),
    ("metadata.tencentyun.com (Tencent)", "http://metadata.tencentyun.com/latest/meta-data/"),
    ("169.254.0.23 (Tencent)", "http://169.254.0.23/latest/meta-data/"),
    ("[::ffff:169.254.169.254]", "http://[::ffff:169.254.169.254]/latest/meta-data/"),
    ("[::ffff:a9fe:a9fe]", "http://[::ffff:a9fe:a9fe]/latest/meta-data/"),
    ("decimal 2852039166", "http://2852039166/latest/meta-data/", {"means": "169.254.169.254"}),
    ("hex 0xa9fea9fe", "http://0xa9fea9fe/latest/meta-data/", {"means": "169.254.169.254"}),
    ("octal 0251.0376.0251.0376", "http://0251.0376.0251.0376/latest/meta-data/", {"means": "169.254.169.254"}),
    ("short 169.254.43518", "http://169.254.43518/latest/meta-data/", {"means": "169.254.169.254"}),
    ("short 169.16689662", "http://169.16689662/latest/meta-data/", {"means": "169.254.169.254"}),
])  # fmt: skip

SPELLINGS = _cases("ip spellings", [
    ("decimal 2130706433", f"http://2130706433:{C}/a.jpg", {"means": "127.0.0.1"}),
    ("decimal with trailing dot", f"http://2130706433.:{C}/a.jpg", {"means": "127.0.0.1"}),
    ("octal 0177.0.0.1", f"http://0177.0.0.1:{C}/a.jpg", {"means": "127.0.0.1"}),
    ("octal 017700000001", f"http://017700000001:{C}/a.jpg", {"means": "127.0.0.1"}),
    ("octal 0000000177.0.0.1", f"http://0000000177.0.0.1:{C}/a.jpg", {"means": "127.0.0.1"}),
    ("octal zeros 127.000.000.001", f"http://127.000.000.001:{C}/a.jpg", {"means": "127.0.0.1"}),
    ("hex 0x7f000001", f"http://0x7f000001:{C}/a.jpg", {"means": "127.0.0.1"}),
    ("hex 0x7f.0.0.1", f"http://0x7f.0.0.1:{C}/a.jpg", {"means": "127.0.0.1"}),
    ("hex 0X7F.0X0.0X0.0X1", f"http://0X7F.0X0.0X0.0X1:{C}/a.jpg", {"means": "127.0.0.1"}),
    ("hex 0x0000007f.1", f"http://0x0000007f.1:{C}/a.jpg", {"means": "127.0.0.1"}),
    ("mixed 127.0x0.0.1", f"http://127.0x0.0.1:{C}/a.jpg", {"means": "127.0.0.1"}),
    ("mixed 0177.0x0.1", f"http://0177.0x0.1:{C}/a.jpg", {"means": "127.0.0.1"}),
    ("mixed 0x7f.0.01", f"http://0x7f.0.01:{C}/a.jpg", {"means": "127.0.0.1"}),
    ("short 127.0.1", f"http://127.0.1:{C}/a.jpg", {"means": "127.0.0.1"}),
    ("short 0x7f.1", f"http://0x7f.1:{C}/a.jpg", {"means": "127.0.0.1"}),
    ("short 0177.1", f"http://0177.1:{C}/a.jpg", {"means": "127.0.0.1"}),
    ("short 0x0", f"http://0x0:{C}/a.jpg", {"means": "0.0.0.0"}),
    ("full-width digits", f"http://１２７.０.０.１:{C}/a.jpg", {"means": "127.0.0.1"}),
    ("ideographic full stops", f"http://127。0。0。1:{C}/a.jpg", {"means": "127.0.0.1"}),
    ("circled digits", f"http://①②⑦.0.0.1:{C}/a.jpg", {"means": "127.0.0.1"}),
    ("circled letters (localhost)", f"http://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ:{C}/a.jpg"),
    ("percent-encoded host", f"http://%31%32%37.0.0.1:{C}/a.jpg"),
])  # fmt: skip

DNS = _cases("dns to private", [
    ("name -> 127.0.0.1", f"http://loopback.example.test:{C}/a.jpg"),
    ("name -> ::1", f"http://loopback6.example.test:{C}/a.jpg"),
    ("name -> ::ffff:127.0.0.1", f"http://mapped.example.test:{C}/a.jpg"),
    ("name -> 0.0.0.0", f"http://zero.example.test:{C}/a.jpg"),
    ("name -> 10.0.0.1", f"http://ten.example.test:{C}/a.jpg"),
    ("name -> 172.16.5.4", f"http://lan172.example.test:{C}/a.jpg"),
    ("name -> 192.168.1.1", f"http://lan192.example.test:{C}/a.jpg"),
    ("name -> 100.64.0.1", f"http://cgnat.example.test:{C}/a.jpg"),
    ("name -> 169.254.169.254", "http://imds.example.test/latest/meta-data/"),
    ("name -> fd00::1", f"http://ula.example.test:{C}/a.jpg"),
    ("name -> fe80::1", f"http://linklocal6.example.test:{C}/a.jpg"),
    ("name -> 224.0.0.1", f"http://multicast.example.test:{C}/a.jpg"),
    ("public + loopback records", f"http://mixed.example.test:{C}/a.jpg"),
    ("loopback + public records", f"http://mixed-reverse.example.test:{C}/a.jpg"),
    ("public + ::1 records", f"http://mixed6.example.test:{C}/a.jpg"),
    ("127.0.0.1.nip.io", f"http://127.0.0.1.nip.io:{C}/a.jpg"),
    ("name with trailing dot", f"http://loopback.example.test.:{C}/a.jpg"),
    ("name in upper case", f"http://LOOPBACK.EXAMPLE.TEST:{C}/a.jpg"),
    ("international name", f"http://lööpback.example.test:{C}/a.jpg"),
    # public on the first lookup, loopback on the next: the stand-in redirects to the same name
    ("rebinding between hops", f"http://rebind.example.test:{C}/a.jpg",
     {"redirect": 302, "via": "rebind.example.test"}),
])  # fmt: skip

_REDIRECT_TARGETS = [
    ("127.0.0.1", f"http://127.0.0.1:{C}/a.jpg"),
    ("127.1", f"http://127.1:{C}/a.jpg"),
    ("2130706433", f"http://2130706433:{C}/a.jpg"),
    ("0x7f.1", f"http://0x7f.1:{C}/a.jpg"),
    ("0177.0.0.1", f"http://0177.0.0.1:{C}/a.jpg"),
    ("0.0.0.0", f"http://0.0.0.0:{C}/a.jpg"),
    ("localhost", f"http://localhost:{C}/a.jpg"),
    ("[::1]", f"http://[::1]:{C}/a.jpg"),
    ("[::ffff:127.0.0.1]", f"http://[::ffff:127.0.0.1]:{C}/a.jpg"),
    ("10.0.0.1", f"http://10.0.0.1:{C}/a.jpg"),
    ("192.168.0.1", f"http://192.168.0.1:{C}/a.jpg"),
    ("169.254.169.254", "http://169.254.169.254/latest/meta-data/"),
    ("[fd00:ec2::254]", "http://[fd00:ec2::254]/latest/meta-data/"),
    ("metadata.google.internal", "http://metadata.google.internal/computeMetadata/v1/"),
    ("name -> 127.0.0.1", f"http://loopback.example.test:{C}/a.jpg"),
    ("this host's IPv4", f"http://{{host_v4}}:{C}/a.jpg"),
    ("https 127.0.0.1", f"https://127.0.0.1:{C}/a.jpg"),
    ("//127.0.0.1 (scheme-relative)", f"//127.0.0.1:{C}/a.jpg"),
    ("userinfo @127.0.0.1", f"http://{STAND_IN_NAME}@127.0.0.1:{C}/a.jpg"),
    ("file:///etc/passwd", "file:///etc/passwd"),
    ("gopher://127.0.0.1", f"gopher://127.0.0.1:{C}/_GET%20/"),
]  # fmt: skip
REDIRECTS = [
    Case("redirect", f"{status} to {name}", url, redirect=status)
    for status in REDIRECT_STATUSES
    for name, url in _REDIRECT_TARGETS
] + [
    Case("redirect", "302, 302, then 127.0.0.1", f"http://127.0.0.1:{C}/a.jpg", redirect=302, hops=3),
    Case("redirect", "308, 308, then [::1]", f"http://[::1]:{C}/a.jpg", redirect=308, hops=2),
]

USERINFO = _cases("userinfo tricks", [
    ("public@127.0.0.1", f"http://public@127.0.0.1:{C}/a.jpg"),
    ("stand-in name@127.0.0.1", f"http://{STAND_IN_NAME}@127.0.0.1:{C}/a.jpg"),
    ("stand-in name:port@127.0.0.1", f"http://{STAND_IN_NAME}:{{public}}@127.0.0.1:{C}/a.jpg"),
    ("user:pass@127.0.0.1", f"http://user:pass@127.0.0.1:{C}/a.jpg"),
    ("empty userinfo @127.0.0.1", f"http://@127.0.0.1:{C}/a.jpg"),
    ("127.0.0.1#@public", f"http://127.0.0.1:{C}#@{STAND_IN_NAME}/a.jpg"),
    ("127.0.0.1?@public", f"http://127.0.0.1:{C}?@{STAND_IN_NAME}/a.jpg"),
    ("127.0.0.1\\@public", f"http://127.0.0.1:{C}\\@{STAND_IN_NAME}/a.jpg"),
    ("127.0.0.1%2F@public", f"http://127.0.0.1:{C}%2F@{STAND_IN_NAME}/a.jpg"),
    ("[::1]#@public", f"http://[::1]:{C}#@{STAND_IN_NAME}/a.jpg"),
])  # fmt: skip

SCHEMES = _cases("non-http schemes", [
    ("file:///etc/passwd", "file:///etc/passwd"),
    ("file://localhost/etc/passwd", "file://localhost/etc/passwd"),
    ("file:/etc/passwd", "file:/etc/passwd"),
    ("FILE:///etc/passwd", "FILE:///etc/passwd"),
    ("ftp://127.0.0.1", f"ftp://127.0.0.1:{C}/a.jpg"),
    ("ftp to the public stand-in", f"ftp://{STAND_IN_NAME}:{{public}}/image.jpg"),
    ("gopher://", f"gopher://127.0.0.1:{C}/_GET%20/"),
    ("dict://", f"dict://127.0.0.1:{C}/info"),
    ("ldap://", f"ldap://127.0.0.1:{C}/dc=example"),
    ("ldaps://", f"ldaps://127.0.0.1:{C}/dc=example"),
    ("tftp://", f"tftp://127.0.0.1:{C}/a.jpg"),
    ("sftp://", f"sftp://127.0.0.1:{C}/a.jpg"),
    ("ws://", f"ws://127.0.0.1:{C}/"),
    ("jar:", f"jar:http://127.0.0.1:{C}/a.jar!/a.jpg"),
    ("netdoc:", "netdoc:///etc/passwd"),
    ("data: (a valid JPEG)", "data:image/jpeg;base64,{jpeg_b64}"),
    ("javascript:", "javascript:alert(1)"),
    ("unix:", "unix:///var/run/docker.sock"),
    ("http+unix:", "http+unix://%2Fvar%2Frun%2Fdocker.sock/info"),
    ("HTTP:// to 127.0.0.1", f"HTTP://127.0.0.1:{C}/a.jpg"),
    ("HtTpS:// to [::1]", f"HtTpS://[::1]:{C}/a.jpg"),
    ("scheme-relative //127.0.0.1", f"//127.0.0.1:{C}/a.jpg"),
    ("no scheme 127.0.0.1:port", f"127.0.0.1:{C}/a.jpg"),
    ("http:/127.0.0.1 (one slash)", f"http:/127.0.0.1:{C}/a.jpg"),
    ("http:\\\\127.0.0.1", f"http:\\\\127.0.0.1:{C}\\a.jpg"),
])  # fmt: skip

CONTROLS = _cases("control", [
    ("the public stand-in", f"http://{STAND_IN_NAME}:{{public}}/image.jpg"),
    ("HTTP:// upper case to the stand-in", "HTTP://IMAGES.EXAMPLE.TEST:{public}/image.jpg"),
    ("302 from the stand-in to itself", f"http://{STAND_IN_NAME}:{{public}}/image.jpg", {"redirect": 302}),
], expect="ok")  # fmt: skip
"""Allowed on purpose: each must be fetched through every entry point, so the lab can see a fetch."""

HOSTILE: list[Case] = LOOPBACK + IPV6 + PRIVATE + RESERVED + METADATA + SPELLINGS + DNS + REDIRECTS + USERINFO + SCHEMES
CASES: list[Case] = HOSTILE + CONTROLS
CATEGORIES: list[str] = list(dict.fromkeys(case.category for case in CASES))


def case_by_id(case_id: str) -> Case:
    return next(case for case in CASES if case.id == case_id)


# --------------------------------------------------------------------------- entry points


@dataclass(frozen=True)
class EntryPoint:
    """One place a request can hand the server a URL. ``send(lab, url, tag)`` makes the request;
    ``tag`` is unique per request (EntityId, PicName). ``stores``: a success adds a picture."""

    name: str
    send: Callable[[SsrfLab, str, str], httpx.Response]
    dialect: str  # aws | native | batch | tencent: how its answers and errors are spelled
    stores: bool = False


def _tencent(lab: SsrfLab, action: str, params: dict, *, get: bool = False) -> httpx.Response:
    headers = {"X-TC-Action": action, "X-TC-Version": "2019-05-29"}
    if get:
        return lab.client.get("/", params=params, headers=headers)
    return lab.client.post("/", json=params, headers=headers)


def _post(path: str, body: Callable[[str, str], object]) -> Callable[[SsrfLab, str, str], httpx.Response]:
    return lambda lab, url, tag: lab.client.post(path, json=body(url, tag))


def _picture_ref(url: str, tag: str) -> dict:
    return {"entity_id": tag, "pic_name": f"{tag}.jpg", "image": {"url": url}}


def _tencent_image(url: str, tag: str) -> dict:
    return {"GroupId": GROUP, "EntityId": tag, "PicName": f"{tag}.jpg", "ImageUrl": url}


ENTRY_POINTS: tuple[EntryPoint, ...] = (
    EntryPoint("AWS url", _post("/image_similarity", lambda url, tag: {"url": url}), "aws"),
    EntryPoint("AWS url_1", _post("/image_similarity", lambda url, tag: {"url_1": url, "img_2": JPEG_B64}), "aws"),
    EntryPoint("AWS url_2", _post("/image_similarity", lambda url, tag: {"img_1": JPEG_B64, "url_2": url}), "aws"),
    EntryPoint("/v1/embed", _post("/v1/embed", lambda url, tag: {"images": [{"url": url}]}), "native"),
    EntryPoint("/v1/compare a",
               _post("/v1/compare", lambda url, tag: {"a": {"url": url}, "b": {"base64": JPEG_B64}}), "native"),
    EntryPoint("/v1/compare b",
               _post("/v1/compare", lambda url, tag: {"a": {"base64": JPEG_B64}, "b": {"url": url}}), "native"),
    EntryPoint("/v1/groups add", _post(f"/v1/groups/{GROUP}/images", _picture_ref), "native", stores=True),
    EntryPoint("/v1/groups add batch",
               _post(f"/v1/groups/{GROUP}/images", lambda url, tag: [_picture_ref(url, tag)]), "batch", stores=True),
    EntryPoint("/v1/groups search",
               _post(f"/v1/groups/{GROUP}/search", lambda url, tag: {"image": {"url": url}, "limit": 5}), "native"),
    EntryPoint("Tencent CreateImage",
               lambda lab, url, tag: _tencent(lab, "CreateImage", _tencent_image(url, tag)), "tencent", stores=True),
    EntryPoint("Tencent SearchImage",
               lambda lab, url, tag: _tencent(lab, "SearchImage", {"GroupId": GROUP, "ImageUrl": url}), "tencent"),
    EntryPoint(
        "Tencent SearchImage (GET)",
        lambda lab, url, tag: _tencent(lab, "SearchImage", {"GroupId": GROUP, "ImageUrl": url}, get=True),
        "tencent",
    ),
)  # fmt: skip
"""Every place a request can hand the server a URL to fetch (PAI EAS takes base64 only)."""


def _json(response: httpx.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, (dict, list)) else {}


def read_answer(entry: EntryPoint, response: httpx.Response) -> tuple[bool, str | None, str]:
    """(success, wire error code or None, message) of one answer, in the entry's dialect."""
    body = _json(response)
    if not isinstance(body, dict):
        return False, None, response.text[:200]
    if entry.dialect == "tencent":
        inner = body.get("Response") or {}
        error = inner.get("Error")
        if response.status_code == 200 and inner and not error:
            return True, None, ""
        return False, (error or {}).get("Code"), (error or {}).get("Message", response.text[:200])
    if entry.dialect == "aws":
        if response.status_code == 200 and ("result" in body or "similarity" in body):
            return True, None, ""
        return False, body.get("Code"), body.get("Message", response.text[:200])
    if entry.dialect == "batch" and "results" in body:
        first = body["results"][0] if body["results"] else {}
        if response.status_code == 201 and first.get("ok"):
            return True, None, ""
        error = first.get("error") or {}
        return False, error.get("code"), error.get("message", "")
    if response.status_code in (200, 201) and "error" not in body:
        return True, None, ""
    error = body.get("error") or {}
    return False, error.get("code"), error.get("message", response.text[:200])


# --------------------------------------------------------------------------- outcomes


@dataclass
class Outcome:
    case: Case
    entry: str
    url: str
    status: int = 0
    ok: bool = False
    wire_code: str | None = None
    message: str = ""
    canary: int = 0
    """Connections the canary accepted while the request ran."""
    connects: list = field(default_factory=list)
    """Addresses this process tried to connect() to while the request ran, other than the app
    itself and the public stand-in."""
    stand_in: int = 0
    """Requests the public stand-in served while the request ran."""
    stored: int | None = None
    """For entries that store: how much the group's PicCount changed (None: not a storing entry)."""
    listed: int | None = None
    """For Tencent CreateImage: pictures DescribeImages lists under the request's EntityId."""

    @property
    def code(self) -> str | None:
        """The domain code (the Tencent dialect's spelling mapped back)."""
        return TENCENT_CODES.get(self.wire_code or "", self.wire_code)

    @property
    def server_error(self) -> bool:
        return self.status >= 500 or self.wire_code in SERVER_ERROR_CODES

    @property
    def refused(self) -> bool:
        """Answered with a documented URL refusal, and no 5xx."""
        return not self.ok and not self.server_error and self.code in REFUSAL_CODES

    @property
    def reached(self) -> bool:
        """Anything outside got a connection it should not have: the canary or any address."""
        return bool(self.canary or self.connects)

    def problems(self) -> list[str]:
        """What is wrong with this outcome; empty when the case behaved."""
        out = []
        wire = f"HTTP {self.status} {self.wire_code or ''}".rstrip()
        if not self.case.hostile:
            if not self.ok:
                out.append(f"control not fetched: {wire}: {self.message}")
            if not self.stand_in:
                out.append("control never reached the stand-in")
            if self.stored not in (None, 1):
                out.append(f"control changed PicCount by {self.stored}, expected +1")
            return out
        if self.server_error:
            out.append(f"server error: {wire}: {self.message}")
        if self.ok:
            out.append(f"NOT REFUSED: {wire}")
        elif self.code not in REFUSAL_CODES:
            out.append(f"refused with an undocumented code: {wire}: {self.message}")
        elif self.code != self.case.expect:
            out.append(f"refused with {self.code}, expected {self.case.expect}: {self.message}")
        if self.canary:
            out.append(f"the canary accepted {self.canary} connection(s)")
        if self.connects:
            out.append(f"connect() attempted to {self.connects}")
        if self.stored:
            out.append(f"PicCount changed by {self.stored}")
        if self.listed:
            out.append(f"DescribeImages lists {self.listed} picture(s) of the refused request")
        if self.case.redirect and not self.stand_in:
            out.append("the stand-in never served the redirect: the case was not exercised")
        return out


# --------------------------------------------------------------------------- lab parts


class Canary:
    """One TCP port on several local addresses; counts accepted connections, answers a JPEG."""

    def __init__(self, addresses: list[str]) -> None:
        self.hits: list[tuple[str, tuple]] = []
        self.requests: list[bytes] = []
        self._socks: list[socket.socket] = []
        for _attempt in range(50):
            try:
                self._bind_all(addresses)
                break
            except OSError as exc:
                self._close_all()
                if exc.errno != errno.EADDRINUSE:
                    raise
        else:
            raise RuntimeError("no port free on every canary address")
        self.port = self._socks[0].getsockname()[1]
        self.addresses = [s.getsockname()[0] for s in self._socks]
        self._selector = selectors.DefaultSelector()
        for sock in self._socks:
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ssrf-canary", daemon=True)
        self._thread.start()

    def _bind_all(self, addresses: list[str]) -> None:
        port = 0
        for address in addresses:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind((address, port))
            except OSError as exc:
                sock.close()
                if exc.errno == errno.EADDRINUSE or not self._socks:
                    raise
                continue  # this host cannot listen there (no IPv6, say): the spy still sees connects
            sock.listen(64)
            self._socks.append(sock)
            port = sock.getsockname()[1]

    def _loop(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(0.1):
                try:
                    conn, peer = key.fileobj.accept()  # type: ignore[union-attr]  # only listening sockets are registered
                except OSError:
                    continue
                self.hits.append((key.fileobj.getsockname()[0], peer))  # type: ignore[union-attr]  # a socket, as above
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.setblocking(True)
            conn.settimeout(1)
            data = b""
            try:
                while b"\r\n\r\n" not in data and len(data) < 65536:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                self.requests.append(data)
                head = b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                conn.sendall(head % len(JPEG) + JPEG)
            except OSError:
                pass

    def _close_all(self) -> None:
        for sock in self._socks:
            sock.close()
        self._socks = []

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._selector.close()
        self._close_all()


class _StandInServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__((STAND_IN, 0), _StandInHandler)
        self.paths: list[str] = []


class _StandInHandler(BaseHTTPRequestHandler):
    """``/image.jpg``; ``/redirect?status=S&to=URL[&hops=N]``: N - 1 redirects to itself, then ``to``."""

    protocol_version = "HTTP/1.1"
    server: _StandInServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        path, _, query = self.path.partition("?")
        params = {k: v[0] for k, v in parse_qs(query).items()}
        if path == "/image.jpg":
            self._answer(200, JPEG, {"Content-Type": "image/jpeg"})
        elif path == "/redirect":
            hops = int(params.get("hops", "1"))
            status = int(params.get("status", "302"))
            if hops > 1:
                nested = f"/redirect?status={status}&hops={hops - 1}&to={quote(params['to'], safe='')}"
                self._answer(status, b"", {"Location": nested})
            else:
                self._answer(status, b"", {"Location": params["to"]})
        else:
            self._answer(404, b"not here")

    def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            self.close_connection = True


def _own_address(family: int, probe: str) -> str | None:
    """This host's source address towards ``probe`` (a UDP connect sends nothing), if any."""
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((probe, 53))
            address = s.getsockname()[0]
    except OSError:
        return None
    ip = ipaddress.ip_address(address)
    return None if ip.is_loopback or ip.is_unspecified or ip.is_link_local else address


def own_addresses() -> dict[str, str | None]:
    return {
        "host_v4": _own_address(socket.AF_INET, "192.0.2.123"),
        "host_v6": _own_address(socket.AF_INET6, "2001:db8::123"),
    }


# --------------------------------------------------------------------------- the server's side


def _fake_resolver(real: Callable) -> Callable:
    """``socket.getaddrinfo`` answering :data:`FAKE_DNS` names; others go to ``real``."""
    turns: dict[str, int] = {}

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        key = host.lower() if isinstance(host, str) else host
        if isinstance(key, str) and key not in FAKE_DNS and key.endswith("."):
            key = key[:-1]  # a trailing dot names the same host
        if key not in FAKE_DNS:
            return real(host, port, family, type, proto, flags)
        answer = FAKE_DNS[key]
        if answer and isinstance(answer[0], list):  # a rebinding name: its answers take turns
            turns[key] = turns.get(key, 0) + 1
            answer = answer[(turns[key] - 1) % len(answer)]
        infos = []
        for ip in answer:
            if ipaddress.ip_address(ip).version == 4:
                infos.append((socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (ip, port)))
            else:
                infos.append((socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (ip, port, 0, 0)))
        return infos

    return getaddrinfo


def serve_with_fakes(port: int, data_dir: Path, spy_file: Path) -> int:
    """The server process: ``lookalike serve`` (the CLI's own command, so the same uvicorn app),
    after three things are put in place:

    * an audit hook (``sys.addaudithook``, nothing patched) that appends the address of every
      ``socket.connect`` this process attempts to ``spy_file``;
    * the fake resolver (:data:`FAKE_DNS`);
    * ``fetch.is_public_address`` wrapped so that the stand-in's 127.0.0.2 alone counts as public.
    """
    spy = open(spy_file, "a", buffering=1)

    def hook(event: str, args: tuple) -> None:
        if event == "socket.connect":
            sock, address = args
            if getattr(sock, "family", None) in (socket.AF_INET, socket.AF_INET6):
                spy.write(f"{address[0]} {address[1]}\n")

    sys.addaudithook(hook)
    socket.getaddrinfo = _fake_resolver(socket.getaddrinfo)  # type: ignore[assignment]  # this child process only
    from lookalike.images import fetch

    real_is_public = fetch.is_public_address
    stand_in = ipaddress.ip_address(STAND_IN)
    fetch.is_public_address = lambda ip: ip == stand_in or real_is_public(ip)  # type: ignore[assignment]  # child only
    from lookalike.cli import main

    return main(["serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)])


# --------------------------------------------------------------------------- the lab

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SsrfLab:
    """The server, the canary, the stand-in, the spy's log; see the module doc.

    A context manager; :meth:`run` sends one case through one entry point. ``allow_private``
    starts the server with ``LOOKALIKE_ALLOW_PRIVATE_URLS=true``: the guard off, to show that the
    lab sees a leak.
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        model: str = "sscd-small",
        fetch_timeout_s: float = 3.0,
        allow_private: bool = False,
    ) -> None:
        self._tmp = None if data_dir else tempfile.TemporaryDirectory(prefix="lookalike-ssrf-")
        self.data_dir = Path(data_dir or self._tmp.name)  # type: ignore[union-attr]  # _tmp is set without data_dir
        self.model = model
        self.fetch_timeout_s = fetch_timeout_s
        self.allow_private = allow_private
        self.own = own_addresses()
        self.pics = 0
        self._serial = 0
        self._spy_offset = 0
        self._undo: list[Callable[[], None]] = []

    def __enter__(self) -> SsrfLab:
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        while self._undo:
            try:
                self._undo.pop()()
            except Exception:
                pass
        if self._tmp is not None:
            self._tmp.cleanup()

    def _start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        listen = ["127.0.0.1", "127.255.255.254", "::1"] + [a for a in self.own.values() if a]
        self.canary = Canary(listen)
        self._undo.append(self.canary.close)
        self.stand_in = _StandInServer()
        thread = threading.Thread(target=self.stand_in.serve_forever, name="ssrf-stand-in", daemon=True)
        thread.start()
        self._undo.append(lambda: (self.stand_in.shutdown(), self.stand_in.server_close()))
        self._start_server()
        group_type = 101 if self.model == "sscd-small" else 4
        answer = _tencent(
            self, "CreateGroup", {"GroupId": GROUP, "GroupName": GROUP, "GroupType": group_type, "MaxQps": 100000}
        )
        if "Error" in answer.json()["Response"]:
            raise RuntimeError(f"cannot create the gallery group: {answer.text}")

    def _start_server(self, timeout: float = 180) -> None:
        port = _free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        self.spy_file = self.data_dir / "connects.log"
        self.spy_file.write_text("")
        self.log_file = self.data_dir / "server.log"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])),
            "LOOKALIKE_MODEL": self.model,
            "LOOKALIKE_THREADS": "1",
            "LOOKALIKE_FETCH_TIMEOUT_S": str(self.fetch_timeout_s),
            "LOOKALIKE_FETCH_MAX_REDIRECTS": "3",
            "LOOKALIKE_ALLOW_PRIVATE_URLS": "true" if self.allow_private else "false",
            "LOOKALIKE_AUTH": "open",
        }
        with open(self.log_file, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    str(port),
                    str(self.data_dir / "data"),
                    str(self.spy_file),
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def stop() -> None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(15)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)

        self._undo.append(stop)
        self.client = httpx.Client(base_url=self.base_url, timeout=60)
        self._undo.append(self.client.close)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"the server exited with {self.proc.returncode}:\n{self.log_file.read_text()[-3000:]}"
                )
            try:
                if self.client.get("/readyz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server was not ready after {timeout} s:\n{self.log_file.read_text()[-3000:]}")
            time.sleep(0.1)

    # ---- cases

    def render(self, case: Case) -> str | None:
        """The URL to send for ``case``; None when it needs an address this host does not have."""
        values = {"canary": self.canary.port, "public": self.stand_in.server_port, "jpeg_b64": JPEG_B64, **self.own}
        if any(values.get(name) is None for name in ("host_v4", "host_v6") if "{" + name + "}" in case.url):
            return None
        url = case.url.format(**values)
        if case.redirect:
            url = (
                f"http://{case.via}:{self.stand_in.server_port}/redirect?status={case.redirect}"
                f"&hops={case.hops}&to={quote(url, safe='')}"
            )
        return url

    def pic_count(self) -> int:
        answer = _tencent(self, "DescribeGroups", {"GroupId": GROUP}).json()["Response"]
        return int(answer["Groups"][0]["PicCount"])

    def _connects(self) -> list[tuple[str, int]]:
        """The server's connect() calls since the last look."""
        with open(self.spy_file) as f:
            f.seek(self._spy_offset)
            text = f.read()
        complete = text[: text.rfind("\n") + 1]
        self._spy_offset += len(complete.encode())
        out = []
        for line in complete.splitlines():
            host, _, port = line.rpartition(" ")
            out.append((host, int(port)))
        return out

    def run(self, case: Case, entry: EntryPoint) -> Outcome | None:
        """Sends ``case`` through ``entry``; None when this host cannot express the case."""
        url = self.render(case)
        if url is None:
            return None
        self._serial += 1
        tag = f"ssrf-{self._serial}"
        self._connects()
        canary, stand_in = len(self.canary.hits), len(self.stand_in.paths)
        response = entry.send(self, url, tag)
        stray = [a for a in self._connects() if a != (STAND_IN, self.stand_in.server_port)]
        if stray and len(self.canary.hits) == canary:
            time.sleep(0.2)  # a connection was attempted: give the canary's thread time to accept it
        ok, wire_code, message = read_answer(entry, response)
        outcome = Outcome(
            case=case,
            entry=entry.name,
            url=url,
            status=response.status_code,
            ok=ok,
            wire_code=wire_code,
            message=message,
            canary=len(self.canary.hits) - canary,
            connects=stray,
            stand_in=len(self.stand_in.paths) - stand_in,
        )
        if entry.stores:
            count = self.pic_count()
            outcome.stored, self.pics = count - self.pics, count
            if entry.dialect == "tencent":
                listed = _tencent(self, "DescribeImages", {"GroupId": GROUP, "EntityId": tag}).json()["Response"]
                outcome.listed = len(listed.get("ImageInfos") or [])
        return outcome

    def run_case(self, case: Case, entries: tuple[EntryPoint, ...] = ENTRY_POINTS) -> list[Outcome]:
        return [o for o in (self.run(case, entry) for entry in entries) if o is not None]


def spelled_address(url: str) -> str:
    """The IPv4 address a numeric host spells, by the C library's ``inet_aton`` (an oracle
    independent of lookalike's parser), after IDNA mapping (full-width digits, ideographic dots)."""
    host = urlsplit(url).hostname or ""
    ascii_host = host.encode("idna").decode("ascii").rstrip(".")
    return socket.inet_ntoa(socket.inet_aton(ascii_host))


if __name__ == "__main__":  # the server process: python tests/ssrf_cases.py PORT DATA_DIR SPY_FILE
    sys.exit(serve_with_fakes(int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])))
