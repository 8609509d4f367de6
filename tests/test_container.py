"""The container image, for real: built from the repo's Dockerfile with podman on a Debian base made
here (scripts/container: debootstrap, no public registry), run, driven with Tencent's own SDK and the
AWS wire, then replaced by a new container on the same volume, which still has the data.

Select with ``-m container``; ``-m "not container"`` leaves it out. Skips only where podman (or a
way to make the base) is missing or cannot start a container, and says why.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from support import REPO, free_port

pytestmark = [
    pytest.mark.container,
    pytest.mark.timeout(1800),  # a first build downloads the packages; later ones reuse its layers
    pytest.mark.filterwarnings("ignore:datetime.datetime.utcfromtimestamp:DeprecationWarning"),
]

SCRIPT = str(REPO / "scripts" / "container")
TAG = "localhost/lookalike:test"
RUNTIME = ["podman", "--runtime", "runc"]


def sh(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check:
        assert done.returncode == 0, (
            f"{' '.join(args)} -> {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
        )
    return done


def why_no_podman() -> str | None:
    if shutil.which("podman") is None:
        return "podman is not installed (apt-get install podman runc debootstrap)"
    if shutil.which("runc") is None:
        return "runc is not installed (apt-get install runc): crun refuses hybrid cgroups on such hosts"
    info = subprocess.run([*RUNTIME, "info"], capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        return f"podman cannot run here: {(info.stderr.strip().splitlines() or ['?'])[-1]}"
    has_base = subprocess.run([*RUNTIME, "image", "exists", "localhost/lookalike-base:trixie"]).returncode == 0
    cached = any((Path.home() / ".cache" / "lookalike").glob("debian-*-python.tar"))
    if not (has_base or cached or shutil.which("debootstrap")):
        return "no Debian base image and no debootstrap to make one (apt-get install debootstrap)"
    return None


@pytest.fixture(scope="module")
def image() -> str:
    reason = why_no_podman()
    if reason:
        pytest.skip(reason)
    started = time.monotonic()
    sh(SCRIPT, "build", TAG, timeout=1500)
    size = json.loads(sh(*RUNTIME, "image", "inspect", TAG).stdout)[0]["Size"]
    print(f"\nimage {TAG}: {size / 1e6:.0f} MB, built in {time.monotonic() - started:.0f} s")
    return TAG


class Container:
    """One ``podman run -d`` of the image on a named volume, on the host's network (a free port)."""

    def __init__(self, tag: str, volume: str) -> None:
        self.tag, self.volume = tag, volume
        self.name = ""
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Container:
        self.name, self.port = f"lookalike-test-{uuid.uuid4().hex[:8]}", free_port()
        env = {"LOOKALIKE_PORT": str(self.port), "LOOKALIKE_THREADS": "2"}
        flags = [f"-e={k}={v}" for k, v in env.items()]
        sh(SCRIPT, "run", "-d", "--name", self.name, "-v", f"{self.volume}:/data", *flags, self.tag)
        deadline = time.monotonic() + 240
        while True:
            state = sh(*RUNTIME, "inspect", "--format", "{{.State.Status}}", self.name).stdout.strip()
            assert state == "running", f"container {state}:\n{self.logs()}"
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"not ready after 240 s:\n{self.logs()}"
            time.sleep(0.5)

    def exec(self, *args: str) -> str:
        return sh(*RUNTIME, "exec", self.name, *args).stdout

    def logs(self) -> str:
        return sh(*RUNTIME, "logs", self.name, check=False).stdout[-3000:]

    def remove(self) -> None:
        if self.name:
            sh(*RUNTIME, "rm", "-f", "-t", "10", self.name, check=False)


@pytest.fixture
def volume(image):
    name = f"lookalike-test-{uuid.uuid4().hex[:8]}"
    sh(*RUNTIME, "volume", "create", name)
    yield name
    sh(*RUNTIME, "volume", "rm", "-f", name, check=False)


def tiia(url: str, secret_id: str, secret_key: str):
    from tencentcloud.common import credential
    from tencentcloud.common.profile.client_profile import ClientProfile
    from tencentcloud.common.profile.http_profile import HttpProfile
    from tencentcloud.tiia.v20190529 import tiia_client

    http = HttpProfile(endpoint=url.removeprefix("http://"), protocol="http", reqTimeout=120)
    return tiia_client.TiiaClient(
        credential.Credential(secret_id, secret_key), "ap-guangzhou", ClientProfile(httpProfile=http)
    )


def call(client, action: str, **fields):
    from tencentcloud.tiia.v20190529 import models

    req = getattr(models, f"{action}Request")()
    req.from_json_string(json.dumps(fields))
    return getattr(client, action)(req)


