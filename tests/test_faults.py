"""Faults against a real server: kill -9 during ingest and during deletes, a full disk, slow URLs.

Each ends with a clear error, no corruption (``PRAGMA integrity_check``, no record without its
vector or thumbnail, counts that agree), and every acknowledged write present after a restart.
"""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from support import b64, small_tmpfs, take_space

GROUP_OPTIONS = {"model": "sscd-small", "max_qps": 100_000}
"""The fast model, and no per-group search rate limit in the way of the checks."""



class Api:
    """The native gallery API and the Tencent dialect of one server, over plain HTTP."""

    def __init__(self, base_url: str, timeout: float = 60) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=timeout)
        self.statuses: list[int] = []

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def request(self, method: str, url: str, **kw) -> httpx.Response:
        response = self.http.request(method, url, **kw)
        self.statuses.append(response.status_code)
        return response

    def create_group(self, group: str) -> None:
        r = self.request("POST", "/v1/groups", json={"group_id": group, **GROUP_OPTIONS})
        assert r.status_code == 201, r.text

    def add(self, group: str, entity: str, pic: str, data: bytes) -> httpx.Response:
        body = {"entity_id": entity, "pic_name": pic, "image": {"base64": b64(data)}, "custom_content": pic}
        return self.request("POST", f"/v1/groups/{group}/images", json=body)

    def batch(self, group: str, items: list[tuple[str, str, bytes]]) -> httpx.Response:
        body = [{"entity_id": e, "pic_name": p, "image": {"base64": b64(d)}, "custom_content": p} for e, p, d in items]
        return self.request("POST", f"/v1/groups/{group}/images", json=body)

    def get(self, group: str, pic: str) -> httpx.Response:
        return self.request("GET", f"/v1/groups/{group}/images/{quote(pic, safe='')}")

    def delete(self, group: str, pic: str) -> httpx.Response:
        return self.request("DELETE", f"/v1/groups/{group}/images/{quote(pic, safe='')}")

    def thumbnail(self, group: str, pic: str) -> httpx.Response:
        return self.request("GET", f"/v1/groups/{group}/images/{quote(pic, safe='')}/thumbnail")

    def search(self, group: str, data: bytes, limit: int = 1) -> list[dict]:
        r = self.request("POST", f"/v1/groups/{group}/search", json={"image": {"base64": b64(data)}, "limit": limit})
        assert r.status_code == 200, r.text
        return r.json()["results"]

    def group(self, group: str) -> dict:
        r = self.request("GET", f"/v1/groups/{group}")
        assert r.status_code == 200, r.text
        return r.json()

    def names(self, group: str) -> set[str]:
        """Every stored picture's name, page by page; the total must agree with PicCount."""
        names: list[str] = []
        total = None
        while total is None or len(names) < total:
            r = self.request("GET", f"/v1/groups/{group}/images", params={"offset": len(names), "limit": 100})
            assert r.status_code == 200, r.text
            page, total = r.json()["images"], r.json()["total"]
            if not page:
                break
            names += [image["pic_name"] for image in page]
        assert len(names) == len(set(names)) == total == self.group(group)["pic_count"]
        return set(names)

    def tencent(self, action: str, **params) -> dict:
        headers = {"X-TC-Action": action, "X-TC-Version": "2019-05-29"}
        r = self.request("POST", "/", json=params, headers=headers)
        assert r.status_code == 200, r.text
        return r.json()["Response"]


def check_database(data_dir: Path) -> None:
    """No corruption and no half-written record, read straight from the data directory."""
    with closing(sqlite3.connect(data_dir / "gallery.db", timeout=30)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]

        def count(sql: str) -> int:
            return conn.execute(sql).fetchone()[0]

        assert (
            count("SELECT COUNT(*) FROM images i WHERE NOT EXISTS (SELECT 1 FROM vectors WHERE image_id = i.id)") == 0
        )
        assert (
            count("SELECT COUNT(*) FROM images i WHERE NOT EXISTS (SELECT 1 FROM thumbnails WHERE image_id = i.id)")
            == 0
        )
        assert (
            count("SELECT COUNT(*) FROM vectors v WHERE NOT EXISTS (SELECT 1 FROM images WHERE id = v.image_id)") == 0
        )
        assert (
            count("SELECT COUNT(*) FROM thumbnails t WHERE NOT EXISTS (SELECT 1 FROM images WHERE id = t.image_id)")
            == 0
        )
        for group, pic_count, rows in conn.execute(
            "SELECT group_id, pic_count, (SELECT COUNT(*) FROM images WHERE gid = g.gid) FROM groups g"
        ):
            assert pic_count == rows, group


