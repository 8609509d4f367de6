"""http(s) fetching against real local servers: SSRF guards, redirects, limits, deadline, TLS.

Everything runs over real sockets on loopback. The only things replaced are at the true boundaries:

* ``socket.getaddrinfo`` (the ``fake_dns`` fixture) so that made-up names resolve without a DNS
  server, and
* ``fetch.is_public_address`` (the ``pretend_public`` fixture), wrapped so that exactly one
  address, 127.0.0.2, counts as public. A second server listens there and plays "the internet":
  ``images.example.test`` resolves to it, so a first hop is allowed for real, while 127.0.0.1 and
  every other address still go through the real check. That is how "a public URL that redirects
  to 127.0.0.1 is refused" is tested honestly: the first hop is fetched, the second is refused.
"""

from __future__ import annotations

import datetime
import io
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote

import pytest
from PIL import Image

from lookalike.config import Settings
from lookalike.errors import ImageDownloadError, ImageSizeExceed, UrlIllegal
from lookalike.images import fetch
from lookalike.images.fetch import USER_AGENT, fetch_http, is_public_address
from lookalike.images.sources import fetch_url

BIG = 256 * 1024
SMALL_LIMIT = 10_000
PUBLIC_STAND_IN = ipaddress.ip_address("127.0.0.2")


def make_jpeg() -> bytes:
    image = Image.new("RGB", (64, 48))
    image.putdata([(x * 4, y * 5, (x + y) % 256) for y in range(48) for x in range(64)])
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


JPEG = make_jpeg()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], name: str) -> None:
        super().__init__(address, _Handler)
        self.name = name
        self.paths: list[str] = []
        self.sni: list[str | None] = []


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        path, _, query = self.path.partition("?")
        params = {key: values[0] for key, values in parse_qs(query).items()}
        try:
            self._route(path, params)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True  # the client gave up, as it should

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str | None, status: int = 302) -> None:
        self.send_response(status)
        if location is not None:
            self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _chunked(self, pieces: Iterator[bytes]) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for piece in pieces:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\n\r\n")

    def _route(self, path: str, params: dict[str, str]) -> None:
        if path == "/image.jpg":
            self._send(200, JPEG, {"Content-Type": "image/jpeg"})
        elif path == "/whoami":
            self._send(200, self.server.name.encode())
        elif path == "/headers":
            self._send(200, json.dumps(dict(self.headers.items())).encode())
        elif path == "/chunked.jpg":
            self._chunked(JPEG[i : i + 1000] for i in range(0, len(JPEG), 1000))
        elif path == "/big":
            self._send(200, b"x" * BIG)
        elif path == "/big-chunked":
            self._chunked(b"x" * 4096 for _ in range(BIG // 4096))
        elif path == "/endless":
            # No Content-Length, close-delimited, and no end: only a reader that stops can finish.
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            for _ in range(100_000):
                self.wfile.write(b"x" * 4096)
        elif path == "/slow":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(100):  # each byte arrives well within any per-read time-out
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.05)
        elif path == "/slow-headers":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Pad: ")
            for _ in range(100):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.05)
        elif path.startswith("/sleepy-chain/"):
            hops = int(path.rsplit("/", 1)[1])
            time.sleep(0.3)
            if hops:
                self._redirect(f"/sleepy-chain/{hops - 1}")
            else:
                self._send(200, JPEG)
        elif path.startswith("/chain/"):
            hops = int(path.rsplit("/", 1)[1])  # this many redirects before the image
            if hops:
                self._redirect(f"/chain/{hops - 1}")  # relative Location
            else:
                self._send(200, JPEG)
        elif path == "/redirect":
            self._redirect(params["to"], int(params.get("status", "302")))
        elif path == "/no-location":
            self._redirect(None)
        elif path.startswith("/status/"):
            self._send(int(path.rsplit("/", 1)[1]), b"nope")
        elif path == "/truncated":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"x" * 10)
            self.close_connection = True
        else:
            self._send(404, b"unknown test route")


def _start(server: _Server) -> Iterator[_Server]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def loopback() -> Iterator[_Server]:
    """The private target: an HTTP server on 127.0.0.1."""
    yield from _start(_Server(("127.0.0.1", 0), "loopback"))


