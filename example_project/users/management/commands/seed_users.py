"""``manage.py seed_users``: a few thousand generated users."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from ...models import DemoUser

FIRST = ["Ada", "Alan", "Barbara", "Claude", "Donald", "Edsger", "Frances", "Grace", "Guido",
         "Hedy", "John", "Katherine", "Ken", "Leslie", "Linus", "Margaret", "Niklaus", "Radia",
         "Shafi", "Tim"]
LAST = ["Lovelace", "Turing", "Liskov", "Shannon", "Knuth", "Dijkstra", "Allen", "Hopper",
        "van Rossum", "Lamarr", "McCarthy", "Johnson", "Thompson", "Lamport", "Torvalds",
        "Hamilton", "Wirth", "Perlman", "Goldwasser", "Berners-Lee"]


class Command(BaseCommand):
    help = "Create generated DemoUser rows (replacing any that exist)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--count", type=int, default=3000, help="users to create")
        parser.add_argument("--seed", type=int, default=0, help="random seed")

    def handle(self, *args: Any, count: int, seed: int, **options: Any) -> None:
        rng = random.Random(seed)
        now = datetime.now(timezone.utc)
        users = []
        for i in range(count):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            joined = now - timedelta(days=rng.uniform(1, 900))
            users.append(DemoUser(
                username=f"{first}.{last}.{i}".lower().replace(" ", ""),
                first_name=first, last_name=last,
                email=f"user{i}@example.com", joined=joined,
                last_seen=min(now, joined + timedelta(days=rng.uniform(0, 900))),
                logins=int(rng.paretovariate(1.2) * 3)))
        with transaction.atomic():
            DemoUser.objects.all().delete()
            DemoUser.objects.bulk_create(users, batch_size=500)
        self.stdout.write(f"{count} users")
