"""The S3 image store when the store misbehaves (issue 12, "not yet tried"): 500s, slow answers
and a connection cut mid-upload are retried within a bound; AccessDenied and NoSuchBucket fail
at once, and a job whose images the store refuses fails cleanly, with nothing half-recorded.

The store is moto's S3 server behind ``tests/fakes/s3_faults.py``, driven by the real boto3.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from core.brand.preset_files import parse_preset
from core.db import Database
from core.db.uow import sql_uow_factory
from core.domain import Actor, GenerationStatus, Platform, ReplyTarget
from core.engines.fake import FakeEngine
from core.engines.registry import EngineRegistry
from core.errors import StoreRefused
from core.jobs.worker import Worker, WorkerConfig
from core.service import Service
from core.service.base import ServiceConfig
from core.storage.s3 import S3ImageStore
from tests.fakes.s3_faults import FaultyS3, faulty_s3

boto3 = pytest.importorskip("boto3", reason="the s3 extra is not installed")
moto_server = pytest.importorskip("moto.server", reason="moto[server] is not installed")

pytestmark = [pytest.mark.integration, pytest.mark.allow_hosts(["127.0.0.1"])]

CREDENTIALS = {"access_key_id": "testing-key-id", "secret_access_key": "testing-secret"}
READ_TIMEOUT_S = 0.3


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
async def s3(moto: str) -> AsyncIterator[FaultyS3]:
    async with faulty_s3(moto, delay_s=READ_TIMEOUT_S * 3) as fake:
        yield fake


@pytest.fixture
def bucket(moto: str) -> str:
    name = f"onbrand-{uuid.uuid4().hex[:12]}"
    client = boto3.client(
        "s3",
        endpoint_url=moto,
        region_name="us-east-1",
        aws_access_key_id=CREDENTIALS["access_key_id"],
        aws_secret_access_key=CREDENTIALS["secret_access_key"],
    )
    client.create_bucket(Bucket=name)
    return name


def store_on(s3: FaultyS3, bucket: str) -> S3ImageStore:
    return S3ImageStore(
        bucket,
        "images",
        endpoint_url=s3.url,
        region="us-east-1",
        connect_timeout_s=1,
        read_timeout_s=READ_TIMEOUT_S,
        max_attempts=2,  # one retry: botocore's backoff before it is up to 1 s
        **CREDENTIALS,
    )


def png(n: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + f"image {n} ".encode() * 2000  # ~20 kB: a real upload


@pytest.mark.parametrize("fault", ["500", "slow", "drop"])
async def test_a_passing_fault_is_retried_and_the_image_stored(
    s3: FaultyS3, bucket: str, fault: str
) -> None:
    store = store_on(s3, bucket)
    s3.plan(fault, times=1)
    key = await store.put(png(1))
    assert await store.get(key) == png(1)
    assert s3.count("PUT") == 2, s3.seen  # the fault, then the upload that worked


async def test_a_store_that_keeps_failing_fails_within_the_bound(s3: FaultyS3, bucket: str) -> None:
    from botocore.exceptions import ClientError

    store = store_on(s3, bucket)
    s3.plan("500", times=100)
    started = time.monotonic()
    with pytest.raises(ClientError, match="InternalError"):
        await store.put(png(2))
    assert s3.count("PUT") == 2
    s3.plan("slow", times=100)
    with pytest.raises(Exception, match="Read timeout"):
        await store.put(png(3))
    assert s3.count("PUT") == 4
    assert time.monotonic() - started < 6


async def test_refusals_for_good_are_not_retried_and_say_what_to_fix(
    s3: FaultyS3, bucket: str
) -> None:
    store = store_on(s3, bucket)
    s3.plan("denied", times=100)
    with pytest.raises(StoreRefused, match=f"s3://{bucket}/images at .*AccessDenied.*policy"):
        await store.put(png(4))
    assert s3.count("PUT") == 1
    s3.clear()
    missing = store_on(s3, "no-such-bucket-here")
    with pytest.raises(StoreRefused, match="NoSuchBucket, the bucket does not exist"):
        await missing.put(png(5))
    with pytest.raises(StoreRefused, match="NoSuchBucket"):
        await missing.get(hashlib.sha256(b"x").hexdigest() + ".png")


PRESET = """
name: s3-test
brand: S3
prompt: "{prompt}"
aspect_ratios: {"1:1": [64, 64]}
default_aspect: "1:1"
engine: {kind: fake, model: fake-1, steps: 2, guidance: 5.0}
limits: {images_per_user_per_day: 1000, queued_per_user: 50}
"""


async def test_a_job_whose_images_the_store_refuses_fails_once_with_nothing_recorded(
    db: Database, s3: FaultyS3, bucket: str, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    preset = parse_preset(PRESET)
    service = Service(sql_uow_factory(db), {preset.name: preset}, ServiceConfig(preset.name))
    where = ReplyTarget(Platform.SLACK, "T1", "C1")
    ann = Actor(Platform.SLACK, "T1", "U1", "ann")
    refused = (await service.imagine("a circle --n 2", ann, where)).generation_ids[0]
    engines = EngineRegistry()
    engines.put("fake", FakeEngine())
    store = store_on(s3, bucket)
    config = WorkerConfig(max_batch=1, batch_window_s=0, retry_delay_s=0)
    worker = Worker(db, engines, store, {preset.name: preset}, config)
    s3.plan("denied", times=1)  # the first upload is refused; a retry would pass
    caplog.set_level(logging.INFO)
    await asyncio.wait_for(worker.run(drain=True), 30)

    generation = await service.generation(refused)
    assert generation.status is GenerationStatus.FAILED
    assert generation.error is not None
    assert "image store refused to keep them" in generation.error
    assert str(refused) in generation.error
    async with db.engine.connect() as conn:
        rows = await conn.scalar(
            text("SELECT count(*) FROM images WHERE generation_id = :i"), {"i": refused}
        )
    assert rows == 0, "an image row for an image the store does not hold"
    said = [r for r in caplog.records if r.name == "core.jobs.worker" and r.levelname == "ERROR"]
    assert len(said) == 1, [r.getMessage() for r in said]  # not retried three times
    assert "AccessDenied" in said[0].getMessage()
    assert said[0].exc_info is None  # one clear line for the operator, no traceback

    # A passing 500 on the way is retried inside the store: the next job is done.
    s3.plan("500", times=1)
    done = (await service.imagine("a square --n 1", ann, where)).generation_ids[0]
    await asyncio.wait_for(worker.run(drain=True), 30)
    assert (await service.generation(done)).status is GenerationStatus.DONE