@pytest.fixture(scope="module")
def public() -> Iterator[_Server]:
    """The stand-in for a public server: 127.0.0.2, made public by ``pretend_public``."""
    try:
        server = _Server((str(PUBLIC_STAND_IN), 0), "public")
    except OSError as exc:  # e.g. macOS routes only 127.0.0.1 without an alias
        pytest.skip(f"cannot listen on {PUBLIC_STAND_IN}: {exc}")
    yield from _start(server)


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> dict:
    """``name -> [ip, ...]`` (or a list of such lists, one per lookup; or None for NXDOMAIN).

    Patches ``socket.getaddrinfo`` itself: the fetcher's only way to resolve a name. Names not in
    the table resolve for real. ``fake_dns["calls"]`` records each lookup of a table name.
    """
    table: dict = {"calls": []}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        if host not in table:
            return real(host, port, family, type, proto, flags)
        table["calls"].append(host)
        answer = table[host]
        if answer is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        if answer and isinstance(answer[0], list):  # one answer per lookup: DNS rebinding
            answer = answer[min(table["calls"].count(host), len(answer)) - 1]
        infos = []
        for ip in answer:
            if ipaddress.ip_address(ip).version == 4:
                infos.append((socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (ip, port)))
            else:
                infos.append((socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (ip, port, 0, 0)))
        return infos

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return table


@pytest.fixture
def pretend_public(monkeypatch: pytest.MonkeyPatch, fake_dns: dict) -> dict:
    """127.0.0.2 counts as public, and ``images.example.test`` resolves to it; nothing else changes."""
    real = fetch.is_public_address
    monkeypatch.setattr(fetch, "is_public_address", lambda ip: ip == PUBLIC_STAND_IN or real(ip))
    fake_dns["images.example.test"] = [str(PUBLIC_STAND_IN)]
    return fake_dns


def allow_private(**overrides: object) -> Settings:
    return Settings(allow_private_urls=True, **overrides)


def code_of(url: str, settings: Settings | None = None) -> str:
    with pytest.raises((UrlIllegal, ImageDownloadError, ImageSizeExceed)) as caught:
        fetch_http(url, settings or Settings())
    return caught.value.code


# -- the address check itself -------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "1.1.1.1",
        "93.184.216.34",
        "2606:4700:4700::1111",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
    ],
)
def test_public_addresses(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "127.255.255.254", "10.1.2.3", "172.16.0.1", "192.168.0.1", "169.254.169.254",
        "100.64.0.1", "100.127.255.254", "0.0.0.0", "0.1.2.3", "224.0.0.1", "239.255.255.250",
        "240.0.0.1", "255.255.255.255", "192.0.0.8", "198.18.0.1", "192.0.2.1",
        "::", "::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::127.0.0.1",
        "::8.8.8.8", "fe80::1", "fc00::1", "fd12:3456::1", "fec0::1", "ff02::1", "ff0e::1",
        "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b::a00:1", "2002:7f00:1::", "2002:a9fe:a9fe::1",
        "2001:0:4136:e378:8000:63bf:80ff:fffe", "2001:db8::1", "100::1",
    ],
)  # fmt: skip
def test_non_public_addresses(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))


# -- refused URLs: nothing is resolved or connected ---------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd", "gopher://127.0.0.1:70/_stats", "ftp://example.com/a.jpg",
        "dict://127.0.0.1:11211/stat", "javascript:alert(1)", "//example.com/a.jpg", "example.com/a.jpg",
        "", "   ", "http://user:secret@example.com/a.jpg", "http://user@example.com/a.jpg",
        "http://example.com:99999/", "http://example.com:0/", "http://example.com:http/", "http:///a.jpg",
        "http://:80/", "http://exa mple.com/", "http://example.com/a\r\nX-Injected: 1",
        "http://[evil.example]/", "http://[fe80::1%25eth0]/", "http://a..b/", "http://1.2.3.4.5/",
        "http://256.0.0.1/", "http://0x100000000/", "http://08.0.0.1/",
    ],
)  # fmt: skip
def test_malformed_or_foreign_urls_are_illegal(url: str) -> None:
    assert code_of(url) == "UrlIllegal"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/", "https://127.0.0.1/", "http://127.1/", "http://2130706433/",
        "http://0x7f.1/", "http://0x7f000001/", "http://0177.0.0.1/", "http://017700000001/",
        "http://0x7f.0.0.1./", "http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]/",
        "http://[::127.0.0.1]/", "http://[0:0:0:0:0:ffff:127.0.0.1]/", "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/", "http://2852039166/", "http://0.0.0.0/", "http://0/", "http://[::]/",
        "http://10.0.0.1/", "http://172.16.0.1/", "http://192.168.1.1/", "http://100.64.0.1/",
        "http://224.0.0.1/", "http://255.255.255.255/", "http://[fd00::1]/", "http://[fe80::1]/",
        "http://[fec0::1]/", "http://[ff02::1]/", "http://[64:ff9b::7f00:1]/", "http://[2002:7f00:1::]/",
        "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", "http://localhost/",
    ],
)  # fmt: skip
def test_private_addresses_are_refused_by_default(url: str) -> None:
    assert code_of(url) == "UrlIllegal"


