"""``blobs.collect_garbage``: the "nightly" GC, a periodic task in the database.

``base=SingletonTask, singleton=True`` puts ccs_beat's worker guard on it: a
copy that starts while another copy runs (a manual ``.delay()``, a second
beat, a redelivered message) steps aside instead of deleting side by side.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.conf import settings

from ccs_beat import SingletonTask

from .. import runlog
from .bucket import LocalBucket
from .collector import PREFIX
from .collector import collect_garbage as collect


def bucket() -> LocalBucket:
    """The demo's bucket (a real project would build its S3/GCS client here)."""
    return LocalBucket(settings.DEMO_BUCKET_DIR, latency=settings.DEMO_BUCKET_LATENCY)


@shared_task(name="blobs.collect_garbage", bind=True, base=SingletonTask, singleton=True)
def collect_garbage(self: Any) -> dict[str, int]:
    """Delete the expired objects under ``uploads/``; one HEAD per object."""
    with runlog.body(self) as result:
        done = collect(bucket(), prefix=PREFIX)
        result.update(scanned=done.scanned, deleted=done.deleted)
    return {"scanned": done.scanned, "deleted": done.deleted}
