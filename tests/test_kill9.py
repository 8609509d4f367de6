"""Durability: every picture the server acknowledged survives ``kill -9`` of the server."""

from __future__ import annotations

import base64
import threading
import time

import pytest
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.tiia.v20190529 import models, tiia_client

pytestmark = pytest.mark.filterwarnings("ignore:datetime.datetime.utcfromtimestamp:DeprecationWarning")

TOTAL = 40
KILL_AFTER = 12


def make_client(base_url: str) -> tiia_client.TiiaClient:
    profile = ClientProfile(
        httpProfile=HttpProfile(endpoint=base_url.removeprefix("http://"), protocol="http", reqTimeout=60)
    )
    return tiia_client.TiiaClient(credential.Credential("AKIDkill9", "secret"), "ap-guangzhou", profile)


def create_image(client, i: int, data: bytes) -> None:
    req = models.CreateImageRequest()
    req.GroupId, req.EntityId, req.PicName = "durable", f"entity{i // 5}", f"pic{i}"
    req.ImageBase64 = base64.b64encode(data).decode()
    req.Tags = f'{{"i": {i}}}'
    req.CustomContent = f"picture {i}"
    client.CreateImage(req)


def test_acknowledged_pictures_survive_kill_9(server_factory, photos):
    server = server_factory()
    client = make_client(server.base_url)
    req = models.CreateGroupRequest()
    req.GroupId, req.GroupName, req.MaxCapacity, req.GroupType = "durable", "kill -9", 1000, 101
    client.CreateGroup(req)

    pictures = [photos.jpeg(2000 + i, (160, 120)) for i in range(TOTAL)]
    acknowledged: list[int] = []
    failure: list[BaseException] = []

    def writer() -> None:
        for i, data in enumerate(pictures):
            try:
                create_image(client, i, data)
            except TencentCloudSDKException as exc:
                if exc.code in ("ClientNetworkError", "ServerNetworkError") or "Connection" in str(exc.message):
                    return  # the server died under this request: not acknowledged
                failure.append(exc)
                return
            except Exception:  # noqa: BLE001 - any transport error once the server is gone
                return
            acknowledged.append(i)

    thread = threading.Thread(target=writer)
    thread.start()
    deadline = time.monotonic() + 120
    while len(acknowledged) < KILL_AFTER and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.005)
    server.kill()  # mid-stream: the writer is in the middle of its next request
    thread.join(60)
    assert not failure, failure
    assert KILL_AFTER <= len(acknowledged) < TOTAL, "the kill must land while pictures were still being added"
    assert acknowledged == list(range(len(acknowledged)))

    server.start()  # the same data dir
    client = make_client(server.base_url)
    for i in acknowledged:
        describe = models.DescribeImagesRequest()
        describe.GroupId, describe.EntityId, describe.PicName = "durable", f"entity{i // 5}", f"pic{i}"
        infos = client.DescribeImages(describe).ImageInfos
        assert [(info.PicName, info.CustomContent) for info in infos] == [(f"pic{i}", f"picture {i}")]

        search = models.SearchImageRequest()
        search.GroupId, search.ImageBase64, search.Limit = "durable", base64.b64encode(pictures[i]).decode(), 1
        top = client.SearchImage(search).ImageInfos
        assert top and top[0].PicName == f"pic{i}" and top[0].Score == 100, (i, top)

    groups = models.DescribeGroupsRequest()
    groups.GroupId = "durable"
    count = client.DescribeGroups(groups).Groups[0].PicCount
    assert len(acknowledged) <= count <= len(acknowledged) + 1  # plus, at most, the one in flight
