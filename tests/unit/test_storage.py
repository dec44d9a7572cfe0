"""core.storage.local.LocalImageStore: content-addressed, atomic, sharded, traversal-proof."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

from core.ports import ImageStore
from core.storage.local import LocalImageStore, make_key


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.fixture
def store(tmp_path: Path) -> LocalImageStore:
    return LocalImageStore(tmp_path / "images")


def test_implements_the_port(store: LocalImageStore) -> None:
    port: ImageStore = store  # mypy checks the structure
    assert port is store


async def test_round_trip(store: LocalImageStore) -> None:
    data = b"\x89PNG fake image bytes"

    key = await store.put(data)

    assert key == hashlib.sha256(data).hexdigest() + ".png"
    assert await store.exists(key)
    assert await store.get(key) == data


async def test_keys_are_sharded_paths(store: LocalImageStore) -> None:
    key = await store.put(b"abc", suffix=".jpg")

    path = store.path_for(key)

    assert key.endswith(".jpg")
    assert path == store.root / key[:2] / key[2:4] / key
    assert files_under(store.root) == [path]
    assert path.read_bytes() == b"abc"


async def test_same_bytes_are_stored_once(store: LocalImageStore) -> None:
    first = await store.put(b"same")
    mtime = store.path_for(first).stat().st_mtime_ns

    second = await store.put(b"same")

    assert first == second
    assert files_under(store.root) == [store.path_for(first)]
    assert store.path_for(first).stat().st_mtime_ns == mtime  # not rewritten
    assert await store.put(b"same", suffix=".webp") != first  # suffix is part of the key


async def test_missing_key_raises_key_error(store: LocalImageStore) -> None:
    key = make_key(b"never stored")

    assert not await store.exists(key)
    with pytest.raises(KeyError):
        await store.get(key)


@pytest.mark.parametrize(
    "key",
    [
        "",
        "../../etc/passwd",
        "a" * 64,  # no suffix
        "A" * 64 + ".png",  # upper case
        "a" * 63 + ".png",
        "a" * 65 + ".png",
        "a" * 64 + ".png/../../x",
        "../" + "a" * 61 + ".png",
        "/" + "a" * 63 + ".png",
        "a" * 64 + ".PNG",
        "a" * 64 + ".png\n",
        "a" * 64 + "..png",
        "a" * 64 + ".toolongsuffix",
    ],
)
async def test_bad_keys_are_rejected(store: LocalImageStore, key: str) -> None:
    with pytest.raises(ValueError, match="bad image key"):
        store.path_for(key)
    with pytest.raises(ValueError, match="bad image key"):
        await store.get(key)
    with pytest.raises(ValueError, match="bad image key"):
        await store.exists(key)


@pytest.mark.parametrize("suffix", ["", "png", ".PNG", "./png", "/../x", ".a/b", ".png\x00"])
async def test_bad_suffixes_are_rejected(store: LocalImageStore, suffix: str) -> None:
    with pytest.raises(ValueError, match="bad image suffix"):
        await store.put(b"x", suffix=suffix)
    assert not store.root.exists() or files_under(store.root) == []


async def test_no_temporary_files_are_left(store: LocalImageStore) -> None:
    for i in range(5):
        await store.put(f"image {i}".encode())

    names = [p.name for p in files_under(store.root)]

    assert len(names) == 5
    assert not [n for n in names if n.startswith(".")]


async def test_a_failing_write_leaves_nothing(
    store: LocalImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)

    with pytest.raises(OSError, match="No space"):
        await store.put(b"doomed")

    monkeypatch.undo()
    assert files_under(store.root) == []
    assert not await store.exists(make_key(b"doomed"))
    # and the store still works afterwards
    key = await store.put(b"doomed")
    assert await store.get(key) == b"doomed"


async def test_a_failing_rename_leaves_nothing(
    store: LocalImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_replace(src: str, dst: object) -> None:
        raise OSError(5, "I/O error")

    monkeypatch.setattr(os, "replace", broken_replace)

    with pytest.raises(OSError, match="I/O error"):
        await store.put(b"doomed")

    assert files_under(store.root) == []


async def test_concurrent_puts_of_the_same_bytes_make_one_file(store: LocalImageStore) -> None:
    data = os.urandom(256 * 1024)

    keys = await asyncio.gather(*(store.put(data) for _ in range(20)))

    assert len(set(keys)) == 1
    assert files_under(store.root) == [store.path_for(keys[0])]
    assert await store.get(keys[0]) == data


async def test_concurrent_puts_of_different_bytes(store: LocalImageStore) -> None:
    blobs = [f"image {i}".encode() * 100 for i in range(20)]

    keys = await asyncio.gather(*(store.put(b) for b in blobs))

    assert len(set(keys)) == 20
    assert len(files_under(store.root)) == 20
    assert [await store.get(k) for k in keys] == blobs


async def test_stored_files_are_readable_by_others(store: LocalImageStore) -> None:
    key = await store.put(b"shared")
    assert store.path_for(key).stat().st_mode & 0o044 == 0o044


def test_new_shard_folders_and_each_file_are_made_durable(
    store: LocalImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import core.storage.local

    synced: list[Path] = []
    monkeypatch.setattr(core.storage.local, "_fsync_dir", synced.append)
    store.root.mkdir(parents=True)
    key = store._put(b"first", ".png")
    shard = store.path_for(key).parent
    # The new folders' entries (in root, in root/ab), then the file's entry in root/ab/cd.
    assert synced == [store.root, shard.parent, shard]

    synced.clear()
    second = make_key(b"second")
    store.path_for(second).parent.mkdir(parents=True, exist_ok=True)
    store._put(b"second", ".png")
    assert synced == [store.path_for(second).parent]  # existing folders: only the file's entry


def test_put_blocking_stores_like_put(store: LocalImageStore) -> None:
    from core.storage.local import BlockingPut

    assert isinstance(store, BlockingPut)
    key = store.put_blocking(b"from a thread", suffix=".webp")
    assert key == make_key(b"from a thread", ".webp")
    assert store.path_for(key).read_bytes() == b"from a thread"
    with pytest.raises(ValueError, match="bad image suffix"):
        store.put_blocking(b"x", suffix="png")
