"""``manage.py seed_blobs``: fill the demo bucket with objects that expire.

Some objects have expired already, some expire during the next minutes (so
every collection finds a few new ones), and the rest are kept for a month, so
every collection has a bucket of a realistic size to walk.
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from django.core.management.base import BaseCommand

from ...collector import EXPIRES_AT, PREFIX
from ...tasks import bucket


class Command(BaseCommand):
    help = "Fill the demo bucket with objects whose metadata gives an expiry time."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--count", type=int, default=500, help="objects to create")
        parser.add_argument("--expired", type=float, default=0.3,
                            help="share of objects already expired")
        parser.add_argument("--expiring", type=float, default=0.4,
                            help="share expiring during the next --spread seconds")
        parser.add_argument("--spread", type=float, default=120.0,
                            help="seconds over which the expiring share expires")
        parser.add_argument("--seed", type=int, default=0, help="random seed")

    def handle(self, *args: Any, count: int, expired: float, expiring: float, spread: float,
               seed: int, **options: Any) -> None:
        rng = random.Random(seed)
        target = bucket()
        target.latency = 0.0          # seeding is not what the demo measures
        now = datetime.now(timezone.utc)
        stale = 0
        for i in range(count):
            roll = rng.random()
            if roll < expired:
                expires = now - timedelta(seconds=rng.uniform(60, 7 * 86400))
                stale += 1
            elif roll < expired + expiring:
                expires = now + timedelta(seconds=rng.uniform(1, spread))
            else:
                expires = now + timedelta(days=30)
            day = (now - timedelta(days=i % 7)).strftime("%Y/%m/%d")
            key = f"{PREFIX}{day}/{uuid.UUID(int=rng.getrandbits(128))}.bin"
            target.put_object(key, rng.randbytes(rng.randint(64, 1024)),
                              {EXPIRES_AT: expires.isoformat(),
                               "content-type": "application/octet-stream"})
        self.stdout.write(f"bucket {target.root}: {count} objects, {stale} already expired")
