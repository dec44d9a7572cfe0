"""Content-addressed image storage on a local directory (the ``ImageStore`` port).

A key is the SHA-256 hex digest of the bytes plus a suffix (``<64 hex>.png``). Files live in
sharded folders, ``root/ab/cd/abcd….png``, so no folder grows past a few thousand entries.
Writes are atomic and durable: a temporary file in the same folder, fsync, ``os.replace``, fsync
of the folder (and of the parent of each shard folder created on the way). The same bytes are
stored once, and keys are validated before they touch the filesystem, so a key can never point
outside ``root``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Final, Protocol, runtime_checkable

__all__ = ["BlockingPut", "LocalImageStore", "make_key"]

_KEY: Final = re.compile(r"[0-9a-f]{64}\.[a-z0-9]{1,8}")
_SUFFIX: Final = re.compile(r"\.[a-z0-9]{1,8}")
_TMP_PREFIX: Final = ".tmp-"


@runtime_checkable
class BlockingPut(Protocol):
    """An image store that can also store from a worker thread, blocking (``LocalImageStore``)."""

    def put_blocking(self, data: bytes, *, suffix: str = ".png") -> str: ...


def make_key(data: bytes, suffix: str = ".png") -> str:
    """The key of ``data``: its SHA-256 hex digest plus ``suffix`` (``.png``, ``.jpg``, …)."""
    _check_suffix(suffix)
    return hashlib.sha256(data).hexdigest() + suffix


def _check_suffix(suffix: str) -> None:
    if not _SUFFIX.fullmatch(suffix):
        raise ValueError(
            f"bad image suffix {suffix!r}: expected a dot and 1-8 lowercase letters or digits, "
            "like '.png'"
        )


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise ValueError(f"bad image key {key!r}: expected '<64 lowercase hex digits>.<suffix>'")


class LocalImageStore:
    """Images under ``root``; blocking file I/O runs in a worker thread."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalImageStore({str(self.root)!r})"

    def path_for(self, key: str) -> Path:
        """Where ``key`` lives (whether or not it exists); ``ValueError`` for a malformed key."""
        _check_key(key)
        return self.root / key[0:2] / key[2:4] / key

    async def put(self, data: bytes, *, suffix: str = ".png") -> str:
        _check_suffix(suffix)
        return await asyncio.to_thread(self._put, bytes(data), suffix)

    def put_blocking(self, data: bytes, *, suffix: str = ".png") -> str:
        """``put`` for a caller already in a worker thread (it blocks: never on the loop).

        The worker encodes and stores an image in one thread hop with it."""
        _check_suffix(suffix)
        return self._put(bytes(data), suffix)

    async def get(self, key: str) -> bytes:
        path = self.path_for(key)
        return await asyncio.to_thread(self._get, key, path)

    async def exists(self, key: str) -> bool:
        path = self.path_for(key)
        return await asyncio.to_thread(path.is_file)

    # ----------------------------------------------------------------- blocking parts (threads)

    def _put(self, data: bytes, suffix: str) -> str:
        key = make_key(data, suffix)
        path = self.path_for(key)
        if path.is_file():
            return key
        _make_dirs(path.parent)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=_TMP_PREFIX, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as tmp:
                tmp.write(data)
                tmp.flush()
                os.fsync(tmp.fileno())
            os.chmod(tmp_name, 0o644)  # mkstemp makes 0600; stored images are plain files
            # A concurrent put of the same bytes may have won the race: replacing its file with
            # identical bytes is harmless and atomic.
            os.replace(tmp_name, path)
        finally:  # the temporary file is left only when writing it failed
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
        _fsync_dir(path.parent)
        return key

    @staticmethod
    def _get(key: str, path: Path) -> bytes:
        try:
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise KeyError(key) from None


def _make_dirs(directory: Path) -> None:
    """Create ``directory`` and its missing parents, each new entry made durable (its parent
    fsynced), so a stored image is never lost with a shard folder that vanished in a crash."""
    missing: list[Path] = []
    folder = directory
    while not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    if not missing:
        return
    directory.mkdir(parents=True, exist_ok=True)
    for new in reversed(missing):
        _fsync_dir(new.parent)


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable; best effort (not every platform can open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
