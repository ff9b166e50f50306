"""A bucket client with the shape of an S3 / GCS one, backed by a local directory.

The demo has no cloud account, but the garbage collector should look like one
written against a real bucket, so that swapping in ``boto3`` or
``google-cloud-storage`` changes this class and nothing else:

* ``list_objects(prefix)`` pages through keys (one request per page of 1,000,
  like ``ListObjectsV2``) and, like S3, does *not* return user metadata;
* ``head_object(key)`` returns the size and user metadata (one request);
* ``delete_object(key)`` deletes, and succeeds if the key is already gone;
* ``put_object(key, data, metadata)`` stores an object with its metadata.

Objects live under ``<root>/data/<key>``; their metadata in a JSON sidecar
under ``<root>/meta/<key>.json``, so a listing never sees the sidecars. Every
request sleeps ``latency`` seconds, the round trip a real bucket costs, which
is why a collection takes longer the more objects there are.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

#: keys per LIST request, as S3's ListObjectsV2
PAGE_SIZE = 1000


class NoSuchKey(KeyError):
    """The key does not exist (S3's ``NoSuchKey``, GCS's ``NotFound``)."""


@dataclass(frozen=True)
class ObjectSummary:
    """One entry of a listing: what a LIST returns, without user metadata."""

    key: str
    size: int
    last_modified: float


@dataclass(frozen=True)
class ObjectHead:
    """What a HEAD returns: the summary plus the object's user metadata."""

    key: str
    size: int
    last_modified: float
    metadata: dict[str, str] = field(default_factory=dict)


class LocalBucket:
    """A directory that answers like a cloud bucket (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str], *, latency: float = 0.0) -> None:
        self.root = Path(root)
        self.latency = latency
        self.requests = 0
        self._data = self.root / "data"
        self._meta = self.root / "meta"

    # -- requests ------------------------------------------------------------------

    def put_object(self, key: str, data: bytes, metadata: Mapping[str, str] | None = None
                   ) -> None:
        """Store ``data`` under ``key`` with string ``metadata`` (one request)."""
        self._request()
        path, meta = self._paths(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta.parent.mkdir(parents=True, exist_ok=True)
        # metadata first: a listed object always has its metadata
        meta.write_text(json.dumps({str(k): str(v) for k, v in (metadata or {}).items()}),
                        encoding="utf-8")
        path.write_bytes(data)

    def list_objects(self, prefix: str = "") -> Iterator[ObjectSummary]:
        """Every object whose key starts with ``prefix``, in key order, lazily
        (one request per page of :data:`PAGE_SIZE` keys)."""
        keys = sorted(self._keys())
        page: list[str] = []
        for key in keys:
            if key.startswith(prefix):
                page.append(key)
            if len(page) == PAGE_SIZE:
                yield from self._page(page)
                page = []
        if page:
            yield from self._page(page)

    def head_object(self, key: str) -> ObjectHead:
        """Size, modification time and user metadata of ``key`` (one request)."""
        self._request()
        path, meta = self._paths(key)
        try:
            stat = path.stat()
            metadata = json.loads(meta.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NoSuchKey(key) from None
        return ObjectHead(key, stat.st_size, stat.st_mtime, metadata)

    def delete_object(self, key: str) -> None:
        """Delete ``key``; a key that is already gone is not an error, as in S3."""
        self._request()
        path, meta = self._paths(key)
        path.unlink(missing_ok=True)
        meta.unlink(missing_ok=True)

    # -- helpers -------------------------------------------------------------------

    def _request(self) -> None:
        self.requests += 1
        if self.latency > 0:
            time.sleep(self.latency)

    def _page(self, keys: list[str]) -> Iterator[ObjectSummary]:
        self._request()
        for key in keys:
            try:
                stat = (self._data / key).stat()
            except FileNotFoundError:   # deleted by someone else since the listing
                continue
            yield ObjectSummary(key, stat.st_size, stat.st_mtime)

    def _keys(self) -> Iterator[str]:
        if not self._data.is_dir():
            return
        for dirpath, _, filenames in os.walk(self._data):
            base = PurePosixPath(Path(dirpath).relative_to(self._data).as_posix())
            for name in filenames:
                yield str(base / name) if str(base) != "." else name

    def _paths(self, key: str) -> tuple[Path, Path]:
        parts = PurePosixPath(key).parts
        if not key or key.startswith("/") or ".." in parts or key.endswith("/"):
            raise ValueError(f"invalid object key {key!r}")
        return self._data / key, self._meta / f"{key}.json"