def test_loopback_server_refused_by_default_and_never_contacted(loopback: _Server) -> None:
    before = len(loopback.paths)
    url = f"http://127.0.0.1:{loopback.server_port}/image.jpg"
    assert code_of(url) == "UrlIllegal"
    for spelling in ("2130706433", "0x7f.1", "0177.0.0.1", "127.1", "[::ffff:127.0.0.1]"):
        assert code_of(f"http://{spelling}:{loopback.server_port}/image.jpg") == "UrlIllegal"
    assert len(loopback.paths) == before


def test_allow_private_urls_fetches_from_loopback(loopback: _Server) -> None:
    assert fetch_http(f"http://127.0.0.1:{loopback.server_port}/image.jpg", allow_private()) == JPEG
    # the numeric spellings mean the same address, and reach the same server
    assert fetch_http(f"http://0x7f.1:{loopback.server_port}/whoami", allow_private()) == b"loopback"
    assert fetch_http(f"http://2130706433:{loopback.server_port}/whoami", allow_private()) == b"loopback"


def test_name_resolving_to_loopback_is_refused(loopback: _Server, fake_dns: dict) -> None:
    fake_dns["public.example"] = ["127.0.0.1"]
    before = len(loopback.paths)
    assert code_of(f"http://public.example:{loopback.server_port}/image.jpg") == "UrlIllegal"
    assert len(loopback.paths) == before
    # with the opt-in, the same name is fetched, from the address it resolved to
    assert fetch_http(f"http://public.example:{loopback.server_port}/whoami", allow_private()) == b"loopback"


def test_any_private_record_refuses_the_name(fake_dns: dict) -> None:
    fake_dns["mixed.example"] = ["93.184.216.34", "10.0.0.1"]
    assert code_of("http://mixed.example/a.jpg") == "UrlIllegal"
    fake_dns["mixed6.example"] = ["2606:4700:4700::1111", "::1"]
    assert code_of("http://mixed6.example/a.jpg") == "UrlIllegal"


def test_unresolvable_name_is_a_download_error(fake_dns: dict) -> None:
    fake_dns["nxdomain.example"] = None
    with pytest.raises(ImageDownloadError, match="cannot resolve"):
        fetch_http("http://nxdomain.example/a.jpg", Settings())


# -- a public first hop, then a redirect ---------------------------------------------------------


def test_public_stand_in_is_fetched_with_host_and_headers(public: _Server, pretend_public: dict) -> None:
    base = f"http://images.example.test:{public.server_port}"
    assert fetch_http(f"{base}/image.jpg", Settings()) == JPEG
    headers = json.loads(fetch_http(f"{base}/headers", Settings()))
    assert headers["Host"] == f"images.example.test:{public.server_port}"
    assert headers["User-Agent"] == USER_AGENT
    assert USER_AGENT.startswith("lookalike/")
    assert headers["Accept-Encoding"] == "identity"


def test_public_url_redirecting_to_loopback_is_refused(
    public: _Server, loopback: _Server, pretend_public: dict
) -> None:
    target = f"http://127.0.0.1:{loopback.server_port}/image.jpg"
    url = f"http://images.example.test:{public.server_port}/redirect?to={quote(target, safe='')}"
    seen_public, seen_loopback = len(public.paths), len(loopback.paths)
    with pytest.raises(UrlIllegal):
        fetch_http(url, Settings())
    assert len(public.paths) == seen_public + 1  # the first hop was really fetched ...
    assert len(loopback.paths) == seen_loopback  # ... and the second never happened
    # the same redirect is followed when private targets are allowed
    assert fetch_http(url, allow_private()) == JPEG


