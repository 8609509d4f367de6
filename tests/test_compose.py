"""compose.yaml agrees with the Dockerfile and the settings: read as Compose reads it (YAML), no
engine needed (tests/test_container.py runs the image itself)."""

from __future__ import annotations

import re

import yaml

from lookalike.config import Settings
from support import REPO


def compose() -> dict:
    return yaml.safe_load((REPO / "compose.yaml").read_text())


def test_lookalike_builds_here_keeps_data_in_a_volume_and_serves_8000():
    spec = compose()
    service = spec["services"]["lookalike"]
    assert service["build"] == "." and "profiles" not in service  # `docker compose up` starts it
    volume, _, target = service["volumes"][0].partition(":")
    assert target == "/data" and volume in spec["volumes"]
    assert "8000:8000" in service["ports"]
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "VOLUME /data" in dockerfile and "EXPOSE 8000" in dockerfile and "LOOKALIKE_DATA_DIR=/data" in dockerfile
    assert service["environment"]["LOOKALIKE_AUTH"] == "${LOOKALIKE_AUTH:-keys}"


def test_the_milvus_profile_is_milvus_standalone_with_etcd_and_minio():
    spec = compose()
    services = spec["services"]
    for name in ("milvus", "etcd", "minio"):
        assert services[name]["profiles"] == ["milvus"], name
    milvus = services["milvus"]
    assert milvus["image"].startswith("milvusdb/milvus:v2.5.")  # the pymilvus 2.5 client's server
    assert milvus["command"] == ["milvus", "run", "standalone"]
    assert (
        milvus["environment"]["ETCD_ENDPOINTS"] == "etcd:2379"
        and milvus["environment"]["MINIO_ADDRESS"] == "minio:9000"
    )
    assert set(milvus["depends_on"]) == {"etcd", "minio"}
    # lookalike waits for it when the profile is up, and finds it by the URI the README gives
    assert services["lookalike"]["depends_on"]["milvus"] == {"condition": "service_healthy", "required": False}
    uri = services["lookalike"]["environment"]["LOOKALIKE_MILVUS_URI"]
    assert uri == "${LOOKALIKE_MILVUS_URI:-}"
    assert (
        "LOOKALIKE_MILVUS_URI=http://milvus:19530 docker compose --profile milvus up"
        in (REPO / "README.md").read_text()
    )
    # an empty LOOKALIKE_MILVUS_URI (the profile off) means the embedded store
    assert not Settings(milvus_uri="").milvus_uri


def test_every_lookalike_variable_in_compose_is_a_setting():
    text = (REPO / "compose.yaml").read_text()
    names = set(re.findall(r"\bLOOKALIKE_([A-Z_]+)", text))
    assert names and all(name.lower() in Settings.model_fields for name in names), names
