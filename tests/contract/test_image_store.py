"""The ``ImageStore`` contract, run against every implementation: the local directory and S3.

S3 is moto's S3 server (``ThreadedMotoServer``) on 127.0.0.1 at a random port, driven by the
real boto3 client over HTTP, so signing, addressing, errors and retries are the real code paths.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from core.bootstrap import build_store
from core.errors import ConfigError
from core.ports import ImageStore
from core.settings import Settings
from core.storage.local import LocalImageStore

boto3 = pytest.importorskip("boto3", reason="the s3 extra is not installed")
moto_server = pytest.importorskip("moto.server", reason="moto[server] is not installed")

pytestmark = pytest.mark.allow_hosts(["127.0.0.1"])

PNG = b"\x89PNG\r\n\x1a\n" + b"onbrand test image" * 10
CREDENTIALS = {"access_key_id": "testing-key-id", "secret_access_key": "testing-secret"}
REGION = "us-east-1"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def s3_client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=CREDENTIALS["access_key_id"],
        aws_secret_access_key=CREDENTIALS["secret_access_key"],
    )


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    name = f"onbrand-{uuid.uuid4().hex[:12]}"
    s3_client(s3_endpoint).create_bucket(Bucket=name)
    return name


def make_s3_store(endpoint: str, bucket: str, prefix: str = "images") -> Any:
    from core.storage.s3 import S3ImageStore

    return S3ImageStore(bucket, prefix, endpoint_url=endpoint, region=REGION, **CREDENTIALS)


@pytest.fixture(params=["local", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ImageStore]:
    if request.param == "local":
        yield LocalImageStore(tmp_path / "images")
    else:
        endpoint = request.getfixturevalue("s3_endpoint")
        yield make_s3_store(endpoint, request.getfixturevalue("bucket"))


# ------------------------------------------------------------------------------ the contract


async def test_put_returns_the_content_hash_key_and_get_returns_the_bytes(
    store: ImageStore,
) -> None:
    key = await store.put(PNG)
    assert key == hashlib.sha256(PNG).hexdigest() + ".png"
    assert await store.get(key) == PNG
    assert await store.exists(key)


async def test_the_same_bytes_are_stored_once_under_one_key(store: ImageStore) -> None:
    first = await store.put(PNG)
    again = await store.put(PNG)
    assert first == again
    assert await store.get(again) == PNG


async def test_the_suffix_is_part_of_the_key(store: ImageStore) -> None:
    png, jpg = await store.put(PNG), await store.put(PNG, suffix=".jpg")
    assert png != jpg
    assert jpg.endswith(".jpg")
    assert await store.get(jpg) == PNG


async def test_a_missing_key_is_a_key_error_and_does_not_exist(store: ImageStore) -> None:
    missing = hashlib.sha256(b"never stored").hexdigest() + ".png"
    assert not await store.exists(missing)
    with pytest.raises(KeyError) as caught:
        await store.get(missing)
    assert caught.value.args == (missing,)


@pytest.mark.parametrize(
    "key",
    [
        "../../etc/passwd",
        "A" * 64 + ".png",  # uppercase hex
        "a" * 64,  # no suffix
        "a" * 63 + ".png",
        "a" * 64 + ".PNG",
        "a" * 64 + ".png/../x",
        "",
    ],
)
async def test_malformed_keys_are_refused_before_any_lookup(store: ImageStore, key: str) -> None:
    with pytest.raises(ValueError, match="bad image key"):
        await store.get(key)
    with pytest.raises(ValueError, match="bad image key"):
        await store.exists(key)


@pytest.mark.parametrize("suffix", ["png", ".PNG", ".p/g", ".toolongsuffix", ""])
async def test_a_bad_suffix_is_refused(store: ImageStore, suffix: str) -> None:
    with pytest.raises(ValueError, match="suffix"):
        await store.put(PNG, suffix=suffix)


async def test_concurrent_puts_of_the_same_bytes_agree(store: ImageStore) -> None:
    keys = await asyncio.gather(*(store.put(PNG) for _ in range(8)))
    assert len(set(keys)) == 1
    assert await store.get(keys[0]) == PNG


async def test_empty_and_large_payloads_round_trip(store: ImageStore) -> None:
    large = bytes(range(256)) * (6 * 1024 * 4)  # 6 MiB: above S3's multipart threshold
    for data in (b"", large):
        key = await store.put(data)
        assert await store.get(key) == data


# ------------------------------------------------------------------------ S3 specifics


async def test_s3_heads_before_it_puts_so_the_same_bytes_are_uploaded_once(
    s3_endpoint: str, bucket: str
) -> None:
    store = make_s3_store(s3_endpoint, bucket)
    calls: list[str] = []
    store.client.meta.events.register(
        "before-call.s3.*", lambda model, **_: calls.append(model.name)
    )
    await store.put(PNG)
    await store.put(PNG)
    assert calls == ["HeadObject", "PutObject", "HeadObject"]


async def test_s3_objects_live_under_the_prefix_with_a_content_type(
    s3_endpoint: str, bucket: str
) -> None:
    key = await make_s3_store(s3_endpoint, bucket, "brand/images").put(PNG)
    head = s3_client(s3_endpoint).head_object(Bucket=bucket, Key=f"brand/images/{key}")
    assert head["ContentType"] == "image/png"
    assert head["Metadata"]["sha256"] == key.removesuffix(".png")
    other = make_s3_store(s3_endpoint, bucket, "other")
    assert not await other.exists(key)


async def test_s3_a_missing_bucket_is_an_error_not_a_missing_image(s3_endpoint: str) -> None:
    from core.errors import StoreRefused

    store = make_s3_store(s3_endpoint, "no-such-bucket-here")
    with pytest.raises(StoreRefused, match=r"no-such-bucket-here.*NoSuchBucket"):
        await store.get(hashlib.sha256(b"x").hexdigest() + ".png")


def test_s3_store_repr_shows_no_credentials(s3_endpoint: str) -> None:
    text = repr(make_s3_store(s3_endpoint, "bucket-name"))
    assert "bucket-name" in text
    assert CREDENTIALS["secret_access_key"] not in text
    assert CREDENTIALS["access_key_id"] not in text


# ------------------------------------------------------------------ choosing the store


def settings(**env: str) -> Settings:
    return Settings(_env_file=None, **env)  # type: ignore[call-arg]


def test_an_s3_url_selects_the_s3_store_with_the_endpoint_and_region(
    s3_endpoint: str, bucket: str
) -> None:
    from core.storage.s3 import S3ImageStore

    chosen = build_store(
        settings(
            ONBRAND_IMAGE_STORE=f"s3://{bucket}/brand/",
            ONBRAND_S3_ENDPOINT_URL=s3_endpoint,
            AWS_DEFAULT_REGION="eu-west-1",
            AWS_ACCESS_KEY_ID="id",
            AWS_SECRET_ACCESS_KEY="secret",
        )
    )
    assert isinstance(chosen, S3ImageStore)
    assert (chosen.bucket, chosen.prefix) == (bucket, "brand")
    assert (chosen.endpoint_url, chosen.region) == (s3_endpoint, "eu-west-1")


def test_the_s3_store_chosen_from_settings_works_end_to_end(s3_endpoint: str, bucket: str) -> None:
    chosen = build_store(
        settings(
            ONBRAND_IMAGE_STORE=f"s3://{bucket}/x",
            ONBRAND_S3_ENDPOINT_URL=s3_endpoint,
            AWS_REGION=REGION,
            AWS_ACCESS_KEY_ID=CREDENTIALS["access_key_id"],
            AWS_SECRET_ACCESS_KEY=CREDENTIALS["secret_access_key"],
            ONBRAND_DEPLOYMENT="distributed",
        )
    )

    async def round_trip() -> bytes:
        return await chosen.get(await chosen.put(PNG))

    assert asyncio.run(round_trip()) == PNG


@pytest.mark.parametrize("url", ["s3://", "s3://Bad_Bucket/x", "gs://bucket/x", "/tmp/images"])
def test_a_malformed_store_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="ONBRAND_IMAGE_STORE"):
        build_store(settings(ONBRAND_IMAGE_STORE=url))


@pytest.mark.parametrize("url", ["", "file:///srv/onbrand/images"])
def test_a_distributed_deployment_refuses_the_local_store_and_says_how_to_fix_it(
    url: str,
) -> None:
    with pytest.raises(ConfigError) as caught:
        build_store(settings(ONBRAND_IMAGE_STORE=url, ONBRAND_DEPLOYMENT="distributed"))
    assert "ONBRAND_IMAGE_STORE=s3://" in str(caught.value)
    assert "ONBRAND_DEPLOYMENT=distributed" in str(caught.value)


def test_a_single_machine_keeps_the_local_store(tmp_path: Path) -> None:
    chosen = build_store(settings(ONBRAND_DATA_DIR=str(tmp_path)))
    assert isinstance(chosen, LocalImageStore)
    assert chosen.root == tmp_path / "images"