@pytest.mark.parametrize(
    "location",
    [
        "http://localhost:{lport}/image.jpg", "http://0x7f.1:{lport}/image.jpg", "http://2130706433:{lport}/",
        "http://[::1]:{lport}/", "http://[::ffff:127.0.0.1]:{lport}/", "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0:{lport}/", "http://rebound.example.test:{lport}/", "file:///etc/passwd",
        "gopher://127.0.0.1:{lport}/_x", "ftp://images.example.test/a.jpg",
        "http://user:pw@images.example.test:{pport}/image.jpg",
    ],
)  # fmt: skip
def test_every_redirect_hop_is_validated(
    location: str, public: _Server, loopback: _Server, pretend_public: dict
) -> None:
    pretend_public["rebound.example.test"] = ["127.0.0.1"]
    target = location.format(lport=loopback.server_port, pport=public.server_port)
    url = f"http://images.example.test:{public.server_port}/redirect?to={quote(target, safe='')}"
    before = len(loopback.paths)
    with pytest.raises(UrlIllegal):
        fetch_http(url, Settings())
    assert len(loopback.paths) == before


def test_redirect_to_another_public_url_is_followed(public: _Server, pretend_public: dict) -> None:
    base = f"http://images.example.test:{public.server_port}"
    absolute = f"{base}/redirect?to={quote(base + '/image.jpg', safe='')}"
    assert fetch_http(absolute, Settings()) == JPEG
    assert fetch_http(f"{base}/chain/2", Settings()) == JPEG  # relative Locations


def test_dns_is_resolved_once_per_hop_so_rebinding_cannot_redirect_the_connection(
    public: _Server, loopback: _Server, pretend_public: dict
) -> None:
    # First answer public, every later one loopback: a second lookup at connect time would be caught.
    pretend_public["rebind.example.test"] = [[str(PUBLIC_STAND_IN)], ["127.0.0.1"]]
    port = public.server_port
    assert fetch_http(f"http://rebind.example.test:{port}/whoami", Settings()) == b"public"
    assert pretend_public["calls"].count("rebind.example.test") == 1
    # the next fetch gets the rebound answer and is refused
    assert code_of(f"http://rebind.example.test:{port}/whoami") == "UrlIllegal"


# -- redirects ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_statuses_are_followed(status: int, loopback: _Server) -> None:
    to = quote(f"http://127.0.0.1:{loopback.server_port}/image.jpg", safe="")
    url = f"http://127.0.0.1:{loopback.server_port}/redirect?status={status}&to={to}"
    assert fetch_http(url, allow_private()) == JPEG


def test_redirect_chain_within_the_limit(loopback: _Server) -> None:
    url = f"http://127.0.0.1:{loopback.server_port}/chain/3"
    assert fetch_http(url, allow_private(fetch_max_redirects=3)) == JPEG


@pytest.mark.parametrize(("hops", "limit"), [(4, 3), (1, 0), (50, 3)])
def test_too_many_redirects(hops: int, limit: int, loopback: _Server) -> None:
    url = f"http://127.0.0.1:{loopback.server_port}/chain/{hops}"
    with pytest.raises(ImageDownloadError, match="too many redirects"):
        fetch_http(url, allow_private(fetch_max_redirects=limit))


def test_redirect_without_location(loopback: _Server) -> None:
    with pytest.raises(ImageDownloadError, match="without a Location"):
        fetch_http(f"http://127.0.0.1:{loopback.server_port}/no-location", allow_private())


# -- sizes -------------------------------------------------------------------------------------


def test_chunked_body_is_read(loopback: _Server) -> None:
    assert fetch_http(f"http://127.0.0.1:{loopback.server_port}/chunked.jpg", allow_private()) == JPEG


@pytest.mark.parametrize("route", ["/big", "/big-chunked", "/endless"])
def test_oversize_body_is_refused(route: str, loopback: _Server) -> None:
    url = f"http://127.0.0.1:{loopback.server_port}{route}"
    started = time.monotonic()
    with pytest.raises(ImageSizeExceed):
        fetch_http(url, allow_private(max_image_bytes=SMALL_LIMIT, fetch_timeout_s=5))
    assert time.monotonic() - started < 2  # stopped reading, did not drain the endless body


def test_size_limit_is_inclusive(loopback: _Server) -> None:
    url = f"http://127.0.0.1:{loopback.server_port}/image.jpg"
    assert fetch_http(url, allow_private(max_image_bytes=len(JPEG))) == JPEG
    with pytest.raises(ImageSizeExceed):
        fetch_http(url, allow_private(max_image_bytes=len(JPEG) - 1))
    chunked = f"http://127.0.0.1:{loopback.server_port}/chunked.jpg"
    assert fetch_http(chunked, allow_private(max_image_bytes=len(JPEG))) == JPEG
    with pytest.raises(ImageSizeExceed):
        fetch_http(chunked, allow_private(max_image_bytes=len(JPEG) - 1))


