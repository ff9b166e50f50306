"""Garbage collection of expired objects, written against the bucket client's API.

Each object carries its expiry in its user metadata (``expires-at``, ISO 8601
UTC), as an uploader would set ``x-amz-meta-expires-at``. A listing does not
return metadata, so the collector pays one HEAD per object: the run takes
longer the more objects the bucket holds, which is what makes a real nightly
GC outlast its schedule on a bad night.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from .bucket import LocalBucket, NoSuchKey

#: user metadata key holding the expiry time
EXPIRES_AT = "expires-at"
#: where the demo's uploads live
PREFIX = "uploads/"


@dataclass
class Collected:
    """What one collection did."""

    scanned: int = 0
    deleted: int = 0
    kept: int = 0
    no_expiry: int = 0


def expiry_of(metadata: dict[str, str]) -> datetime | None:
    """The object's expiry, or None if it has none (or an unreadable one: keep it)."""
    text = metadata.get(EXPIRES_AT)
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def collect_garbage(bucket: LocalBucket, *, prefix: str = PREFIX,
                    now: datetime | None = None) -> Collected:
    """Delete every object under ``prefix`` whose expiry is at or before ``now``.

    Objects without a readable expiry are kept: deleting data is the one
    mistake a GC cannot undo.
    """
    now = now or datetime.now(timezone.utc)
    done = Collected()
    for summary in bucket.list_objects(prefix):
        done.scanned += 1
        try:
            head = bucket.head_object(summary.key)
        except NoSuchKey:       # deleted since the listing
            continue
        expires = expiry_of(head.metadata)
        if expires is None:
            done.no_expiry += 1
        elif expires <= now:
            bucket.delete_object(summary.key)
            done.deleted += 1
        else:
            done.kept += 1
    return done