def test_image_is_small_non_root_healthchecked_and_without_build_tools(image):
    inspected = json.loads(sh(*RUNTIME, "image", "inspect", image).stdout)[0]
    config = inspected["Config"]
    assert config["User"] == "lookalike"
    assert "/data" in config["Volumes"] and "8000/tcp" in config["ExposedPorts"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert (
        env["LOOKALIKE_AUTH"] == "keys" and env["LOOKALIKE_HOST"] == "0.0.0.0" and env["LOOKALIKE_DATA_DIR"] == "/data"
    )
    assert "/readyz" in " ".join(inspected["Healthcheck"]["Test"])  # kept: built in docker format
    found = sh(
        SCRIPT,
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        image,
        "-c",
        "for t in gcc cc make pip pip3 apt-get; do command -v $t; done; id -u; lookalike --version",
    )
    lines = found.stdout.split()
    assert lines[-3:-2] == ["10001"] and lines[-2:] == ["lookalike", "0.1.0"], found.stdout
    assert [line for line in lines[:-3] if "pip" in line or "cc" in line or "make" in line] == [], found.stdout


def test_runs_serves_both_dialects_and_keeps_its_data_across_containers(image, volume, photos):
    first = Container(image, volume)
    try:
        first.start()
        # keys mode by default: nothing is served without a credential
        assert httpx.post(f"{first.url}/image_similarity", json={"img_1": "x"}).status_code == 403
        # the first keys, made inside the container as the README says
        tc = json.loads(first.exec("lookalike", "keys", "create", "--tenant", "ops", "--kind", "tencent"))
        api_key = json.loads(first.exec("lookalike", "keys", "create", "--tenant", "ops"))["api_key"]
        client = tiia(first.url, tc["secret_id"], tc["secret_key"])

        shoe, other = photos.image(4401), photos.jpeg(4402)
        call(client, "CreateGroup", GroupId="shoes", GroupName="Shoes", GroupType=101)
        call(client, "CreateImage", GroupId="shoes", EntityId="sku-1", PicName="sku-1/front.jpg",
             ImageBase64=base64.b64encode(photos.to_bytes(shoe)).decode(), Tags=json.dumps({"colour": "red"}))
        call(client, "CreateImage", GroupId="shoes", EntityId="sku-2", PicName="sku-2/front.jpg",
             ImageBase64=base64.b64encode(other).decode())
        query = base64.b64encode(photos.to_bytes(shoe.resize((240, 180)), quality=70)).decode()
        hits = call(client, "SearchImage", GroupId="shoes", ImageBase64=query, Limit=5).ImageInfos
        assert [h.EntityId for h in hits][:1] == ["sku-1"] and hits[0].Score >= 80

        aws = httpx.post(f"{first.url}/image_similarity", headers={"x-api-key": api_key}, timeout=60,
                         json={"img_1": query, "img_2": base64.b64encode(photos.to_bytes(shoe)).decode()})
        assert aws.status_code == 200, aws.text
        assert aws.json()["similarity"] > 0.9
        vector = httpx.post(
            f"{first.url}/image_similarity", headers={"x-api-key": api_key}, timeout=60, json={"img": query}
        )
        assert len(vector.json()["result"]) == 512
        assert sh(*RUNTIME, "healthcheck", "run", first.name, check=False).returncode == 0
        # doctor inside: as the non-root user, /data is writable and the models are there
        checks = {c["name"]: c for c in json.loads(first.exec("lookalike", "doctor", "--json"))}
        assert checks["data dir"]["status"] == "ok" and checks["data dir"]["detail"].startswith("/data ")
        assert checks["model sscd"]["status"] == "ok" and checks["package pymilvus"]["status"] == "ok"
    finally:
        first.remove()

    # a new container (an upgrade, a host reboot) on the same volume: groups, pictures and keys are there
    second = Container(image, volume)
    try:
        second.start()
        client = tiia(second.url, tc["secret_id"], tc["secret_key"])
        groups = call(client, "DescribeGroups", GroupId="shoes").Groups
        assert [(g.GroupId, g.PicCount) for g in groups] == [("shoes", 2)]
        hits = call(client, "SearchImage", GroupId="shoes", ImageBase64=query, Limit=5).ImageInfos
        assert hits[0].PicName == "sku-1/front.jpg" and json.loads(hits[0].Tags) == {"colour": "red"}
        assert httpx.get(f"{second.url}/v1/groups", headers={"x-api-key": api_key}).json()["total"] == 1
    finally:
        second.remove()
