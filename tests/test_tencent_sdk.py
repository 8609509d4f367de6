"""The Tencent dialect driven by Tencent's own SDK (tencentcloud-sdk-python-tiia), unmodified."""

from __future__ import annotations

import json

import httpx
import pytest
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.tiia.v20190529 import models, tiia_client

from support import ImageServer, b64

SMALL = (192, 144)

# The SDK itself calls datetime.utcfromtimestamp (deprecated in Python 3.12).
pytestmark = pytest.mark.filterwarnings("ignore:datetime.datetime.utcfromtimestamp:DeprecationWarning")



@pytest.fixture(scope="module")
def tc_server(server_factory, backend) -> str:
    """A server that may fetch loopback URLs (ImageUrl points at a test HTTP server)."""
    return server_factory(env={"LOOKALIKE_ALLOW_PRIVATE_URLS": "true", **backend.env}).base_url


def make_client(base_url: str, sign_method: str | None = None, method: str = "POST") -> tiia_client.TiiaClient:
    endpoint = base_url.removeprefix("http://")
    http = HttpProfile(endpoint=endpoint, protocol="http", reqTimeout=120, reqMethod=method)
    profile = ClientProfile(signMethod=sign_method, httpProfile=http)
    return tiia_client.TiiaClient(
        credential.Credential("AKIDlookalikeTest", "not-a-real-secret"), "ap-guangzhou", profile
    )


@pytest.fixture(scope="module")
def client(tc_server) -> tiia_client.TiiaClient:
    return make_client(tc_server)


@pytest.fixture(scope="module")
def image_host(photos):
    """Real HTTP on 127.0.0.1 serving a few JPEGs for ImageUrl."""
    files = {f"/img/{i}.jpg": photos.jpeg(900 + i, SMALL) for i in range(3)}
    host = ImageServer({path: (200, "image/jpeg", data) for path, data in files.items()})
    yield host.base, files
    host.close()


def request(cls, **fields):
    req = cls()
    for key, value in fields.items():
        setattr(req, key, value)
    return req


def create_group(client, group_id: str, group_type: int = 101, **extra):
    return client.CreateGroup(
        request(
            models.CreateGroupRequest,
            GroupId=group_id,
            GroupName=f"{group_id} name",
            MaxCapacity=1000,
            GroupType=group_type,
            **extra,
        )
    )


def create_image(client, group_id: str, entity: str, pic: str, data: bytes | None = None, **extra):
    fields = {"GroupId": group_id, "EntityId": entity, "PicName": pic, **extra}
    if data is not None:
        fields["ImageBase64"] = b64(data)
    return client.CreateImage(request(models.CreateImageRequest, **fields))


def sdk_error(call) -> TencentCloudSDKException:
    with pytest.raises(TencentCloudSDKException) as info:
        call()
    assert info.value.requestId, "errors carry a RequestId"
    return info.value


