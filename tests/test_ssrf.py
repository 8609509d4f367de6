"""SSRF, end to end: every hostile URL of the shared table (tests/ssrf_cases.py) through every
URL-taking entry point of a real ``lookalike serve``, over HTTP.

Each case must be refused with the documented code (``UrlIllegal``, or the dialect's spelling of
it: ``InvalidParameterValue.UrlIllegal`` for Tencent), never a 5xx; while it runs, the canary
listening where the URL points must accept no connection, and the server process must attempt
no ``connect()`` at all other than to the public stand-in; a refused CreateImage or gallery add
must leave the group's PicCount (and DescribeImages) unchanged. Redirect cases must really have
been served their first hop by the stand-in. ``bench/ssrf.py`` counts the same table for
docs/benchmarks.md.

The controls (allowed URLs on the stand-in) and a second server with
``LOOKALIKE_ALLOW_PRIVATE_URLS=true`` show that the lab does see a fetch and a leak: the
assertions here can fail.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import pytest

from ssrf_cases import (
    CASES,
    CATEGORIES,
    CONTROLS,
    ENTRY_POINTS,
    GROUP,
    HOSTILE,
    REDIRECT_STATUSES,
    SCHEMES,
    USERINFO,
    SsrfLab,
    _tencent,
    case_by_id,
    spelled_address,
)

ENTRY = {entry.name: entry for entry in ENTRY_POINTS}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    with SsrfLab(tmp_path_factory.mktemp("ssrf")) as lab:
        yield lab


@pytest.fixture(scope="module")
def open_lab(tmp_path_factory: pytest.TempPathFactory):
    """The same server with the guard switched off by its documented opt-in."""
    with SsrfLab(tmp_path_factory.mktemp("ssrf-open"), allow_private=True, fetch_timeout_s=2) as lab:
        yield lab


def _problems(lab: SsrfLab, case, entries=ENTRY_POINTS) -> list[str]:
    outcomes = lab.run_case(case, entries)
    if not outcomes:
        pytest.skip(f"this host has no address for {case.url}")
    assert [o.entry for o in outcomes] == [e.name for e in entries]
    return [f"{o.entry}: {problem}   [{o.url}]" for o in outcomes for problem in o.problems()]


# -- the table itself ----------------------------------------------------------------------------


def test_the_table_covers_what_the_issue_lists() -> None:
    assert CATEGORIES == [
        "loopback", "ipv6 loopback and mapped", "private", "reserved and multicast", "link-local and metadata",
        "ip spellings", "dns to private", "redirect", "userinfo tricks", "non-http schemes", "control",
    ]  # fmt: skip
    urls = {case.url for case in CASES}
    for must in (
        "http://127.0.0.1:{canary}/a.jpg", "http://127.1:{canary}/a.jpg", "http://0.0.0.0:{canary}/a.jpg",
        "http://[::ffff:7f00:1]:{canary}/a.jpg", "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/", "http://metadata.google.internal/computeMetadata/v1/",
        "http://2130706433:{canary}/a.jpg", "http://0177.0.0.1:{canary}/a.jpg", "http://017700000001:{canary}/a.jpg",
        "http://0x7f000001:{canary}/a.jpg", "http://127.0x0.0.1:{canary}/a.jpg",
        "http://public@127.0.0.1:{canary}/a.jpg", "file:///etc/passwd", "data:image/jpeg;base64,{jpeg_b64}",
    ):  # fmt: skip
        assert must in urls, must
    redirect_targets = {}
    for case in CASES:
        if case.category == "redirect" and case.hops == 1:
            redirect_targets.setdefault(case.url, set()).add(case.redirect)
    assert len(redirect_targets) >= 20
    assert all(statuses == set(REDIRECT_STATUSES) for statuses in redirect_targets.values())
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", [c for c in CASES if c.means], ids=lambda c: c.id)
def test_each_numeric_spelling_means_the_address_it_claims(case) -> None:
    """Checked by the C library's inet_aton, not by lookalike's own parser: the table is right."""
    url = case.url.format(canary=1, public=2, jpeg_b64="")
    assert spelled_address(url) == case.means


# -- the lab sees what it must see ---------------------------------------------------------------


def test_the_canary_counts_every_connection(lab: SsrfLab) -> None:
    assert lab.canary.addresses[0] == "127.0.0.1"  # and 127.255.255.254, ::1, own addresses where possible
    targets = [(address, lab.canary.port) for address in lab.canary.addresses]
    targets += [("0.0.0.0", lab.canary.port)] + ([("::", lab.canary.port)] if "::1" in lab.canary.addresses else [])
    before = len(lab.canary.hits)
    for address in targets:
        with socket.create_connection(address, timeout=2) as conn:
            conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert conn.recv(12) == b"HTTP/1.1 200"
    assert len(lab.canary.hits) - before == len(targets)


@pytest.mark.parametrize("case", CONTROLS, ids=lambda c: c.id)
def test_controls_are_fetched_through_every_entry_point(lab: SsrfLab, case) -> None:
    problems = _problems(lab, case)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("case_id", "entry", "seen"),
    [
        ("loopback: 127.0.0.1", "AWS url", "the canary accepted"),
        ("ipv6 loopback and mapped: [::1]", "/v1/compare b", "the canary accepted"),
        ("dns to private: name -> 127.0.0.1", "/v1/groups add", "PicCount changed by 1"),
        ("redirect: 307 to 0x7f.1", "Tencent CreateImage", "DescribeImages lists 1"),
        ("private: 10.0.0.1", "Tencent SearchImage", "connect() attempted to [('10.0.0.1'"),
    ],
)
def test_the_lab_reports_a_leak_when_the_guard_is_off(open_lab: SsrfLab, case_id: str, entry: str, seen: str) -> None:
    outcome = open_lab.run(case_by_id(case_id), ENTRY[entry])
    assert outcome is not None
    problems = outcome.problems()
    assert any(seen in problem for problem in problems), problems
    if "10.0.0.1" not in case_id:  # the canary answered a JPEG: the fetch "succeeded"
        assert any(problem.startswith("NOT REFUSED") for problem in problems), problems


def _not_http(case) -> bool:
    parts = urlsplit(case.url)
    return parts.scheme.lower() not in ("http", "https") or "@" in parts.netloc


@pytest.mark.parametrize("case", [c for c in SCHEMES + USERINFO if _not_http(c)], ids=lambda c: c.id)
def test_the_opt_in_opens_addresses_not_schemes_or_userinfo(open_lab: SsrfLab, case) -> None:
    problems = _problems(open_lab, case, (ENTRY["AWS url"], ENTRY["Tencent CreateImage"]))
    assert not problems, "\n".join(problems)


# -- the suite -----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", HOSTILE, ids=lambda c: c.id)
def test_hostile_url_is_refused_by_every_entry_point(lab: SsrfLab, case) -> None:
    problems = _problems(lab, case)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "case_id",
    ["loopback: 127.0.0.1", "link-local and metadata: 169.254.169.254 /latest/meta-data/",
     "dns to private: name -> 10.0.0.1", "redirect: 301 to [::1]", "non-http schemes: data: (a valid JPEG)"],
)  # fmt: skip
def test_a_refused_tencent_create_image_stores_nothing(lab: SsrfLab, case_id: str) -> None:
    groups = _tencent(lab, "DescribeGroups", {"GroupId": GROUP}).json()["Response"]["Groups"]
    before = groups[0]["PicCount"]
    url = lab.render(case_by_id(case_id))
    params = {"GroupId": GROUP, "EntityId": "refused", "PicName": "refused.jpg", "ImageUrl": url}
    answer = _tencent(lab, "CreateImage", params).json()["Response"]
    assert answer["Error"]["Code"] == "InvalidParameterValue.UrlIllegal"
    described = _tencent(lab, "DescribeImages", {"GroupId": GROUP, "EntityId": "refused"}).json()["Response"]
    assert described["Error"]["Code"] == "FailedOperation.ImageNotFoundInfo"
    groups = _tencent(lab, "DescribeGroups", {"GroupId": GROUP}).json()["Response"]["Groups"]
    assert groups[0]["PicCount"] == before
    # and the same EntityId/PicName is free: a real picture can take it
    ok = lab.render(case_by_id("control: the public stand-in"))
    answer = _tencent(lab, "CreateImage", {**params, "ImageUrl": ok}).json()["Response"]
    assert "Error" not in answer, answer
    _tencent(lab, "DeleteImages", {"GroupId": GROUP, "EntityId": "refused"})
    lab.pics = lab.pic_count()
