"""Fetch a user-supplied http(s) URL without becoming an SSRF proxy.

A URL from a request is attacker-controlled, so every hop is checked before any byte is sent:

* only ``http``/``https``, no ``user:pass@``, a sane host and port (else :class:`UrlIllegal`);
* numeric hosts are parsed the way browsers do (``2130706433``, ``0x7f.1``, ``0177.0.0.1`` are
  127.0.0.1); names are resolved once, here, and refused if *any* address is not public
  (:func:`is_public_address`) unless ``allow_private_urls`` is set;
* the socket connects to that validated address itself (no second lookup, so DNS rebinding cannot
  swap in 127.0.0.1), sends the original ``Host`` and, for https, SNI plus certificate checks
  against the host name;
* redirects are followed by hand, each hop validated the same way, at most
  ``fetch_max_redirects``;
* one deadline (``fetch_timeout_s``) covers DNS, connect, TLS, every read and every redirect, so a
  server trickling a byte a second is cut off;
* at most ``max_image_bytes`` are read (:class:`ImageSizeExceed`); no decompression.
"""

from __future__ import annotations

import http.client
import io
import ipaddress
import re
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from urllib.parse import quote, urljoin, urlsplit

from lookalike import __version__
from lookalike.config import Settings
from lookalike.errors import ImageDownloadError, ImageSizeExceed, UrlIllegal

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

USER_AGENT = f"lookalike/{__version__}"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

_MAX_URL_CHARS = 8192
_READ_CHUNK = 64 * 1024
_HOST_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Characters left as they are when a path or query is made ASCII: RFC 3986 reserved + '%'.
_URL_SAFE = "!$&'()*+,/:;=?@[]~%"

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
# IANA special-purpose ranges that are not globally reachable, spelled out because the flags of
# the ``ipaddress`` module have changed between Python patch releases (e.g. 192.0.0.0/24).
_NEVER_PUBLIC = tuple(
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15",
        "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
        "::/128", "::1/128", "100::/64", "2001::/23", "2001:db8::/32", "3fff::/20", "5f00::/16",
        "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
    )
)  # fmt: skip


