"""``users.update_all``: the "daily" job that walks every user row.

``base=SingletonTask, singleton=True`` puts ccs_beat's worker guard on it, so a
manual ``users.update_all.delay()`` sent while a run is going steps aside on
the worker instead of rewriting the same rows at the same time.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import transaction

from ccs_beat import SingletonTask

from .. import runlog
from .models import DemoUser

#: rows loaded and written per transaction: short write locks, as SQLite wants
BATCH = 500


def update_all_users(cost_per_user: float = 0.0, now: datetime | None = None) -> int:
    """Recompute ``score`` and ``display_name`` of every user; the number of rows.

    ``cost_per_user`` seconds stand for the per-user work a real job does (a
    call to a billing or profile service): the run takes longer the more users
    there are, and a busy day makes it outlast its period.
    """
    now = now or datetime.now(timezone.utc)
    ids = list(DemoUser.objects.order_by("pk").values_list("pk", flat=True))
    updated = 0
    for start in range(0, len(ids), BATCH):
        chunk = ids[start:start + BATCH]
        users = list(DemoUser.objects.filter(pk__gte=chunk[0], pk__lte=chunk[-1]))
        for user in users:
            user.score = user.compute_score(now)
            user.display_name = user.compute_display_name()
            user.scored_at = now
        if cost_per_user > 0:
            time.sleep(cost_per_user * len(users))
        with transaction.atomic():
            DemoUser.objects.bulk_update(users, ["score", "display_name", "scored_at"])
        updated += len(users)
    return updated


@shared_task(name="users.update_all", bind=True, base=SingletonTask, singleton=True)
def update_all(self: Any) -> int:
    """Walk every user row and update its derived fields."""
    busy = settings.DEMO_BUSY_DAY
    with runlog.body(self, busy_day=busy) as result:
        result["rows"] = update_all_users(settings.DEMO_USER_COST)
    return result["rows"]
