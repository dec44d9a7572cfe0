"""Content-addressed image storage on S3-compatible object storage (the ``ImageStore`` port).

The same contract as ``core.storage.local.LocalImageStore``: a key is the SHA-256 hex digest of the
bytes plus a suffix (``<64 hex>.png``), the same bytes are stored once (a HEAD before the PUT),
``get`` raises ``KeyError`` for a key that isn't stored, and keys are validated before they
reach the bucket. Objects live at ``<prefix>/<key>``.

Works with AWS S3, MinIO, Cloudflare R2 and GCS's interoperability endpoint (``endpoint_url``).
boto3 is synchronous; each call runs in a worker thread (boto3 clients are thread-safe), so the
event loop never blocks. The client is created on first use: nothing connects at construction.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import mimetypes
import re
import threading
from typing import TYPE_CHECKING, Any, Final

from core.errors import StoreRefused
from core.storage.local import make_key

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

__all__ = ["S3ImageStore", "parse_s3_url"]

# The same key shape as LocalImageStore accepts.
_KEY: Final = re.compile(r"[0-9a-f]{64}\.[a-z0-9]{1,8}")
_BUCKET: Final = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")
_MISSING: Final = frozenset({"404", "NoSuchKey", "NotFound"})
# Refusals that no retry can change: the operator must fix the bucket, its policy or the keys.
_REFUSED: Final = {
    "AccessDenied": "access denied: check the credentials and the bucket policy",
    "403": "access denied: check the credentials and the bucket policy",
    "InvalidAccessKeyId": "the access key is not known to the store",
    "SignatureDoesNotMatch": "the secret key does not match the access key",
    "NoSuchBucket": "the bucket does not exist: create it or fix ONBRAND_IMAGE_STORE",
    "AllAccessDisabled": "all access to the bucket is disabled",
    "AccountProblem": "the account has a problem that prevents the request",
    "InvalidBucketName": "the bucket name is invalid",
    "QuotaExceeded": "the store's quota is used up",
}


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise ValueError(f"bad image key {key!r}: expected '<64 lowercase hex digits>.<suffix>'")


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` → ``("bucket", "some/prefix")``; ``ValueError`` if malformed."""
    scheme, sep, rest = url.partition("://")
    if scheme != "s3" or not sep:
        raise ValueError(f"{url!r} is not an s3:// URL (expected s3://bucket/prefix)")
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET.fullmatch(bucket):
        raise ValueError(
            f"{url!r}: {bucket!r} is not a valid bucket name "
            "(3-63 lowercase letters, digits, dots and hyphens)"
        )
    return bucket, prefix.strip("/")


def _is_missing(exc: Exception) -> bool:
    response: Any = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    # A missing bucket is a configuration error, not a missing image: GET says NoSuchBucket.
    # (HEAD has no body, so there both read "404"; ``exists`` then says False.)
    return str(response.get("Error", {}).get("Code", "")) in _MISSING


def _refused(exc: Exception, store: S3ImageStore, what: str) -> StoreRefused | None:
    """A ``StoreRefused`` naming the store and the refusal when ``exc`` is one for good."""
    response: Any = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = str(response.get("Error", {}).get("Code", ""))
    if code not in _REFUSED:
        return None
    where = f"s3://{store.bucket}/{store.prefix}".rstrip("/")
    endpoint = f" at {store.endpoint_url}" if store.endpoint_url else ""
    return StoreRefused(
        f"image store {where}{endpoint} refused to {what}: {code}, {_REFUSED[code]}"
    )


class S3ImageStore:
    """Images in ``bucket`` under ``prefix``; credentials from arguments or boto3's usual chain."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
        max_attempts: int = 5,
    ) -> None:
        self.bucket = bucket
        # A store that hangs or fails for a while is retried (botocore's standard mode: 5xx,
        # throttling, dropped connections and timeouts, with jittered backoff), at most
        # ``max_attempts`` calls of at most the timeouts each: bounded, never a stuck worker.
        self.timeouts = (connect_timeout_s, read_timeout_s)
        self.max_attempts = max_attempts
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.region = region
        self._credentials = (access_key_id, secret_access_key)
        self._client: S3Client | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # no credentials, ever
        where = f", endpoint_url={self.endpoint_url!r}" if self.endpoint_url else ""
        return f"S3ImageStore({self.bucket!r}, {self.prefix!r}{where})"

    def object_key(self, key: str) -> str:
        """The object name of ``key`` in the bucket; ``ValueError`` for a malformed key."""
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    async def put(self, data: bytes, *, suffix: str = ".png") -> str:
        key = make_key(data, suffix)  # validates the suffix
        return await asyncio.to_thread(self._put, bytes(data), key)

    async def get(self, key: str) -> bytes:
        name = self.object_key(key)
        return await asyncio.to_thread(self._get, key, name)

    async def exists(self, key: str) -> bool:
        name = self.object_key(key)
        return await asyncio.to_thread(self._exists, name)

    # ----------------------------------------------------------------- blocking parts (threads)

    @property
    def client(self) -> S3Client:
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> S3Client:
        import boto3
        from botocore.config import Config

        access_key_id, secret_access_key = self._credentials
        config = Config(
            retries={"total_max_attempts": self.max_attempts, "mode": "standard"},
            connect_timeout=self.timeouts[0],
            read_timeout=self.timeouts[1],
            max_pool_connections=32,
            # Path-style addressing for custom endpoints: MinIO and most self-hosted stores
            # don't serve virtual-hosted bucket names.
            s3={"addressing_style": "path" if self.endpoint_url else "auto"},
            signature_version="s3v4",
        )
        client: S3Client = boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=config,
        )
        return client

    def _exists(self, name: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=name)
        except ClientError as exc:
            if _is_missing(exc):
                return False
            if refused := _refused(exc, self, "look up an image"):
                raise refused from None
            raise
        return True

    def _put(self, data: bytes, key: str) -> str:
        name = self.object_key(key)
        if self._exists(name):
            return key  # content-addressed: the same bytes are already there
        from botocore.exceptions import ClientError

        md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=name,
                Body=data,
                ContentMD5=md5,  # the store rejects a body damaged on the way
                ContentType=mimetypes.guess_type(key)[0] or "application/octet-stream",
                Metadata={"sha256": key.split(".", 1)[0]},
            )
        except ClientError as exc:
            if refused := _refused(exc, self, "store an image"):
                raise refused from None
            raise
        return key

    def _get(self, key: str, name: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=name)
        except ClientError as exc:
            if _is_missing(exc):
                raise KeyError(key) from None
            if refused := _refused(exc, self, "read an image"):
                raise refused from None
            raise
        body = response["Body"]
        try:
            return body.read()
        finally:
            body.close()