def check_present(api: Api, group: str, pics: dict[str, bytes], names: set[str]) -> None:
    """Each picture is whole: described, with its thumbnail, and found first by its own image."""
    for pic in sorted(names):
        r = api.get(group, pic)
        assert r.status_code == 200 and r.json()["custom_content"] == pic, (pic, r.text)
        thumb = api.thumbnail(group, pic)
        assert (
            thumb.status_code == 200
            and thumb.headers["content-type"] == "image/jpeg"
            and thumb.content[:2] == b"\xff\xd8"
        )
        top = api.search(group, pics[pic])
        assert top and top[0]["pic_name"] == pic and top[0]["score"] == 100, (pic, top)


def check_gone(api: Api, group: str, pics: dict[str, bytes], names: set[str]) -> None:
    """Deleted: not described, and not among the hits of a search with its own image."""
    for pic in sorted(names):
        r = api.get(group, pic)
        assert r.status_code == 404 and r.json()["error"]["code"] == "FailedOperation.ImageNotFoundInfo", (pic, r.text)
        hits = api.search(group, pics[pic], limit=10)
        assert pic not in {h["pic_name"] for h in hits}, (pic, hits)


def wait_for(condition, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


# ---------------------------------------------------------------------------- kill -9


def test_kill_9_during_batch_and_concurrent_ingest(server_factory, photos) -> None:
    server = server_factory()
    group = "ingest"
    with Api(server.base_url) as api:
        api.create_group(group)
    pics: dict[str, bytes] = {}
    batches = []  # the native batch endpoint: 32 pictures a request, stored one by one in order
    for k in range(5):
        batch = []
        for j in range(32):
            pic = f"b{k}-{j}"
            pics[pic] = photos.jpeg(3000 + 32 * k + j, (160, 120))
            batch.append((f"b{k}-{j // 8}", pic, pics[pic]))
        batches.append(batch)
    singles: dict[str, list[tuple[str, str, bytes]]] = {"native": [], "tencent": []}
    for t, name in enumerate(singles):
        for i in range(40):
            pic = f"{name}-{i}"
            pics[pic] = photos.jpeg(4000 + 100 * t + i, (160, 120))
            singles[name].append((f"{name}-{i // 5}", pic, pics[pic]))

    entity_of = {pic: entity for items in [*batches, *singles.values()] for entity, pic, _ in items}
    acked: set[str] = set()
    in_flight: dict[str, set[str]] = {}
    failures: list[object] = []
    acked_batches = [0]

    def writer(name: str, requests: list[list[tuple[str, str, bytes]]]) -> None:
        with Api(server.base_url) as client:
            for items in requests:
                in_flight[name] = {pic for _, pic, _ in items}
                try:
                    if name == "batch":
                        r = client.batch(group, items)
                        ok = r.status_code == 201 and all(item["ok"] for item in r.json()["results"])
                    elif name == "tencent":
                        entity, pic, data = items[0]
                        r = client.http.post("/", json={"GroupId": group, "EntityId": entity, "PicName": pic,
                                                        "ImageBase64": b64(data), "CustomContent": pic},
                                             headers={"X-TC-Action": "CreateImage", "X-TC-Version": "2019-05-29"})
                        ok = r.status_code == 200 and "Error" not in r.json()["Response"]
                    else:
                        r = client.add(group, *items[0])
                        ok = r.status_code == 201
                except httpx.TransportError:
                    return  # the server died under this request: not acknowledged
                if not ok:
                    failures.append((name, r.status_code, r.text))
                    return
                acked.update(in_flight[name])
                in_flight[name] = set()
                if name == "batch":
                    acked_batches[0] += 1
            in_flight.pop(name)

    threads = [threading.Thread(target=writer, args=("batch", batches))]
    threads += [
        threading.Thread(target=writer, args=(name, [[item] for item in items])) for name, items in singles.items()
    ]
    for thread in threads:
        thread.start()
    watcher = Api(server.base_url)
    seen: list[str] = []

    def storing_a_batch() -> bool:
        """A batch's first picture is stored and the batch is not acknowledged: its tail is being stored."""
        current = in_flight.get("batch")
        if failures or not threads[0].is_alive():
            return True
        if acked_batches[0] < 1 or not current:
            return False
        first = min(current, key=lambda pic: int(pic.rsplit("-", 1)[1]))
        if watcher.get(group, first).status_code == 200 and in_flight.get("batch") is current:
            seen.append(first)  # a reader saw it: committed, so it must survive too
            return True
        return False

    wait_for(storing_a_batch)
    server.kill()  # mid-batch (most often with part of it stored), and mid-request for the single writers
    watcher.http.close()
    for thread in threads:
        thread.join(60)
    assert not failures, failures
    assert in_flight.get("batch") and seen, "the kill must land while a batch was being stored"
    assert len(acked) < len(pics)
    maybe = set().union(*in_flight.values())

    server.start()  # the same data dir
    with Api(server.base_url) as api:
        stored = api.names(group)
        assert acked <= stored, f"acknowledged but lost: {sorted(acked - stored)}"
        assert stored <= acked | maybe, f"stored but never sent: {sorted(stored - acked - maybe)}"
        assert set(seen) <= stored
        check_present(api, group, pics, stored)
        check_database(server.data_dir)
        # ingest works again; re-sending what was in flight is safe (stored once, or refused as a duplicate)
        for pic in sorted(maybe):
            r = api.add(group, entity_of[pic], pic, pics[pic])
            assert r.status_code == (409 if pic in stored else 201), r.text
        new = {f"after-{i}": photos.jpeg(5000 + i, (160, 120)) for i in range(3)}
        pics.update(new)
        r = api.batch(group, [(pic, pic, data) for pic, data in new.items()])
        assert r.status_code == 201 and r.json()["created"] == 3, r.text
        assert api.names(group) == acked | maybe | set(new)
        check_present(api, group, pics, set(new) | maybe)
        assert all(status < 500 for status in api.statuses)


def test_kill_9_during_deletes(server_factory, photos) -> None:
    server = server_factory()
    group = "deletes"
    pics: dict[str, bytes] = {}
    entities: dict[str, list[str]] = {}
    for k in range(6):  # entities with the most pictures an entity may hold
        entities[f"big{k}"] = [f"big{k}-{j}" for j in range(10)]
    for i in range(40):
        entities[f"one{i}"] = [f"one{i}"]
    seed = 6000
    for names in entities.values():
        for pic in names:
            pics[pic] = photos.jpeg(seed, (160, 120))
            seed += 1
    items = [(entity, pic, pics[pic]) for entity, names in entities.items() for pic in names]
    with Api(server.base_url) as api:
        api.create_group(group)
        for start in range(0, len(items), 50):
            r = api.batch(group, items[start : start + 50])
            assert r.status_code == 201, r.text

    acked: dict[str, set[str]] = {}  # what an acknowledged delete removed: one picture or an entity's ten
    in_flight: dict[str, set[str]] = {}
    failures: list[object] = []

    def deleter(name: str, targets: list[str], pause: float) -> None:
        with Api(server.base_url) as client:
            for target in targets:
                in_flight[name] = set(entities.get(target, [target]))
                try:
                    if target in entities and len(entities[target]) > 1:  # a whole entity at once (Tencent)
                        r = client.http.post("/", json={"GroupId": group, "EntityId": target},
                                             headers={"X-TC-Action": "DeleteImages", "X-TC-Version": "2019-05-29"})
                        ok = r.status_code == 200 and "Error" not in r.json()["Response"]
                    else:
                        r = client.delete(group, target)
                        ok = r.status_code == 200 and r.json()["deleted"] == 1
                except httpx.TransportError:
                    return  # the server died under this request: not acknowledged
                if not ok:
                    failures.append((name, target, r.status_code, r.text))
                    return
                acked[target] = in_flight[name]
                in_flight[name] = set()
                time.sleep(pause)
            in_flight.pop(name)

    threads = [
        threading.Thread(target=deleter, args=("up", [f"one{i}" for i in range(20)], 0.01)),
        threading.Thread(target=deleter, args=("down", [f"one{i}" for i in range(39, 19, -1)], 0.01)),
        threading.Thread(target=deleter, args=("entities", [f"big{k}" for k in range(6)], 0.05)),
    ]
    for thread in threads:
        thread.start()
    wait_for(
        lambda: (len(acked) >= 16 and any(t.startswith("big") for t in list(acked)))
        or failures
        or not all(t.is_alive() for t in threads)
    )
    server.kill()
    for thread in threads:
        thread.join(60)
    assert not failures, failures
    assert len(in_flight) >= 2, "the kill must land while deletes were still being sent"
    assert any(target.startswith("big") for target in acked), "an entity must have been deleted before the kill"
    gone = set().union(*acked.values())
    maybe = set().union(*in_flight.values())
    untouched = set(pics) - gone - maybe

    server.start()
    with Api(server.base_url) as api:
        stored = api.names(group)  # PicCount agrees with the pictures listed
        assert untouched <= stored, f"lost without being deleted: {sorted(untouched - stored)}"
        assert not stored & gone, f"acknowledged deletes came back: {sorted(stored & gone)}"
        for names in entities.values():  # an entity's delete is all or nothing
            assert len(set(names) & stored) in (0, len(names)) or len(names) == 1, names
        check_gone(api, group, pics, gone)
        for entity in (t for t in acked if t.startswith("big")):
            response = api.tencent("DescribeImages", GroupId=group, EntityId=entity)
            assert response["Error"]["Code"] == "FailedOperation.ImageNotFoundInfo", response
        check_present(api, group, pics, stored)
        check_database(server.data_dir)
        # deletes work again after the restart, and the counts follow
        victim = sorted(stored)[0]
        assert api.delete(group, victim).status_code == 200
        check_gone(api, group, pics, {victim})
        big = next(e for e, names in entities.items() if len(names) > 1 and set(names) <= stored)
        assert api.tencent("DeleteImages", GroupId=group, EntityId=big).get("Error") is None
        assert api.names(group) == stored - {victim} - set(entities[big])
        check_database(server.data_dir)
        assert all(status < 500 for status in api.statuses)


# ---------------------------------------------------------------------------- a full disk


@pytest.fixture
def small_disk(tmp_path: Path):
    """An 8 MiB tmpfs to be a server's data dir; skips where mounting is not permitted."""
    with small_tmpfs(tmp_path / "data", "8m") as mnt:
        yield mnt


def assert_storage_full(r: httpx.Response) -> None:
    assert r.status_code == 507, r.text
    error = r.json()["error"]
    assert error["code"] == "StorageFull" and "out of space" in error["message"], error


def test_full_disk_refuses_writes_clearly_and_keeps_serving(server_factory, photos, small_disk: Path) -> None:
    server = server_factory(data_dir=small_disk, start=False)  # the log stays outside, in tmp_path
    group = "full"
    pics: dict[str, bytes] = {}
    acked: set[str] = set()
    deleted: set[str] = set()
    try:
        server.start()
        with Api(server.base_url) as api:
            api.create_group(group)
            take_space(small_disk, leave=600_000)  # the space freed at the end
            full = 0
            for i in range(60):
                pic = f"p{i}"
                pics[pic] = photos.jpeg(7000 + i, (160, 120))
                r = api.add(group, f"e{i}", pic, pics[pic])
                if r.status_code == 201:
                    acked.add(pic)
                    full = 0
                else:
                    assert_storage_full(r)
                    full += 1
                    if full == 3:
                        break
            assert full == 3 and len(acked) >= 3, "the disk must fill up"
            take_space(small_disk)  # not a page left

            # bigger pictures than any refused: they cannot fit where a refused write had begun
            big = {f"big{i}": photos.jpeg(7100 + i, (480, 360)) for i in range(3)}
            pics.update(big)
            assert_storage_full(api.add(group, "big", "big0", big["big0"]))
            r = api.batch(group, [("big", pic, data) for pic, data in big.items()])
            # nothing created, every item refused for the same reason: the batch answers its status
            assert r.status_code == 507 and r.json()["created"] == 0, r.text
            assert [item["error"]["code"] for item in r.json()["results"]] == ["StorageFull"] * 3
            response = api.tencent(
                "CreateImage", GroupId=group, EntityId="big", PicName="big1", ImageBase64=b64(big["big1"])
            )
            assert response["Error"]["Code"] == "ResourceInsufficient", response  # Tencent's common code
            assert "out of space" in response["Error"]["Message"]
            # a delete needs space too; one that fits in what a refused write had taken may commit
            for pic in sorted(acked):
                r = api.delete(group, pic)
                if r.status_code == 200:
                    deleted.add(pic)
                    continue
                assert_storage_full(r)
                kept = pic
                break
            else:
                pytest.fail("every delete succeeded on a full disk")
            present = acked - deleted
            # reads and searches go on, and agree with what was acknowledged
            assert api.request("GET", "/healthz").status_code == 200
            assert api.request("GET", "/readyz").status_code == 200
            assert api.names(group) == present
            check_present(api, group, pics, present)
            refused = {pic for pic in pics if pic.startswith("p") and pic not in acked}
            check_gone(api, group, pics, deleted | refused | set(big))
            assert kept in present
            assert set(api.statuses) <= {200, 201, 404, 507}, api.statuses  # never a 500

        server.kill()  # a crash while full
        server.start()  # still full: the store opens, reads work, writes are refused
        with Api(server.base_url) as api:
            assert api.names(group) == present
            check_present(api, group, pics, set(sorted(present)[:3]))
            assert_storage_full(api.add(group, "big", "big2", big["big2"]))
            assert set(api.statuses) <= {200, 507}, api.statuses
        server.stop()

        for ballast in small_disk.glob("ballast*"):
            ballast.unlink()
        server.start()
        with Api(server.base_url) as api:
            assert api.names(group) == present
            check_present(api, group, pics, present)
            check_database(small_disk)
            r = api.batch(group, [("big", pic, data) for pic, data in big.items()])
            assert r.status_code == 201, r.text
            assert api.delete(group, kept).status_code == 200
            assert api.names(group) == present - {kept} | set(big)
            check_present(api, group, pics, set(big))
            check_database(small_disk)
    finally:
        server.stop()  # before the tmpfs is unmounted


# ---------------------------------------------------------------------------- slow URLs


class SlowServer:
    """Loopback HTTP that never finishes: ``/trickle`` sends a byte every 0.5 s of a 100 kB body,
    ``/hang`` sends the headers and then nothing. Records when each client hung up."""

    HEADERS = b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n"

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.closed: list[tuple[str, float]] = []  # (path, seconds the client stayed connected)
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        start = time.monotonic()
        path = "?"
        with conn:
            try:
                conn.settimeout(10)
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    request += chunk
                path = request.split(b" ")[1].decode()
                conn.sendall(self.HEADERS)
                conn.settimeout(0.5)
                while not self.stop.is_set() and time.monotonic() - start < 30:
                    try:
                        if conn.recv(1) == b"":
                            break  # the client hung up
                    except TimeoutError:
                        if path == "/trickle":
                            conn.send(b"\xff")
            except OSError:
                pass
            finally:
                self.closed.append((path, time.monotonic() - start))

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture
def slow_server():
    server = SlowServer()
    yield server
    server.close()


def test_slow_urls_time_out_without_blocking_the_server(server_factory, photos, slow_server: SlowServer) -> None:
    deadline = 2.0
    server = server_factory({"LOOKALIKE_ALLOW_PRIVATE_URLS": "true", "LOOKALIKE_FETCH_TIMEOUT_S": str(deadline)})
    group = "slow"
    a, b = photos.jpeg(8000, (160, 120)), photos.jpeg(8001, (160, 120))
    with Api(server.base_url) as api:
        api.create_group(group)
    trickle, hang = slow_server.url("/trickle"), slow_server.url("/hang")
    slow = {
        "compare trickle": (
            "POST",
            "/v1/compare",
            {"json": {"a": {"url": trickle}, "b": {"base64": b64(a)}, "model": "sscd-small"}},
        ),
        "compare hang": (
            "POST",
            "/v1/compare",
            {"json": {"a": {"base64": b64(a)}, "b": {"url": hang}, "model": "sscd-small"}},
        ),
        "add hang": (
            "POST",
            f"/v1/groups/{group}/images",
            {"json": {"entity_id": "e", "pic_name": "hang", "image": {"url": hang}}},
        ),
        "add trickle": (
            "POST",
            f"/v1/groups/{group}/images",
            {"json": [{"entity_id": "e", "pic_name": "trickle", "image": {"url": trickle}}]},
        ),
        "CreateImage trickle": (
            "POST",
            "/",
            {
                "json": {"GroupId": group, "EntityId": "e", "PicName": "tc", "ImageUrl": trickle},
                "headers": {"X-TC-Action": "CreateImage", "X-TC-Version": "2019-05-29"},
            },
        ),
        "SearchImage hang": (
            "POST",
            "/",
            {
                "json": {"GroupId": group, "ImageUrl": hang},
                "headers": {"X-TC-Action": "SearchImage", "X-TC-Version": "2019-05-29"},
            },
        ),
    }
    answers: dict[str, tuple[float, float, httpx.Response]] = {}

    def call(name: str) -> None:
        method, url, kw = slow[name]
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            started = time.monotonic()
            r = client.request(method, url, **kw)
            answers[name] = (started, time.monotonic(), r)

    threads = [threading.Thread(target=call, args=(name,)) for name in slow]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    # meanwhile the server answers everything else
    with Api(server.base_url) as api:
        for _ in range(3):
            started = time.monotonic()
            assert api.request("GET", "/healthz").status_code == 200
            r = api.request(
                "POST", "/v1/compare", json={"a": {"base64": b64(a)}, "b": {"base64": b64(b)}, "model": "sscd-small"}
            )
            assert r.status_code == 200 and 0 < r.json()["similarity"] < 1, r.text
            assert api.group(group)["pic_count"] == 0
            assert time.monotonic() - started < 1.5
        served_by = time.monotonic()
    for thread in threads:
        thread.join(30)
    assert set(answers) == set(slow)
    assert served_by < min(ended for _, ended, _ in answers.values()), "other requests waited for the slow ones"
    for name, (started, ended, r) in answers.items():
        if r.request.url.path == "/":  # the Tencent dialect: HTTP 200 and its own code
            error = r.json()["Response"]["Error"]
            code, message = error["Code"], error["Message"]
            assert r.status_code == 200 and code == "FailedOperation.ImageDownloadError", (name, r.text)
        else:
            assert r.status_code == 400, (name, r.text)
            body = r.json()
            error = body["results"][0]["error"] if name == "add trickle" else body["error"]  # a batch: in its slot
            code, message = error["code"], error["message"]
            assert code == "ImageDownloadError", (name, r.text)
        assert "time-out" in message, (name, message)
        assert deadline - 0.2 <= ended - started <= deadline + 3, (name, ended - started)
    # the server hung up on every slow peer by its deadline, and stored nothing
    wait_for(lambda: len(slow_server.closed) >= len(slow), timeout=5)
    assert sorted(path for path, _ in slow_server.closed) == sorted(
        "/trickle" if "trickle" in n else "/hang" for n in slow
    )
    assert all(seconds <= deadline + 3 for _, seconds in slow_server.closed), slow_server.closed
    with Api(server.base_url) as api:
        assert api.names(group) == set()
        response = api.tencent("DescribeImages", GroupId=group, EntityId="e")
        assert response["Error"]["Code"] == "FailedOperation.ImageNotFoundInfo", response
