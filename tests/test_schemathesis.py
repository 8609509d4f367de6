"""Schemathesis against the live server's own /openapi.json: every operation, positive and
negative data, no 5xx and no hang, and the server still healthy afterwards.

The AWS, PAI and Tencent dialect routes parse their bodies themselves; where the server's
document gives such an operation no request body (or, for ``POST /``, no X-TC-* headers),
:func:`complete_dialects` adds their documented shape before fuzzing, so the generated
requests reach the code behind them instead of stopping at "missing image". What the server
documents itself is never replaced.

The fuzzing functions live here so that bench/fuzz.py runs them with more examples.
"""

from __future__ import annotations

import base64
import copy
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import requests

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from hostile_files import good_jpeg

FIXED_GROUP = "fuzz_fixed"
FIXED_PIC = "seed.jpg"
TENCENT_VERSION = "2019-05-29"
_STR, _INT, _BOOL = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
_RECT = {"type": "object", "properties": {k: _INT for k in ("X", "Y", "Width", "Height")}}
TENCENT_PARAMS: dict[str, dict[str, dict]] = {
    "CreateGroup": {
        "GroupId": _STR,
        "GroupName": _STR,
        "MaxCapacity": _INT,
        "Brief": _STR,
        "MaxQps": _INT,
        "GroupType": _INT,
    },
    "DescribeGroups": {"Offset": _INT, "Limit": _INT, "GroupId": _STR},
    "DeleteGroup": {"GroupId": _STR},
    "CreateImage": {
        "GroupId": _STR,
        "EntityId": _STR,
        "PicName": _STR,
        "ImageUrl": _STR,
        "CustomContent": _STR,
        "ImageBase64": {"type": "string", "format": "byte"},
        "Tags": _STR,
        "EnableDetect": _BOOL,
        "CategoryId": _INT,
        "ImageRect": _RECT,
    },
    "DescribeImages": {"GroupId": _STR, "EntityId": _STR, "PicName": _STR},
    "UpdateImage": {"GroupId": _STR, "EntityId": _STR, "PicName": _STR, "Tags": _STR, "CustomContent": _STR},
    "DeleteImages": {"GroupId": _STR, "EntityId": _STR, "PicName": _STR},
    "SearchImage": {
        "GroupId": _STR,
        "ImageUrl": _STR,
        "ImageBase64": {"type": "string", "format": "byte"},
        "Limit": _INT,
        "Offset": _INT,
        "MatchThreshold": _INT,
        "Filter": _STR,
        "ImageRect": _RECT,
        "EnableDetect": _BOOL,
        "CategoryId": _INT,
    },
}
"""Tencent tiia 2019-05-29 as the README documents it (one body schema per action)."""

_IMG = {"type": "string", "format": "byte", "description": "base64 image"}
_URL = {"type": "string", "description": "http, https or s3 URL"}
DIALECT_BODIES: dict[tuple[str, str], dict] = {
    ("/image_similarity", "post"): {
        "oneOf": [
            {
                "type": "object",
                "properties": {"img": _IMG, "url": _URL},
                "additionalProperties": False,
                "minProperties": 1,
            },
            {
                "type": "object",
                "properties": {"img_1": _IMG, "url_1": _URL, "img_2": _IMG, "url_2": _URL},
                "additionalProperties": False,
                "minProperties": 2,
            },
        ]
    },
    ("/api/predict/{service_name}", "post"): {
        "type": "object",
        "properties": {"imagea": _IMG, "imageb": _IMG},
        "required": ["imagea", "imageb"],
        "additionalProperties": False,
    },
    ("/", "post"): {
        "anyOf": [
            {"type": "object", "properties": props, "additionalProperties": False} for props in TENCENT_PARAMS.values()
        ]
    },
}