def test_round_trip_with_the_official_client(client, photos, image_host):
    host, _ = image_host
    assert create_group(client, "sdk_main", Brief="from the SDK").RequestId
    pics = [photos.jpeg(800 + i, SMALL) for i in range(3)]
    for i, data in enumerate(pics):
        tags = json.dumps({"n": i, "colour": ("red", "blue")[i % 2]})
        response = create_image(
            client, "sdk_main", f"entity{i}", f"pic{i}", data, Tags=tags, CustomContent=f"custom {i}"
        )
        assert response.RequestId and response.Object is None
    create_image(client, "sdk_main", "entity0", "from_url", ImageUrl=f"{host}/img/0.jpg", Tags='{"n": 10}')

    groups = client.DescribeGroups(request(models.DescribeGroupsRequest, GroupId="sdk_main")).Groups
    assert len(groups) == 1
    group = groups[0]
    assert (group.GroupId, group.GroupName, group.Brief, group.MaxCapacity, group.GroupType, group.PicCount) == (
        "sdk_main", "sdk_main name", "from the SDK", 1000, 101, 4)
    assert group.MaxQps == 10 and len(group.CreateTime) == 19 and group.UpdateTime

    result = client.SearchImage(
        request(models.SearchImageRequest, GroupId="sdk_main", ImageBase64=b64(pics[1]), MatchThreshold=1)
    )
    assert result.Count == len(result.ImageInfos) >= 1
    top = result.ImageInfos[0]
    assert (top.EntityId, top.PicName, top.CustomContent, top.Score) == ("entity1", "pic1", "custom 1", 100)
    assert json.loads(top.Tags) == {"n": 1, "colour": "blue"}
    assert [i.Score for i in result.ImageInfos] == sorted((i.Score for i in result.ImageInfos), reverse=True)

    filtered = client.SearchImage(
        request(
            models.SearchImageRequest,
            GroupId="sdk_main",
            ImageBase64=b64(pics[1]),
            MatchThreshold=1,
            Filter='colour="red" OR n>=10',
        )
    )
    assert {i.PicName for i in filtered.ImageInfos} <= {"pic0", "pic2", "from_url"} and "pic1" not in {
        i.PicName for i in filtered.ImageInfos
    }

    by_url = client.SearchImage(
        request(models.SearchImageRequest, GroupId="sdk_main", ImageUrl=f"{host}/img/0.jpg", Limit=1)
    )
    assert [(i.PicName, i.Score) for i in by_url.ImageInfos] == [("from_url", 100)]

    described = client.DescribeImages(request(models.DescribeImagesRequest, GroupId="sdk_main", EntityId="entity0"))
    assert described.GroupId == "sdk_main" and described.EntityId == "entity0"
    assert sorted(i.PicName for i in described.ImageInfos) == ["from_url", "pic0"]

    client.UpdateImage(
        request(
            models.UpdateImageRequest, GroupId="sdk_main", EntityId="entity1", PicName="pic1", Tags='{"colour": "red"}'
        )
    )
    filtered = client.SearchImage(
        request(
            models.SearchImageRequest,
            GroupId="sdk_main",
            ImageBase64=b64(pics[1]),
            MatchThreshold=1,
            Filter="colour = red",
        )
    )
    assert filtered.ImageInfos[0].PicName == "pic1" and json.loads(filtered.ImageInfos[0].Tags) == {"colour": "red"}

    client.DeleteImages(request(models.DeleteImagesRequest, GroupId="sdk_main", EntityId="entity0"))
    err = sdk_error(
        lambda: client.DescribeImages(request(models.DescribeImagesRequest, GroupId="sdk_main", EntityId="entity0"))
    )
    assert err.code == "FailedOperation.ImageNotFoundInfo"
    remaining = client.SearchImage(
        request(models.SearchImageRequest, GroupId="sdk_main", ImageBase64=b64(pics[0]), MatchThreshold=1)
    )
    assert "pic0" not in {i.PicName for i in remaining.ImageInfos}

    # DeleteGroup is not in Tencent's API: the SDK's generic call reaches it.
    assert "RequestId" in client.call_json("DeleteGroup", {"GroupId": "sdk_main"})["Response"]
    assert client.DescribeGroups(request(models.DescribeGroupsRequest, GroupId="sdk_main")).Groups == []


def test_image_rect_through_the_sdk(client, photos):
    create_group(client, "sdk_rect")
    source = photos.image(850, SMALL)
    create_image(client, "sdk_rect", "e", "source", photos.to_bytes(source))
    create_image(client, "sdk_rect", "e", "other", photos.jpeg(851, SMALL))
    scene = photos.image(852, (400, 300))
    scene.paste(source, (150, 100))
    rect = request(models.ImageRect, X=150, Y=100, Width=SMALL[0], Height=SMALL[1])
    hits = client.SearchImage(
        request(models.SearchImageRequest, GroupId="sdk_rect", ImageBase64=b64(photos.to_bytes(scene)), ImageRect=rect)
    )
    assert hits.ImageInfos[0].PicName == "source" and hits.ImageInfos[0].Score >= 95


@pytest.fixture(scope="module")
def errors_group(client, photos) -> str:
    create_group(client, "sdk_errors")
    for i in range(10):
        create_image(client, "sdk_errors", "full", f"full{i}", photos.jpeg(860 + i, (128, 96)))
    return "sdk_errors"