def test_truncated_body_is_an_error(loopback: _Server) -> None:
    with pytest.raises(ImageDownloadError, match="closed after 10 of 1000"):
        fetch_http(f"http://127.0.0.1:{loopback.server_port}/truncated", allow_private())


# -- time --------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["/slow", "/slow-headers", "/sleepy-chain/10"])
def test_overall_deadline_cuts_off_trickling_servers(route: str, loopback: _Server) -> None:
    """Each byte (or hop) comes quickly; only a deadline over the whole fetch stops them."""
    started = time.monotonic()
    with pytest.raises(ImageDownloadError, match="time-out"):
        fetch_http(
            f"http://127.0.0.1:{loopback.server_port}{route}", allow_private(fetch_timeout_s=1, fetch_max_redirects=20)
        )
    assert 0.9 < time.monotonic() - started < 2


def test_deadline_covers_a_hanging_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def slow_getaddrinfo(host, *args, **kwargs):
        if host == "slow-dns.example":
            time.sleep(2)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow_getaddrinfo)
    started = time.monotonic()
    with pytest.raises(ImageDownloadError, match="time-out"):
        fetch_http("http://slow-dns.example/a.jpg", Settings(fetch_timeout_s=0.5))
    assert time.monotonic() - started < 1.5


# -- statuses and connection errors ------------------------------------------------------------


@pytest.mark.parametrize("status", [404, 403, 500, 304])
def test_non_2xx_status_is_a_download_error(status: int, loopback: _Server) -> None:
    with pytest.raises(ImageDownloadError, match=f"HTTP {status}"):
        fetch_http(f"http://127.0.0.1:{loopback.server_port}/status/{status}", allow_private())


def test_connection_refused_is_a_download_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens once closed
    with pytest.raises(ImageDownloadError, match="cannot fetch"):
        fetch_http(f"http://127.0.0.1:{port}/image.jpg", allow_private())


def test_sources_dispatches_http(loopback: _Server) -> None:
    assert fetch_url(f"  http://127.0.0.1:{loopback.server_port}/image.jpg ", allow_private()) == JPEG


# -- https: SNI and certificate checks against the name, connection to the validated address ---


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A throw-away CA and a certificate for ``images.example.test`` signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory = tmp_path_factory.mktemp("tls")
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lookalike test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "images.example.test")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("images.example.test")]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"ca": directory / "ca.pem", "cert": directory / "cert.pem", "key": directory / "key.pem"}
    paths["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


@pytest.fixture(scope="module")
def tls_server(tls_files: dict[str, Path]) -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), "tls")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files["cert"], tls_files["key"])
    context.sni_callback = lambda _sock, name, _context: server.sni.append(name)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    yield from _start(server)


@pytest.fixture
def trust_test_ca(monkeypatch: pytest.MonkeyPatch, tls_files: dict[str, Path]) -> Iterator[None]:
    """OpenSSL's own ``SSL_CERT_FILE`` points the default verify paths at the test CA."""
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files["ca"]))
    fetch._tls_context.cache_clear()
    yield
    fetch._tls_context.cache_clear()


def test_https_verifies_the_name_and_sends_sni(tls_server: _Server, fake_dns: dict, trust_test_ca: None) -> None:
    fake_dns["images.example.test"] = ["127.0.0.1"]
    url = f"https://images.example.test:{tls_server.server_port}/image.jpg"
    assert fetch_http(url, allow_private()) == JPEG
    assert tls_server.sni[-1] == "images.example.test"
    headers = json.loads(fetch_http(f"https://images.example.test:{tls_server.server_port}/headers", allow_private()))
    assert headers["Host"] == f"images.example.test:{tls_server.server_port}"


def test_https_refuses_a_certificate_for_another_name(
    tls_server: _Server, fake_dns: dict, trust_test_ca: None
) -> None:
    fake_dns["other.example.test"] = ["127.0.0.1"]
    with pytest.raises(ImageDownloadError, match="certificate"):
        fetch_http(f"https://other.example.test:{tls_server.server_port}/image.jpg", allow_private())
    with pytest.raises(ImageDownloadError, match="certificate"):
        fetch_http(f"https://127.0.0.1:{tls_server.server_port}/image.jpg", allow_private())


def test_https_refuses_an_untrusted_issuer(tls_server: _Server, fake_dns: dict) -> None:
    fetch._tls_context.cache_clear()
    fake_dns["images.example.test"] = ["127.0.0.1"]
    with pytest.raises(ImageDownloadError, match="certificate"):
        fetch_http(f"https://images.example.test:{tls_server.server_port}/image.jpg", allow_private())