def complete_dialects(document: dict) -> list[str]:
    """Adds the documented request bodies (and Tencent's headers) the server's document lacks.

    Returns what was added, as ``METHOD path: what`` lines (empty once the server documents them).
    """
    added = []
    for (path, method), body in DIALECT_BODIES.items():
        operation = document.get("paths", {}).get(path, {}).get(method)
        if operation is None:
            continue
        if "requestBody" not in operation:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": copy.deepcopy(body)}},
            }
            added.append(f"{method.upper()} {path}: JSON request body")
        if path == "/":
            names = {p.get("name", "").lower() for p in operation.get("parameters", []) if p.get("in") == "header"}
            headers = [
                {
                    "name": "X-TC-Action",
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string", "enum": list(TENCENT_PARAMS)},
                },
                {
                    "name": "X-TC-Version",
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string", "enum": [TENCENT_VERSION]},
                },
            ]
            missing = [h for h in headers if h["name"].lower() not in names]
            if missing:
                operation.setdefault("parameters", []).extend(missing)
                added.append(f"POST /: {', '.join(h['name'] for h in missing)} headers")
    return added


def load_schema(base_url: str):
    """The live server's own /openapi.json (completed where it leaves dialect bodies out)."""
    document = httpx.get(f"{base_url}/openapi.json", timeout=30).raise_for_status().json()
    added = complete_dialects(document)
    schema = schemathesis.openapi.from_dict(document)
    schema.location = f"{base_url}/openapi.json"
    return schema, added


# --------------------------------------------------------------------------- fuzzing


@dataclass
class Record:
    operation: str
    mode: str
    status: int  # 0: no answer (time-out, connection error)
    seconds: float
    curl: str = ""
    failure: str = ""


@dataclass
class FuzzRun:
    records: list[Record] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # generation problems (not the server's)
    skipped: list[str] = field(default_factory=list)  # passes with no possible data (nothing to negate)
    added: list[str] = field(default_factory=list)
    operations: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def server_errors(self) -> list[Record]:
        return [r for r in self.records if r.status == 0 or r.status >= 500 or r.failure]

    def by_operation(self) -> dict[str, Counter]:
        table: dict[str, Counter] = {}
        for r in self.records:
            table.setdefault(r.operation, Counter())[str(r.status)] += 1
        return table


def ensure_fixed_group(base_url: str) -> None:
    """A group with one picture, for the examples whose path names an existing group / picture."""
    with httpx.Client(base_url=base_url, timeout=60) as client:
        if client.get(f"/v1/groups/{FIXED_GROUP}").status_code == 404:
            body = {"group_id": FIXED_GROUP, "group_name": "fixed", "max_qps": 100000}
            response = client.post("/v1/groups", json=body)
            assert response.status_code in (201, 409), response.text
        if client.get(f"/v1/groups/{FIXED_GROUP}/images/{FIXED_PIC}").status_code == 404:
            files = [("images", (FIXED_PIC, good_jpeg(5), "image/jpeg"))]
            response = client.post(
                f"/v1/groups/{FIXED_GROUP}/images", files=files, data={"entity_id": "seed", "pic_name": FIXED_PIC}
            )
            assert response.status_code in (201, 409), response.text


