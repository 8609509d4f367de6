"""The web page at /ui: what it costs to load and how soon it shows a first comparison.

* transfer: bytes of /ui's HTML, JS and CSS, as stored and as sent gzipped (what a browser gets);
* page load: DOMContentLoaded and load of a cold page in headless Chromium;
* time to first result: a cold page's load event plus its first compare request (what a user
  who had the two files ready would wait), and the driver's wall clock from navigating to /ui to
  the result on screen, which adds Playwright's handing over of the files (cold browser
  context, the server already warm);
* compare round trip: ``performance.now()`` around the request in the page (``data-ms``), over
  repeated comparisons, next to the server's own ``elapsed_ms``.

    .venv/bin/python bench/web.py              # 10 repeats; real photos from ../shared/eval if present
    .venv/bin/python bench/web.py --repeats 30

Needs Debian's chromium (``apt-get install chromium``) and playwright (the test extras).
Results: bench/results/web.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from support import encode, real_photos, running_server, synthetic_photo

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def transfer(base: str) -> dict:
    out = {}
    with httpx.Client(base_url=base) as c:
        page = c.get("/ui", headers={"Accept-Encoding": "identity"})
        out["index.html"] = {"bytes": len(page.content), "gzip": len(gzip.compress(page.content, 9))}
        for name in ("app.js", "app.css"):
            raw = c.get(f"/ui/static/{name}", headers={"Accept-Encoding": "identity"}).content
            sent = c.get(f"/ui/static/{name}", headers={"Accept-Encoding": "gzip"})
            wire = int(sent.headers.get("content-length", len(raw)))
            out[name] = {"bytes": len(raw), "gzip": wire}
    out["total"] = {k: sum(v[k] for v in out.values()) for k in ("bytes", "gzip")}
    return out


def pictures() -> tuple[list[tuple[str, bytes]], str]:
    real = real_photos(4)
    if len(real) == 4:
        return [(f"photo{i}.jpg", data) for i, data in enumerate(real)], "holidays811 (real photos)"
    return [(f"synthetic{i}.jpg", encode(synthetic_photo(i), quality=90)) for i in range(4)], "synthetic 480x360 JPEGs"


def files(name: str, data: bytes) -> list[dict]:
    return [{"name": name, "mimeType": "image/jpeg", "buffer": data}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "--chromium", default=os.environ.get("LOOKALIKE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    )
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    photos, source = pictures()
    sizes_kb = ", ".join(f"{len(d) // 1024} KB" for _, d in photos)
    with tempfile.TemporaryDirectory() as tmp, running_server(Path(tmp) / "data") as base:
        httpx.post(f"{base}/v1/compare", files={"a": photos[0][1], "b": photos[1][1]}, timeout=60)  # warm the model
        sizes = transfer(base)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)

            # cold context: navigate, pick two files as soon as the page is ready, wait for the result
            context = browser.new_context(base_url=base)
            page = context.new_page()
            t0 = time.perf_counter()
            page.goto("/ui")
            page.wait_for_selector("body[data-ready]")
            page.set_input_files("#file-a", files(*photos[0]))
            page.set_input_files("#file-b", files(*photos[1]))
            page.wait_for_selector("#compare-result:not([hidden])")
            first_result_ms = (time.perf_counter() - t0) * 1000
            nav = page.evaluate(
                "() => { const n = performance.getEntriesByType('navigation')[0];"
                " return {dcl: n.domContentLoadedEventEnd, load: n.loadEventEnd}; }"
            )
            first_request_ms = float(page.get_attribute("#compare-result", "data-ms"))

            # repeated comparisons in the same page: the request alone, browser and server
            browser_ms, server_ms = [], []
            for i in range(args.repeats):
                previous = page.get_attribute("#compare-result", "data-ms")
                b = photos[2 + i % 2] if i % 3 else photos[1]
                page.set_input_files("#file-b", files(f"{i}-{b[0]}", b[1]))
                page.wait_for_function(
                    "(ms) => { const r = document.querySelector('#compare-result');"
                    " return r.dataset.ms !== ms && !r.classList.contains('busy'); }",
                    arg=previous,
                )
                browser_ms.append(float(page.get_attribute("#compare-result", "data-ms")))
                text = page.inner_text("#r-time")
                server_ms.append(float(text.split("(")[1].split(" ms")[0]))
            context.close()
            browser.close()
            version = browser.version

    result = {
        "transfer_bytes": sizes,
        "page_load_ms": {"dom_content_loaded": round(nav["dcl"], 1), "load": round(nav["load"], 1)},
        "time_to_first_result_ms": {
            "page_load_plus_request": round(nav["load"] + first_request_ms, 1),
            "wall_clock_with_driver": round(first_result_ms, 1),
        },
        "first_compare_request_ms": first_request_ms,
        "compare_request_ms": {
            "browser_median": round(statistics.median(browser_ms), 1),
            "browser_max": round(max(browser_ms), 1),
            "server_median": round(statistics.median(server_ms), 1),
            "repeats": args.repeats,
        },
        "images": f"{source}: {sizes_kb}",
        "chromium": version,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
    }
    out = REPO / "bench" / "results" / "web.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