def is_public_address(ip: IPAddress) -> bool:
    """True when ``ip`` is a globally routable unicast address: the only kind a user URL may reach.

    IPv6 forms that carry an IPv4 address (mapped ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``,
    6to4 ``2002::/16``, Teredo) are judged by that IPv4 address too, since the packet ends up there.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return False
        if ip.ipv4_mapped is not None:
            return is_public_address(ip.ipv4_mapped)
        if ip in _NAT64:
            # Python calls all of ::/8 reserved; NAT64 of a public IPv4 is fine on IPv6-only hosts.
            return is_public_address(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip in _IPV4_COMPATIBLE:  # deprecated ::a.b.c.d, and :: and ::1
            return False
        if ip.sixtofour is not None and not is_public_address(ip.sixtofour):
            return False
        if ip.teredo is not None and not all(is_public_address(part) for part in ip.teredo):
            return False
        if ip.is_site_local:
            return False
    if any(ip.version == net.version and ip in net for net in _NEVER_PUBLIC):
        return False
    return ip.is_global and not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


@dataclass(frozen=True)
class _Hop:
    """One validated hop: where to connect and what to ask for."""

    url: str
    scheme: str
    host: str  # ASCII, lower case, without brackets
    port: int
    request_path: str


def _parse_url(url: str) -> _Hop:
    """Check the syntax of an http(s) URL; raise :class:`UrlIllegal` for anything we will not fetch."""
    if not isinstance(url, str) or not url.strip():
        raise UrlIllegal("the URL is empty")
    url = url.strip()
    if len(url) > _MAX_URL_CHARS:
        raise UrlIllegal(f"the URL is longer than {_MAX_URL_CHARS} characters")
    if _CONTROL.search(url):
        raise UrlIllegal("the URL contains control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlIllegal(f"malformed URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UrlIllegal(f"URL scheme {scheme or '(none)'!r} is not allowed; use http or https")
    if "@" in parts.netloc:
        raise UrlIllegal("URLs with a user name or password are not allowed")
    host = _ascii_host(parts.hostname or "")
    if port is None:
        port = 443 if scheme == "https" else 80
    elif port == 0:
        raise UrlIllegal("port 0 is not allowed")
    path = quote(parts.path or "/", safe=_URL_SAFE)
    if parts.query:
        path += "?" + quote(parts.query, safe=_URL_SAFE)
    return _Hop(url=url, scheme=scheme, host=host, port=port, request_path=path)


def _ascii_host(host: str) -> str:
    """Host name -> the ASCII form used for DNS, SNI and ``Host``; IP literals stay as they are."""
    if not host:
        raise UrlIllegal("the URL has no host")
    if "%" in host:
        raise UrlIllegal("IPv6 zone identifiers are not allowed")
    if ":" in host:
        try:
            return str(ipaddress.IPv6Address(host))
        except ValueError:
            raise UrlIllegal(f"malformed IPv6 address {host!r}") from None
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise UrlIllegal(f"malformed international host name {host!r}") from None
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if len(host) > 254 or not all(len(label) <= 63 and _HOST_LABEL.fullmatch(label) for label in labels):
        raise UrlIllegal(f"malformed host name {host!r}")
    return host


def literal_address(host: str) -> IPAddress | None:
    """The address a numeric host means, parsed like browsers do (WHATWG URL); None for a name.

    ``2130706433``, ``0x7f.1`` and ``0177.0.0.1`` all mean 127.0.0.1. We parse them ourselves
    rather than trust each libc's ``inet_aton`` quirks, and a host whose last label is a number but
    is not a valid address is refused outright: it cannot be a real DNS name.
    """
    if ":" in host:
        return ipaddress.IPv6Address(host)
    labels = host.split(".")
    if len(labels) > 1 and labels[-1] == "":
        labels.pop()
    if not _NUMERIC_LABEL.fullmatch(labels[-1]):
        return None
    if len(labels) > 4:
        raise UrlIllegal(f"malformed IPv4 address {host!r}")
    numbers = []
    for label in labels:
        try:
            if label.startswith("0x"):
                numbers.append(int(label[2:] or "0", 16))
            elif len(label) > 1 and label.startswith("0"):
                numbers.append(int(label[1:], 8))
            else:
                numbers.append(int(label, 10))
        except ValueError:
            raise UrlIllegal(f"malformed IPv4 address {host!r}") from None
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        raise UrlIllegal(f"malformed IPv4 address {host!r}")
    value = last
    for index, n in enumerate(head):
        value += n << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline passed")
    return left


_dns_pool: ThreadPoolExecutor | None = None
_dns_pool_lock = threading.Lock()


def _getaddrinfo(host: str, port: int, deadline: float) -> list[tuple]:
    """``socket.getaddrinfo`` bounded by the deadline: the resolver has no time-out of its own."""
    global _dns_pool
    with _dns_pool_lock:
        if _dns_pool is None:
            _dns_pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="lookalike-dns")
    future = _dns_pool.submit(socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    return future.result(timeout=_remaining(deadline))


def _resolve(target: _Hop, settings: Settings, deadline: float) -> list[tuple[int, tuple]]:
    """Validated ``(family, sockaddr)`` pairs to connect to; :class:`UrlIllegal` if any is refused.

    Every address is checked, not just the first: a name with one public and one private record
    would otherwise reach the private one whenever the first connection fails.
    """
    literal = literal_address(target.host)
    candidates: list[tuple[int, tuple, ipaddress.IPv4Address | ipaddress.IPv6Address]]
    if literal is not None:
        if literal.version == 4:
            candidates = [(socket.AF_INET, (str(literal), target.port), literal)]
        else:
            candidates = [(socket.AF_INET6, (str(literal), target.port, 0, 0), literal)]
    else:
        try:
            infos = _getaddrinfo(target.host, target.port, deadline)
        except socket.gaierror as exc:
            raise ImageDownloadError(f"cannot resolve host {target.host!r}: {exc.strerror or exc}") from None
        candidates = []
        for family, _type, _proto, _name, sockaddr in infos:
            if family not in (socket.AF_INET, socket.AF_INET6):
                continue
            try:
                ip = ipaddress.ip_address(sockaddr[0])
            except ValueError:
                raise UrlIllegal(f"host {target.host!r} resolved to an unparsable address") from None
            candidates.append((family, sockaddr, ip))
        if not candidates:
            raise ImageDownloadError(f"host {target.host!r} has no IPv4 or IPv6 address")
    if not settings.allow_private_urls:
        for _family, _sockaddr, ip in candidates:
            if not is_public_address(ip):
                raise UrlIllegal(
                    f"host {target.host!r} points at a non-public address (loopback, private, "
                    "link-local, multicast or reserved); such URLs are refused"
                )
    unique: dict[tuple, int] = {}
    for family, sockaddr, _ip in candidates:
        unique.setdefault(sockaddr, family)
    return [(family, sockaddr) for sockaddr, family in unique.items()]


@cache
def _tls_context() -> ssl.SSLContext:
    """One shared client context: building one loads the CA bundle (tens of ms)."""
    return ssl.create_default_context()


class _DeadlineReader(io.RawIOBase):
    """Socket reads that never wait past the overall deadline, however slowly bytes trickle in."""

    def __init__(self, owner: _DeadlineSocket) -> None:
        super().__init__()
        self._owner = owner

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        sock = self._owner.raw
        sock.settimeout(_remaining(self._owner.deadline))
        return sock.recv_into(buffer)

    def close(self) -> None:
        if not self.closed:
            super().close()
            self._owner.release()


class _DeadlineSocket:
    """What http.client sees as its socket: every send and read re-armed with the time left.

    Like ``socket.makefile``, an open reader keeps the socket alive after ``close()``: http.client
    closes the connection early for close-delimited bodies and keeps reading from the response.
    """

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.raw = sock
        self.deadline = deadline
        self._readers = 0
        self._closed = False

    def sendall(self, data: bytes) -> None:
        self.raw.settimeout(_remaining(self.deadline))
        self.raw.sendall(data)

    def makefile(self, mode: str = "rb", *args, **kwargs) -> io.BufferedReader:
        self._readers += 1
        return io.BufferedReader(_DeadlineReader(self))

    def release(self) -> None:
        self._readers -= 1
        if self._closed and self._readers <= 0:
            self.raw.close()

    def close(self) -> None:
        self._closed = True
        if self._readers <= 0:
            self.raw.close()

    def __getattr__(self, name: str):
        return getattr(self.raw, name)


class _PinnedConnection(http.client.HTTPConnection):
    """An HTTP(S) connection to already-validated addresses: ``connect`` never looks the host up."""

    def __init__(self, target: _Hop, addresses: list[tuple[int, tuple]], deadline: float) -> None:
        super().__init__(target.host, target.port)
        self.default_port = 443 if target.scheme == "https" else 80  # Host header omits it then
        self._target = target
        self._addresses = addresses
        self._deadline = deadline

    def connect(self) -> None:
        sock = self._open_socket()
        try:
            if self._target.scheme == "https":
                sock.settimeout(_remaining(self._deadline))
                sock = _tls_context().wrap_socket(sock, server_hostname=self._target.host.rstrip("."))
        except BaseException:
            sock.close()
            raise
        self.sock = _DeadlineSocket(sock, self._deadline)

    def _open_socket(self) -> socket.socket:
        error: OSError | None = None
        for family, sockaddr in self._addresses:
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            try:
                sock.settimeout(_remaining(self._deadline))
                sock.connect(sockaddr)
                return sock
            except TimeoutError:
                sock.close()
                raise
            except OSError as exc:
                sock.close()
                error = exc
        assert error is not None
        raise error


def _read_body(response: http.client.HTTPResponse, limit: int) -> bytes:
    """Up to ``limit`` bytes; one byte more and we stop reading and refuse."""
    declared = response.length  # None for chunked or close-delimited bodies
    if declared is not None and declared > limit:
        raise ImageSizeExceed(f"the image is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = response.read1(min(_READ_CHUNK, limit + 1 - total))
        if not chunk:
            break
        total += len(chunk)
        if total > limit:
            raise ImageSizeExceed(f"the image is larger than {limit} bytes")
        chunks.append(chunk)
    if declared is not None and total < declared:
        raise ImageDownloadError(f"the connection closed after {total} of {declared} bytes")
    return b"".join(chunks)


def _get(
    target: _Hop, addresses: list[tuple[int, tuple]], settings: Settings, deadline: float
) -> tuple[bytes | None, str | None]:
    """One GET: ``(body, None)`` on 2xx, ``(None, location)`` on a redirect, else an error."""
    connection = _PinnedConnection(target, addresses, deadline)
    response: http.client.HTTPResponse | None = None
    try:
        connection.putrequest("GET", target.request_path, skip_accept_encoding=True)
        connection.putheader("User-Agent", USER_AGENT)
        connection.putheader("Accept", "image/*, */*;q=0.5")
        connection.putheader("Accept-Encoding", "identity")
        connection.putheader("Connection", "close")
        connection.endheaders()
        response = connection.getresponse()
        if response.status in REDIRECT_STATUSES:
            location = response.getheader("Location")
            if not location:
                raise ImageDownloadError(f"{target.host} answered HTTP {response.status} without a Location")
            return None, location
        if not 200 <= response.status < 300:
            raise ImageDownloadError(f"{target.host} answered HTTP {response.status} {response.reason}".rstrip())
        return _read_body(response, settings.max_image_bytes), None
    finally:
        if response is not None:
            response.close()
        connection.close()


def fetch_http(url: str, settings: Settings) -> bytes:
    """The bytes behind an http(s) URL, with every guard in this module's docstring."""
    deadline = time.monotonic() + settings.fetch_timeout_s
    target = _parse_url(url)
    redirects = 0
    try:
        while True:
            addresses = _resolve(target, settings, deadline)
            body, location = _get(target, addresses, settings, deadline)
            if body is not None:
                return body
            if redirects >= settings.fetch_max_redirects:
                raise ImageDownloadError(f"too many redirects (more than {settings.fetch_max_redirects})")
            redirects += 1
            target = _parse_url(urljoin(target.url, location))
    except TimeoutError:
        raise ImageDownloadError(
            f"time-out: fetching from {target.host} took longer than {settings.fetch_timeout_s:g} s"
        ) from None
    except ssl.SSLCertVerificationError as exc:
        raise ImageDownloadError(
            f"TLS certificate of {target.host} could not be verified: {exc.verify_message or exc.reason}"
        ) from None
    except ssl.SSLError as exc:
        raise ImageDownloadError(f"TLS error talking to {target.host}: {exc.reason or exc}") from None
    except http.client.HTTPException as exc:
        detail = f"{type(exc).__name__} {exc}".rstrip()
        raise ImageDownloadError(f"bad HTTP response from {target.host}: {detail}") from None
    except OSError as exc:
        raise ImageDownloadError(f"cannot fetch from {target.host}: {exc.strerror or exc}") from None