def fuzz(base_url: str, *, examples: int, seed: int | None = 0, timeout: float = 30.0) -> FuzzRun:
    """``examples`` positive and ``examples`` negative cases for every operation, plus
    ``examples`` positive cases aimed at an existing group / picture where the path names one."""
    schema, added = load_schema(base_url)
    run = FuzzRun(added=added)
    session = requests.Session()
    start = time.perf_counter()
    for result in schema.get_all_operations():
        operation = result.ok()
        run.operations.append(operation.label)
        params = {p.name for p in operation.path_parameters}
        passes: list[tuple[str, GenerationMode, dict[str, Any]]] = [
            ("positive", GenerationMode.POSITIVE, {}),
            ("negative", GenerationMode.NEGATIVE, {}),
        ]
        if "group_id" in params:
            fixed = {"group_id": FIXED_GROUP, **({"pic_name": FIXED_PIC} if "pic_name" in params else {})}
            passes.append(("existing", GenerationMode.POSITIVE, fixed))
        for label, mode, path_parameters in passes:
            if path_parameters:
                ensure_fixed_group(base_url)
            try:
                strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters or None)
                _run_examples(run, operation.label, label, strategy, base_url, session, examples, seed, timeout)
            except Unsatisfiable:  # nothing to negate (no parameters, or only a free-form string)
                run.skipped.append(f"{operation.label} {label}")
            except Exception as exc:  # schemathesis could not build this operation's data
                run.errors.append(f"{operation.label} {label}: {type(exc).__name__}: {str(exc)[:200]}")
    run.seconds = time.perf_counter() - start
    return run


def _run_examples(run: FuzzRun, label: str, mode: str, strategy, base_url: str, session, examples: int,
                  seed: int | None, timeout: float) -> None:
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck),
              phases=[Phase.explicit, Phase.generate])
    @given(case=strategy)
    def examples_of(case):
        started = time.perf_counter()
        try:
            response = case.call(base_url=base_url, session=session, timeout=timeout)
        except requests.RequestException as exc:
            run.records.append(
                Record(
                    label,
                    mode,
                    0,
                    time.perf_counter() - started,
                    case.as_curl_command(base_url=base_url),
                    f"no answer: {type(exc).__name__}",
                )
            )
            return
        failure = ""
        try:
            case.validate_response(response, checks=[not_a_server_error])
        except BaseExceptionGroup as group:  # schemathesis' FailureGroup: several failures at once
            failure = "; ".join(f"{type(e).__name__}: {str(e)[:200]}" for e in group.exceptions)
        except AssertionError as exc:  # one schemathesis Failure
            failure = f"{type(exc).__name__}: {str(exc)[:300]}"
        if not failure and case.operation.path == "/":  # Tencent: errors are HTTP 200, the code says
            failure = _tencent_internal_error(response)
        curl = case.as_curl_command(base_url=base_url) if failure or response.status_code >= 500 else ""
        run.records.append(Record(label, mode, response.status_code, float(response.elapsed), curl, failure))

    if seed is not None:
        examples_of = hypothesis_seed(seed)(examples_of)
    examples_of()


def _tencent_internal_error(response) -> str:
    """The Tencent dialect's 5xx: HTTP 200 with Response.Error.Code InternalError / InnerError."""
    try:
        code = response.json()["Response"]["Error"]["Code"]
    except Exception:
        return ""
    return f"Tencent error {code} (HTTP 200)" if code in ("InternalError", "FailedOperation.InnerError") else ""


def check_health(base_url: str) -> list[str]:
    problems = []
    with httpx.Client(base_url=base_url, timeout=60) as client:
        for path in ("/healthz", "/readyz"):
            response = client.get(path)
            if response.status_code != 200:
                problems.append(f"{path}: {response.status_code}")
        a, b = good_jpeg(3), good_jpeg(4)
        same = client.post("/v1/compare", json={"a": {"base64": base64.b64encode(a).decode()},
                                                 "b": {"base64": base64.b64encode(a).decode()}})
        other = client.post("/v1/compare", files={"a": ("a.jpg", a, "image/jpeg"), "b": ("b.jpg", b, "image/jpeg")})
        if same.status_code != 200 or same.json()["cosine"] < 0.99:
            problems.append(f"compare with itself: {same.status_code} {same.text[:200]}")
        if other.status_code != 200 or other.json()["cosine"] >= 0.99:
            problems.append(f"compare of two pictures: {other.status_code} {other.text[:200]}")
    return problems


# --------------------------------------------------------------------------- the test


@pytest.fixture(scope="module")
def fuzzed_server(server_factory):
    """A server of its own: the fuzzer creates and deletes groups at random."""
    return server_factory(env={"LOOKALIKE_MODEL": "sscd-small"})