def test_error_codes(client, errors_group, photos):
    data = photos.jpeg(880, SMALL)
    cases = {
        "InvalidParameterValue.PicNameAlreadyExist": lambda: create_image(client, errors_group, "other", "full3", data),
        "InvalidParameterValue.ImageGroupIdNotExist": lambda: create_image(client, "no_such_group", "e", "p", data),
        "FailedOperation.ImageEntityCountExceed": lambda: create_image(client, errors_group, "full", "eleventh", data),
        "InvalidParameterValue.ImageGroupIdAlreadyExist": lambda: create_group(client, errors_group),
        "InvalidParameterValue.ImageGroupIdIllegal": lambda: create_group(client, "bad-id"),
        "InvalidParameterValue.EntityIdTooLong": lambda: create_image(client, errors_group, "e" * 65, "p", data),
        "InvalidParameterValue.PicNameTooLong": lambda: create_image(client, errors_group, "e", "p" * 65, data),
        "InvalidParameterValue.CustomContentTooLong": lambda: create_image(
            client, errors_group, "e", "p", data, CustomContent="c" * 4097
        ),
        "InvalidParameterValue.TagsKeysExceed": lambda: create_image(
            client, errors_group, "e", "p", data, Tags=json.dumps({f"k{i}": i for i in range(11)})
        ),
        "InvalidParameterValue.TagsValueIllegal": lambda: create_image(
            client, errors_group, "e", "p", data, Tags='{"k": {"nested": 1}}'
        ),
        "FailedOperation.ImageDecodeFailed": lambda: create_image(
            client, errors_group, "e", "p", b"this is not an image"
        ),
        "InvalidParameter.PictureSolidColorError": lambda: create_image(client, errors_group, "e", "p", photos.solid()),
        "InvalidParameterValue.ImageEmpty": lambda: create_image(client, errors_group, "e", "p"),
        "InvalidParameterValue.FilterInvalid": lambda: client.SearchImage(
            request(models.SearchImageRequest, GroupId=errors_group, ImageBase64=b64(data), Filter="n >> 3")
        ),
        "InvalidParameterValue.LimitExceed": lambda: client.SearchImage(
            request(models.SearchImageRequest, GroupId=errors_group, ImageBase64=b64(data), Limit=101)
        ),
        "MissingParameter": lambda: client.SearchImage(request(models.SearchImageRequest, ImageBase64=b64(data))),
        "InvalidAction": lambda: client.call_json("DetectNothing", {}),
        "UnknownParameter": lambda: client.call_json("DescribeGroups", {"Limitt": 5}),
        "InvalidParameter": lambda: client.call_json("DescribeGroups", {"Limit": "five"}),
    }
    got = {code: sdk_error(call).code for code, call in cases.items()}
    assert got == {code: code for code in cases}
    # Nothing refused was stored.
    described = client.DescribeImages(request(models.DescribeImagesRequest, GroupId=errors_group, EntityId="full"))
    assert len(described.ImageInfos) == 10
    assert sdk_error(
        lambda: client.DescribeImages(request(models.DescribeImagesRequest, GroupId=errors_group, EntityId="e"))
    ).code == ("FailedOperation.ImageNotFoundInfo")


def test_wire_format(tc_server):
    """HTTP 200 for errors, exact shape, and the headers Tencent's API reads."""
    headers = {
        "X-TC-Action": "DescribeGroups",
        "X-TC-Version": "2019-05-29",
        "X-TC-Region": "ap-guangzhou",
        "X-TC-Timestamp": "1700000000",
        "X-TC-Language": "en-US",
        "Authorization": "TC3-HMAC-SHA256 Credential=AKID/2024-01-01/tiia/tc3_request, "
        "SignedHeaders=content-type;host, Signature=00",
    }
    ok = httpx.post(tc_server + "/", json={"Limit": 100}, headers=headers)
    assert ok.status_code == 200 and ok.headers["content-type"] == "application/json"
    assert set(ok.json()) == {"Response"} and set(ok.json()["Response"]) == {"Groups", "RequestId"}

    wrong = httpx.post(tc_server + "/", json={}, headers={**headers, "X-TC-Version": "2018-01-01"})
    assert wrong.status_code == 200 and wrong.headers["content-type"] == "application/json"
    body = wrong.json()["Response"]
    assert set(body) == {"Error", "RequestId"} and body["Error"]["Code"] == "NoSuchVersion" and body["Error"]["Message"]
    assert (
        httpx.post(tc_server + "/", content=b"{oops", headers=headers).json()["Response"]["Error"]["Code"]
        == "InvalidParameter"
    )
    missing = httpx.post(tc_server + "/", json={}, headers={"X-TC-Version": "2019-05-29"}).json()["Response"]["Error"][
        "Code"
    ]
    assert missing == "MissingParameter"


def test_signature_v1_form_encoding(tc_server):
    """Older SDK set-ups (HmacSHA256) post form-encoded bodies with Action/Version fields."""
    legacy = make_client(tc_server, sign_method="HmacSHA256")
    groups = legacy.DescribeGroups(request(models.DescribeGroupsRequest, Limit=100, Offset=0)).Groups
    assert isinstance(groups, list)
    err = sdk_error(lambda: legacy.DescribeGroups(request(models.DescribeGroupsRequest, Limit=500)))
    assert err.code == "InvalidParameterValue.LimitExceed"


def test_get_requests(tc_server, client, photos):
    """``HttpProfile(reqMethod="GET")``: parameters in the query string, ImageRect flattened."""
    create_group(client, "sdk_get")
    create_image(client, "sdk_get", "e", "p", photos.jpeg(870, SMALL), Tags='{"k": "v"}')
    getter = make_client(tc_server, method="GET")
    assert [
        g.GroupId for g in getter.DescribeGroups(request(models.DescribeGroupsRequest, GroupId="sdk_get")).Groups
    ] == ["sdk_get"]
    infos = getter.DescribeImages(
        request(models.DescribeImagesRequest, GroupId="sdk_get", EntityId="e", PicName="p")
    ).ImageInfos
    assert [(i.PicName, json.loads(i.Tags)) for i in infos] == [("p", {"k": "v"})]
    err = sdk_error(lambda: getter.DescribeGroups(request(models.DescribeGroupsRequest, Limit=500)))
    assert err.code == "InvalidParameterValue.LimitExceed"
    assert httpx.get(tc_server + "/").status_code == 404
