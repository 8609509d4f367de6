"""SSRF: every hostile URL of the shared table through every URL-taking entry point, counted.

The table and the lab are ``tests/ssrf_cases.py`` (imported by path: one copy, the one
``tests/test_ssrf.py`` asserts). The lab starts a real ``lookalike serve`` on loopback with a
connection spy inside it, a canary listener where the hostile URLs point and a public stand-in that
redirects; see that module's docstring. For each category this prints the cases, the requests
(cases x entry points), how many were refused with a documented code (UrlIllegal /
ImageDownloadError, or the Tencent spelling), how many reached the canary, how many made the server
attempt any other connection, how many stored a picture, and how many answered 5xx.

    .venv/bin/python bench/ssrf.py                 # writes bench/results/ssrf.json
    .venv/bin/python bench/ssrf.py --out ssrf-x.json

Exit status 1 when any hostile case is not refused cleanly or a control is not fetched.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO_ROOT, markdown_table, shown, write_json


def load_table():
    """``tests/ssrf_cases.py`` as a module (tests/ is not a package)."""
    path = REPO_ROOT / "tests" / "ssrf_cases.py"
    spec = importlib.util.spec_from_file_location("ssrf_cases", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["ssrf_cases"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def _tally(outcomes: list) -> dict:
    by_case: dict[str, list] = {}
    for o in outcomes:
        by_case.setdefault(o.case.id, []).append(o)
    codes = Counter(o.code for o in outcomes if o.refused)
    return {
        "cases": len(by_case),
        "cases_all_refused": sum(all(o.refused for o in group) for group in by_case.values()),
        "requests": len(outcomes),
        "refused": sum(o.refused for o in outcomes),
        "refused_expected_code": sum(o.refused and o.code == o.case.expect for o in outcomes),
        "codes": dict(codes),
        "reached_canary": sum(o.canary > 0 for o in outcomes),
        "other_connects": sum(bool(o.connects) for o in outcomes),
        "stored": sum(bool(o.stored) or bool(o.listed) for o in outcomes),
        "server_errors": sum(o.server_error for o in outcomes),
        "failed": sum(bool(o.problems()) for o in outcomes),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="sscd-small", help="the server's model (the refusals do not depend on it)")
    parser.add_argument("--out", default="ssrf.json", help="file name under bench/results/")
    args = parser.parse_args(argv)

    table = load_table()
    outcomes, skipped = [], []
    started = time.perf_counter()
    with table.SsrfLab(model=args.model) as lab:
        ready = time.perf_counter() - started
        for case in table.CASES:
            got = lab.run_case(case)
            if not got:
                skipped.append(case.id)
            outcomes.extend(got)
        canary = {"port": lab.canary.port, "addresses": lab.canary.addresses}
    elapsed = time.perf_counter() - started - ready

    hostile = [o for o in outcomes if o.case.hostile]
    controls = [o for o in outcomes if not o.case.hostile]
    categories = {c: _tally([o for o in hostile if o.case.category == c]) for c in table.CATEGORIES if c != "control"}
    entries = {e.name: _tally([o for o in hostile if o.entry == e.name]) for e in table.ENTRY_POINTS}
    total = _tally(hostile)
    control = {
        "cases": len({o.case.id for o in controls}),
        "requests": len(controls),
        "fetched": sum(o.ok for o in controls),
        "failed": sum(bool(o.problems()) for o in controls),
    }
    failures = [
        {"case": o.case.id, "entry": o.entry, "url": o.url, "problems": o.problems()} for o in outcomes if o.problems()
    ]

    headers = [
        "category",
        "cases",
        "requests",
        "refused",
        "as UrlIllegal",
        "reached canary",
        "other connects",
        "stored",
        "5xx",
    ]

    def row(name: str, t: dict) -> list:
        return [name, t["cases"], t["requests"], t["refused"], t["refused_expected_code"], t["reached_canary"],
                t["other_connects"], t["stored"], t["server_errors"]]  # fmt: skip

    print(f"server ready in {ready:.1f} s; canary on port {canary['port']} at {', '.join(canary['addresses'])}\n")
    print(markdown_table(headers, [row(c, t) for c, t in categories.items()] + [row("**all**", total)]))
    print()
    print(markdown_table(["entry point"] + headers[2:], [row(e, t)[0:1] + row(e, t)[2:] for e, t in entries.items()]))
    print()
    print(
        f"controls (allowed URLs on the public stand-in): {control['fetched']}/{control['requests']} fetched; "
        f"{len(skipped)} case(s) skipped (no such address on this host): {', '.join(skipped) or 'none'}"
    )
    print(
        f"{len(outcomes)} requests in {elapsed:.1f} s ({1000 * elapsed / max(1, len(outcomes)):.1f} ms each, store "
        "checks included)"
    )
    for failure in failures:
        print(f"FAILED {failure['case']} via {failure['entry']}: {'; '.join(failure['problems'])}  [{failure['url']}]")

    results = {
        "model": args.model,
        "entry_points": [e.name for e in table.ENTRY_POINTS],
        "canary": canary,
        "total": total,
        "categories": categories,
        "by_entry_point": entries,
        "controls": control,
        "skipped": skipped,
        "failures": failures,
        "seconds": round(elapsed, 2),
        "cases": [
            {
                "category": case.category,
                "name": case.name,
                "url": case.url,
                **({"redirect": case.redirect, "hops": case.hops} if case.redirect else {}),
                "answers": {o.entry: (o.code if not o.ok else "fetched") for o in outcomes if o.case is case},
            }
            for case in table.CASES
        ],
    }
    path = write_json(args.out, results)
    print(f"wrote {shown(path)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