def test_dialect_bodies_are_added_only_where_missing():
    document = {"paths": {"/": {"post": {"responses": {}}},
                          "/image_similarity": {"post": {"requestBody": {"content": {"text/plain": {}}}}}}}
    added = complete_dialects(document)
    assert added == ["POST /: JSON request body", "POST /: X-TC-Action, X-TC-Version headers"]
    assert document["paths"]["/image_similarity"]["post"]["requestBody"] == {"content": {"text/plain": {}}}
    assert complete_dialects(document) == []


def test_schemathesis_every_operation(fuzzed_server):
    base_url = fuzzed_server.base_url
    assert load_schema(base_url)[1] == [], "the server documents every dialect's body and headers"
    run = fuzz(base_url, examples=25, seed=0)
    document = httpx.get(f"{base_url}/openapi.json").json()
    documented = {f"{method.upper()} {path}" for path, ops in document["paths"].items() for method in ops}
    assert set(run.operations) == documented and "POST /" in documented
    fuzzed = {r.operation for r in run.records}
    assert fuzzed == documented, f"operations never exercised: {sorted(documented - fuzzed)}; {run.errors}"
    bad = run.server_errors
    assert not bad, f"{len(bad)} server errors or hangs:\n" + "\n".join(
        f"{r.operation} [{r.mode}] -> {r.status} {r.failure}\n  {r.curl[:600]}" for r in bad[:10])
    # The fuzzer got past validation somewhere: some 2xx answers, and 4xx ones from the dialects.
    statuses = Counter(r.status for r in run.records)
    assert sum(n for s, n in statuses.items() if 200 <= s < 300) > 20, statuses
    assert fuzzed_server.proc.poll() is None, "the server died"
    assert not check_health(base_url)


HUGE = 99999999999999999999  # > 2**63: what schemathesis sends as an "integer" sooner or later
OVERFLOWS = [
    ("GET", "/v1/groups", {"offset": HUGE}, None),
    ("GET", f"/v1/groups/{FIXED_GROUP}/images", {"offset": HUGE}, None),
    ("POST", "/v1/groups", None, {"group_id": "huge_capacity", "group_name": "x", "max_capacity": HUGE}),
    ("POST", "/v1/groups", None, {"group_id": "huge_qps", "group_name": "x", "max_qps": HUGE}),
    ("DescribeGroups", "/", None, {"Offset": HUGE}),
    ("CreateGroup", "/", None, {"GroupId": "huge_capacity_t", "GroupName": "x", "MaxCapacity": HUGE}),
    ("CreateGroup", "/", None, {"GroupId": "huge_qps_t", "GroupName": "x", "MaxQps": HUGE}),
]


@pytest.mark.parametrize(
    "method, path, query, body", OVERFLOWS, ids=lambda v: str(v)[:40] if isinstance(v, str) else None
)
def test_integers_beyond_64_bits_are_refused_not_internal_errors(fuzzed_server, method, path, query, body):
    """Found by the fuzzer: such an integer reached SQLite (OverflowError) and answered 500 /
    InternalError. A value out of range is the caller's error: 400 (Tencent: its error code)."""
    ensure_fixed_group(fuzzed_server.base_url)
    with httpx.Client(base_url=fuzzed_server.base_url, timeout=30) as client:
        if path == "/":
            headers = {"X-TC-Action": method, "X-TC-Version": TENCENT_VERSION}
            answer = client.post("/", json=body, headers=headers)
            assert answer.status_code == 200
            error = answer.json()["Response"].get("Error", {})
            assert error.get("Code", "").startswith("InvalidParameter"), answer.text
        else:
            answer = client.request(method, path, params=query, json=body)
            assert answer.status_code == 400, answer.text
            assert answer.json()["error"]["code"].startswith("InvalidParameter"), answer.text
